"""The HTP table of docs/RESULTS.md from benchmarks/reproduce_htp.sh's JSON files (markdown on stdout)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROWS = (  # file stem (without _test_hHkK.json), label
    ("htp_baseline", "diffusion baseline (no TCEP, no SFT, no MGPTP)"),
    ("htp_tcep", "+ TCEP (graph refinement, mask unused)"),
    ("htp_tcep_sft", "+ TCEP + SFT-MHSA"),
    ("htp_tcep_mgptp", "+ TCEP + MGPTP (dense temporal attention)"),
    ("htp_full", "**HTP** (TCEP + SFT-MHSA + MGPTP)"),
    ("htp_full_learned", "HTP with H2OT's restore (learned queries, interpolated base)"),
)


def _mm(d: dict, key: str) -> str:
    v = d.get(key)
    return "–" if v is None else f"{v:.1f}"


def htp_rows(results: Path, hk: str) -> list[str]:
    """One markdown row per trained HTP variant found."""
    out = []
    for stem, label in ROWS:
        f = results / f"{stem}_test_{hk}.json"
        if not f.exists():
            continue
        d = json.loads(f.read_text())
        m, c = d["metrics"], d["cost"]
        out.append(
            f"| {label} | {_mm(m['jpma'], 'mpjpe_mm')} | {_mm(m['jpma'], 'pa_mpjpe_mm')} "
            f"| {_mm(m['mean'], 'mpjpe_mm')} "
            f"| {_mm(m['p_best'], 'mpjpe_mm')} | {_mm(m['j_best'], 'mpjpe_mm')} | {_mm(m['jpma'], 'mpjve_mm')} "
            f"| {c['params_trained'] / 1e3:.1f} k | {c['train_gmacs_per_frame'] * 1e3:.2f} | "
            f"{c['infer_gmacs_per_frame'] * 1e3:.1f} | {d['frames_per_s']:.0f} |"
        )
    return out


def deterministic_rows(results: Path) -> list[str]:
    """The deterministic H2OT lifters and single-frame HiPART on the same frames."""
    out = []
    for stem, label in (("htp_h2ot_unpruned", "H2OT lifter, unpruned (deterministic)"),
                        ("htp_h2ot_tps_tri", "H2OT lifter, TPS + TRI (deterministic)")):  # fmt: skip
        f = results / f"{stem}_test.json"
        if not f.exists():
            continue
        d = json.loads(f.read_text())
        m, c = d["metrics"], d["cost"]
        gm = c["gflops_window"] / 2 / d["model"]["frames"] * 1e3
        out.append(f"| {label} | {m['mpjpe_mm']:.1f} | {m['pa_mpjpe_mm']:.1f} | – | – | – | {m['mpjve_mm']:.1f} | "
                   f"{c['params_trained'] / 1e3:.1f} k | – | {gm:.1f} | {m['frames_per_s']:.0f} |")  # fmt: skip
        if d.get("single_frame"):
            s = d["single_frame"]
            out.append(f"| single-frame HiPART (bundled) | {s['mpjpe_mm']:.1f} | {s['pa_mpjpe_mm']:.1f} | – | – | – | "
                       f"{s['mpjve_mm']:.1f} | – | – | – | {s['frames_per_s']:.0f} |")  # fmt: skip
    return out


def main() -> None:
    """Print the table."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--hk", default="h5k5", help="which H,K evaluation (file suffix, default h5k5)")
    a = p.parse_args()
    print("| model | MPJPE (JPMA) | PA-MPJPE (JPMA) | MPJPE (mean of H) | P-Best | J-Best | MPJVE | trained params "
          "| train MMACs/frame | infer MMACs/frame | eval frames/s (1 thread) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in htp_rows(a.results, a.hk) + deterministic_rows(a.results):
        print(row)


if __name__ == "__main__":
    main()
