"""hipart-train and hipart-eval end to end on a tiny built dataset (tiny model, a few steps per stage)."""

from __future__ import annotations

import json

from hipart.checkpoint import load_checkpoint
from hipart.cli.eval import main as eval_main
from hipart.cli.train import main as train_main
from hipart.data.dataset import load_manifest
from hipart.data.dataset_build import build_dataset
from tests.data.test_build import _corpus


def test_train_all_then_eval_on_a_tiny_dataset(tmp_path, capsys):
    data = tmp_path / "data"
    build_dataset(_corpus(tmp_path), data, cameras="lab", seed=0, workers=1, body="mean", progress=False)
    out = tmp_path / "run"
    rc = train_main(["all", "--data", str(data), "--out", str(out), "--config", "tiny", "--epochs", "1", "1", "1",
                     "--max-steps", "2", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    model, meta = load_checkpoint(out / "hipart.pt")
    # the Global Alignment head follows the dataset's action classes, whatever the config said
    assert model.config.tokenizer.num_actions == len(load_manifest(data)["action_classes"])
    assert meta["data_version"].startswith("sha256:")
    rc = eval_main(["--checkpoint", str(out / "hipart.pt"), "--data", str(data), "--json", str(tmp_path / "e.json"),
                    "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((tmp_path / "e.json").read_text())["results"][0]
    assert res["setting"] == "no occlusion" and res["n"] > 0 and res["mpjpe_mm"] > 0
    assert eval_main(["--checkpoint", str(out / "hipart.pt"), "--data", str(data), "--split", "train"]) == 2
