"""Markdown tables for docs/RESULTS.md from the JSON files under benchmarks/results/ (no number is typed by hand).

Usage: python benchmarks/results_tables.py [--results benchmarks/results]
Rows whose JSON is missing are printed as "not run".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hipart.evaluation import markdown_table


def _load(root: Path, name: str) -> dict | None:
    p = root / name
    return json.loads(p.read_text()) if p.is_file() else None


def _first(res: dict | None) -> dict:
    return res["results"][0] if res else {}


def _pct(new: float | None, ref: float | None) -> str:
    if new is None or ref is None:
        return "–"
    return f"{100 * (new - ref) / ref:+.1f}%"


def lifter_table(root: Path) -> str:
    """Paper Table 5: lifter input level."""
    rows = []
    ref = _first(_load(root, "eval_lifter_sparse_test.json")).get("mpjpe_mm")
    for name, label, paper in (("lifter_sparse", "17 (sparse only)", 52.1), ("lifter_dense", "17 + 48 (+dense)", 46.7),
                               ("default_2ep", "17 + 48 + 96 (+dense +fine)", 42.0)):  # fmt: skip
        r = _first(_load(root, f"eval_{name}_test.json"))
        rows.append({"lifter input": label, "n": r.get("n", "not run"), "MPJPE mm": r.get("mpjpe_mm"),
                     "PA-MPJPE mm": r.get("pa_mpjpe_mm"), "vs sparse": _pct(r.get("mpjpe_mm"), ref),
                     "paper H36M MPJPE": paper})  # fmt: skip
    return markdown_table(rows, list(rows[0]))


def budget_table(root: Path, name: str = "lifter_budget_cpu.json") -> str:
    """Lifters at equal CPU time (benchmarks/lifter_budget.py): val, test and inference GFLOPs per pose."""
    res = _load(root, name)
    if not res:
        return "not run"
    rows = [{"candidate": k, "input": r["input"], "params": f"{r['params']:,}",
             "steps x batch": f"{r['steps']} x {r['batch']}",
             "val MPJPE mm": r["val_mpjpe_mm"], "test MPJPE mm": r["test_mpjpe_mm"],
             "test PA-MPJPE mm": r["test_pa_mpjpe_mm"], "GFLOPs/pose (total)": r["total_gflops"]}
            for k, r in res["rows"].items()]  # fmt: skip
    return markdown_table(rows, list(rows[0]))


def generator_table(root: Path) -> str:
    """Paper Table 4: generator framework / order."""
    rows = []
    paper = {"cls": (46.3, 432), "ar": (43.6, 265), "c2p": (42.5, 265), "s2d": (43.1, 396), "both": (42.0, 396)}
    labels = {"cls": "classification (PCT-style)", "ar": "AR, next-token", "c2p": "AR, center-to-periphery",
              "s2d": "AR, sparse-to-dense", "both": "AR, both (default)"}  # fmt: skip
    for v, label in labels.items():
        r = _first(_load(root, f"eval_generator_{v}_test.json"))
        rows.append({"generator": label, "MPJPE mm": r.get("mpjpe_mm", "not run"), "PA-MPJPE mm": r.get("pa_mpjpe_mm"),
                     "dense px": r.get("dense_2d_px"), "fine px": r.get("fine_2d_px"),
                     "token acc sparse": r.get("token_acc_sparse"), "token acc dense": r.get("token_acc_dense"),
                     "poses/s (CPU, batch 256)": r.get("poses_per_s"), "paper MPJPE": paper[v][0],
                     "paper FPS (V100)": paper[v][1]})  # fmt: skip
    return markdown_table(rows, list(rows[0]))


def tokenizer_table(root: Path) -> str:
    """Paper Table 3: tokenizer components (reconstruction view)."""
    rows = []
    for v, label, paper in (("full", "full MSST", 42.0), ("shared", "w/o hierarchical codebooks", 45.3),
                            ("noLA", "w/o Local Alignment", 43.6), ("noGA", "w/o Global Alignment", 42.4)):  # fmt: skip
        r = _first(_load(root, f"eval_tokenizer_{v}_test.json"))
        rows.append({"tokenizer": label, "recon dense px": r.get("recon_dense_px", "not run"),
                     "recon fine px": r.get("recon_fine_px"), "perplexity sparse": r.get("perplexity_sparse"),
                     "perplexity dense": r.get("perplexity_dense"), "codes used sparse": r.get("codes_used_sparse"),
                     "codes used dense": r.get("codes_used_dense"), "paper H36M MPJPE": paper})  # fmt: skip
    return markdown_table(rows, list(rows[0]))


def sweep_table(root: Path, kind: str, prefix: str = "sweep") -> str:
    """Paper Table 7 protocol: MPJPE under mask / crop occlusion, hierarchy vs sparse-only lifter."""
    h, s = _load(root, f"{prefix}_{kind}_hierarchy.json"), _load(root, f"{prefix}_{kind}_sparse.json")
    if not h or not s:
        return f"(sweep {kind}: not run)"
    rows = []
    for rh, rs in zip(h["results"], s["results"], strict=True):
        rows.append({"setting": rh["setting"], "n": rh["n"], "hierarchy MPJPE": rh["mpjpe_mm"],
                     "sparse-only MPJPE": rs["mpjpe_mm"], "hierarchy vs sparse": _pct(rh["mpjpe_mm"], rs["mpjpe_mm"]),
                     "hierarchy PA": rh["pa_mpjpe_mm"], "sparse-only PA": rs["pa_mpjpe_mm"]})  # fmt: skip
    return markdown_table(rows, list(rows[0]))


TEMPORAL_RUNS = (
    ("tps_tri", "TPS + TRI, r=[14,9] b=[0,1]; 300 steps, lr 5e-4"),
    ("unpruned600", "unpruned (161→17 reduction, no frame pruning); 487 steps (1 epoch), lr 1e-3"),
    ("tps_tri600", "TPS + TRI, r=[14,9] b=[0,1]; 487 steps (1 epoch), lr 1e-3"),
)


def temporal_table(root: Path) -> str:
    """H2OT on HiPART's stream: accuracy of the trained temporal lifters next to single-frame HiPART."""
    rows = []
    for name, label in TEMPORAL_RUNS:
        r = _load(root, f"temporal_{name}_test.json")
        m = r["metrics"] if r else {}
        single = (r or {}).get("single_frame") or {}
        rows.append({"model (small preset, T=27, seq2seq)": label, "n": m.get("n", "not run"),
                     "MPJPE mm": m.get("mpjpe_mm"), "PA-MPJPE mm": m.get("pa_mpjpe_mm"),
                     "MPJVE mm/frame": m.get("mpjve_mm"),
                     "single-frame HiPART MPJPE (same frames)": single.get("mpjpe_mm"),
                     "single-frame MPJVE": single.get("mpjve_mm"),
                     "vs single-frame": _pct(m.get("mpjpe_mm"), single.get("mpjpe_mm"))})  # fmt: skip
    return markdown_table(rows, list(rows[0]))


