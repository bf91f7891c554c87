"""Write a trained model as a bundled default: float16 `hipart/assets/<name>.pt` + its JSON sidecar.

HiPART -> hipart_default.pt; with --name temporal_default (a `hipart-temporal train` checkpoint) -> the bundled
temporal lifter, or --name htp_default (a `hipart-temporal htp-train` checkpoint) -> the bundled HTP lifter.

  python benchmarks/bundle_model.py --checkpoint runs/edge/final/hipart.pt --budget "..." \
      --command "bash benchmarks/train_edge.sh" [--eval-json benchmarks/results/eval_edge_test.json]

The sidecar records the config, data version, model hash (of the float16 weights as stored), the commands and,
when given, the test metrics of `hipart-eval` run on the bundled file itself (run it after this script, then
rerun with --eval-json to record them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hipart.checkpoint import load_checkpoint, model_hash, save_checkpoint

ASSETS = Path(__file__).resolve().parents[1] / "hipart" / "assets"
KIND = {"hipart_default": "hipart", "temporal_default": "temporal", "htp_default": "htp"}
EVAL = {  # how each bundled file is scored on the test subjects
    "hipart_default": "hipart-eval --checkpoint hipart/assets/hipart_default.pt --data data/cmu_lab --split test "
                      "--input-2d det --subsample 4",
    "temporal_default": "hipart-temporal eval --checkpoint hipart/assets/temporal_default.pt --data data/cmu_lab "
                        "--split test --camera 0 --single-frame hipart/assets/hipart_default.pt",
    "htp_default": "hipart-temporal htp-eval --checkpoint hipart/assets/htp_default.pt --data data/cmu_lab "
                   "--split test --camera 0",
}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--budget", default="", help="one line: what training it got")
    p.add_argument("--command", action="append", default=[], help="a command that made it (repeatable)")
    p.add_argument("--eval-json", type=Path, help="hipart-eval --json of the bundled file on the test subjects")
    p.add_argument("--extra", type=Path, help="a JSON file of further sidecar fields (merged)")
    p.add_argument("--name", choices=tuple(EVAL), default="hipart_default", help="which bundled model to write")
    p.add_argument("--deploy", metavar="H,K", help="htp_default: the deployed hypotheses and DDIM steps (stored in the "
                   "checkpoint: hipart-run --temporal htp uses them)")
    a = p.parse_args()
    kind = KIND[a.name]
    model, meta = load_checkpoint(a.checkpoint, expect_kind=kind)
    out = ASSETS / f"{a.name}.pt"
    if a.eval_json is None:
        extra: dict = {"source": str(a.checkpoint)}
        if a.deploy:
            h, k = (int(v) for v in a.deploy.split(","))
            extra["deploy"] = {"hypotheses": h, "steps": k}
        save_checkpoint(out, model, meta.get("data_version"), extra, half=True)
    bundled, bmeta = load_checkpoint(out, expect_kind=kind)
    side = {
        "checkpoint": out.name, "size_bytes": out.stat().st_size, "model_hash": model_hash(bundled),
        "weights_dtype": "float16", "data_version": bmeta.get("data_version"),
        "dataset": "hipart-data build --bvh-dir ../shared/data/cmu_bvh --out data/cmu_lab --cameras lab --seed 0",
        "train_commands": a.command, "budget": a.budget, "config": bundled.config.to_dict(),
        "eval_command": EVAL[a.name],
        "test_subjects": ["05", "08", "13"],
    }  # fmt: skip
    if a.eval_json is not None:
        ev = json.loads(a.eval_json.read_text())
        side["metrics_test"] = ev["results"][0] if "results" in ev else ev["metrics"]
    if a.extra is not None:
        side.update(json.loads(a.extra.read_text()))
    (ASSETS / f"{a.name}.json").write_text(json.dumps(side, indent=1) + "\n")
    print(f"bundled {out} ({side['size_bytes'] / 1e6:.1f} MB, hash {side['model_hash']})")


if __name__ == "__main__":
    main()
