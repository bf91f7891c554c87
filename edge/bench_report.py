"""hipart-bench --report: one PNG of the benchmark, each backend's latency per pose against the FLOP floor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.bench import BenchReport

COLOURS = {"torch": "#d62728", "onnxruntime": "#1f77b4", "triton": "#2ca02c", "tensorrt": "#9467bd"}


def plot_report(report: BenchReport, path: str | Path) -> Path:
    """Two panels: ms per pose by batch size (log-log) with the floor, and % of the FLOP ceiling; written to `path`."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    if not report.rows:
        raise ValueError("nothing to plot: no backend was timed")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    by_backend: dict[str, list[Any]] = {}
    for r in report.rows:
        by_backend.setdefault(r.backend, []).append(r)
    for name, rows in by_backend.items():
        rows = sorted(rows, key=lambda r: r.batch)
        b = [r.batch for r in rows]
        colour = COLOURS.get(name)
        ax1.plot(b, [r.median_ms / r.batch for r in rows], "o-", color=colour, label=f"{name} (median)")
        ax2.plot(b, [r.pct_of_ceiling for r in rows], "o-", color=colour, label=name)
    floor = sorted({(r.batch, r.floor_ms / r.batch) for r in report.rows})
    ax1.plot([f[0] for f in floor], [f[1] for f in floor], "k--", label="FLOP floor (measured matmul peak)")
    batches = sorted({r.batch for r in report.rows})
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_xlabel("batch (poses per call)")
        ax.grid(True, which="both", alpha=0.3)
    ax1.set_yscale("log")
    ax1.set_ylabel("ms per pose")
    ax1.set_title("latency per pose")
    ax1.legend(fontsize=8)
    ax2.set_ylim(0, 100)
    ax2.set_ylabel("% of the FLOP ceiling")
    ax2.set_title("how close to the machine's limit")
    ax2.legend(fontsize=8)
    e = report.env
    fig.suptitle(
        f"hipart-bench — {e.get('cpu') or e.get('machine', '')}; model {e.get('model_hash', '?')}; "
        f"peak {e.get('peak_matmul_gflops', '?')} GFLOP/s",
        fontsize=9,
    )
    skipped = "; ".join(f"{k}: {v}" for k, v in report.skipped.items())
    if skipped:
        fig.text(0.01, 0.01, ("skipped: " + skipped)[:220], fontsize=6, color="0.4")
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