LIFTER_RUNS = {  # H2OT tables redone on the lifter-backed temporal model (small, T=27)
    "Table 2 — pruning x recovery (seq2seq, r=[14,9] b=[0,1])": (
        ("unpruned", "no pruning"), ("tps_tri", "TPS + TRI"), ("tps_tra", "TPS + TRA"), ("tpmo_tra", "TPMo + TRA"),
        ("tpa_tra", "TPA + TRA"), ("tpc_tra", "TPC + TRA")),
    "Table 4 — schedule (TPS + TRI, seq2seq)": (
        ("unpruned", "no pruning"), ("tps_tri", "r=[14,9] b=[0,1]"), ("tps_tri_r9_b0", "r=[9] b=[0]"),
        ("tps_tri_r5_b0", "r=[5] b=[0]"), ("tps_tri_r14_5_b0_2", "r=[14,5] b=[0,2]"),
        ("tps_tri_r14_b2", "r=[14] b=[2]"),
        ("tps_tri_pre_r14_9", "r=[14,9] b=[-1,1] (input frames pruned)"),
        ("tps_tri_pre_r14", "r=[14] b=[-1] (input frames pruned)")),
    "Table 3 — seq2seq vs seq2frame (TPS + TRI)": (
        ("tps_tri", "seq2seq (all 27 frames per call)"), ("s2f_centre_tps_tri", "seq2frame, centre frame"),
        ("s2f_last_tps_tri", "seq2frame, last frame (causal streaming)"),
        ("s2f_last_unpruned", "seq2frame, last frame, no pruning")),
}


def lifter_temporal_tables(root: Path) -> str:
    """H2OT Tables 2-4 on the lifter-backed temporal model, each row next to single-frame HiPART (same frames)."""
    ref = _load(root, "temporal_lifter_unpruned_test.json")
    ref_m = ref["metrics"]["mpjpe_mm"] if ref else None
    ref_t = ref["cost"]["gflops_window_temporal"] if ref else None
    ref_all = ref["cost"]["gflops_window"] if ref else None
    out = []
    for title, runs in LIFTER_RUNS.items():
        rows = []
        for name, label in runs:
            r = _load(root, f"temporal_lifter_{name}_test.json")
            m, c = (r or {}).get("metrics", {}), (r or {}).get("cost", {})
            single = (r or {}).get("single_frame") or (ref or {}).get("single_frame") or {}
            if single and m and single["n"] != m["n"]:  # the reference must be scored on the same frames
                single = {}
            dm = None if not m or ref_m is None else m["mpjpe_mm"] - ref_m
            rows.append({"model": label, "n": m.get("n", "not run"), "MPJPE mm": m.get("mpjpe_mm"),
                         "PA-MPJPE mm": m.get("pa_mpjpe_mm"), "MPJVE mm/frame": m.get("mpjve_mm"),
                         "Δ MPJPE vs unpruned": None if dm is None else f"{dm:+.1f}",
                         "vs single-frame": _pct(m.get("mpjpe_mm"), single.get("mpjpe_mm")),
                         "temporal GFLOPs / window": c.get("gflops_window_temporal"),
                         "vs unpruned": _pct(c.get("gflops_window_temporal"), ref_t),
                         "total GFLOPs / window (with the lifter)": c.get("gflops_window"),
                         "total vs unpruned": _pct(c.get("gflops_window"), ref_all),
                         "GFLOPs / output frame (offline)": c.get("gflops_per_output_frame"),
                         "trained params": c.get("params_trained")})  # fmt: skip
        out.append(f"### {title}\n\n{markdown_table(rows, list(rows[0]))}")
    single = (ref or {}).get("single_frame") or {}
    if single:
        out.append(f"Single-frame HiPART on the same {single['n']} frames: MPJPE {single['mpjpe_mm']:.1f} mm, "
                   f"PA-MPJPE {single['pa_mpjpe_mm']:.1f} mm, MPJVE {single['mpjve_mm']:.2f} mm/frame.")
    return "\n\n".join(out)


def temporal_cost_table(root: Path) -> str:
    """Params / FLOPs / CPU speed of temporal configurations (hipart-temporal bench)."""
    r = _load(root, "temporal_bench_cpu.json")
    if not r:
        return "(temporal bench: not run)"
    rows = [{"config": x["config"], "params": x["params"], "trained params": x.get("params_trained"),
             "GFLOPs / window": x["gflops_window"], "of which single-frame lifter": x.get("gflops_window_lifter"),
             "seq2seq frames/s": x["fps_seq2seq"], "stream ms / frame": x["stream_ms"], "stream fps": x["fps_stream"],
             "threads": x["threads"]} for x in r["results"]]  # fmt: skip
    return markdown_table(rows, list(rows[0]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    a = p.parse_args()
    print(f"## Lifters at equal CPU time\n\n{budget_table(a.results)}\n")
    for f in ("lifter_final_hier.json", "lifter_final_sparse.json"):
        print(f"## Final lifters ({f})\n\n{budget_table(a.results, f)}\n")
    for title, fn in (("Table 5 — lifter input", lifter_table), ("Table 4 — generator", generator_table),
                      ("Table 3 — tokenizer", tokenizer_table)):  # fmt: skip
        print(f"## {title}\n\n{fn(a.results)}\n")
    for kind in ("mask", "crop"):
        print(f"## Table 7 — {kind}, edge model (session 4)\n\n{sweep_table(a.results, kind, 'sweep_edge')}\n")
        print(f"## Table 7 — {kind}, session 2 model\n\n{sweep_table(a.results, kind)}\n")
    print(f"## Temporal (H2OT) on the single-frame lifter\n\n{lifter_temporal_tables(a.results)}\n")
    print(f"## Temporal (H2OT), from scratch (session 2)\n\n{temporal_table(a.results)}\n")
    print(f"## Temporal cost\n\n{temporal_cost_table(a.results)}\n")


if __name__ == "__main__":
    main()
