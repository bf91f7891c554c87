"""hipart-temporal end to end on a tiny synthetic dataset: cache, train (3 steps), resume, eval, bench; training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hipart.checkpoint import load_checkpoint, save_checkpoint
from hipart.cli.temporal import main
from hipart.data.dataset import load_manifest, open_arrays
from hipart.data.sequences import PoseWindows, sparse_inputs
from hipart.models.temporal import TemporalConfig, TemporalLifter
from hipart.training.loop import LoopConfig
from hipart.training.temporal import TemporalRecipe, evaluate_temporal, temporal_loss, train_temporal


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def test_cli_cache_train_resume_eval_bench(data, tmp_path, tiny_model, capsys):
    hip = save_checkpoint(tmp_path / "hipart.pt", tiny_model)
    for split in ("train", "test"):
        assert main(["cache", "--hipart", str(hip), "--data", str(data), "--split", split, "--camera", "0",
                     "--out", str(tmp_path / f"gen_{split}.npz"), "--no-progress"]) == 0  # fmt: skip
    z = np.load(tmp_path / "gen_train.npz")
    assert z["dense"].shape[1:] == (48, 2) and str(z["input_2d"]) == "det"
    out = tmp_path / "run"
    base = ["train", "--data", str(data), "--out", str(out), "--frames", "9", "--batch-size", "4", "--camera", "0",
            "--generated", str(tmp_path / "gen_train.npz"), "--prune", "tps", "--schedule-r", "5", "3",
            "--schedule-b", "0", "1", "--no-progress"]  # fmt: skip
    assert main(base + ["--max-steps", "3"]) == 0, capsys.readouterr().err
    assert main(base + ["--max-steps", "5", "--resume"]) == 0
    log = [json.loads(line) for line in (out / "temporal.log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]
    model, meta = load_checkpoint(out / "temporal.pt", expect_kind="temporal")
    assert model.config.frames == 9 and model.config.recover == "tri" and meta["data_version"].startswith("sha256:")
    ev = ["eval", "--checkpoint", str(out / "temporal.pt"), "--data", str(data), "--camera", "0", "--generated",
          str(tmp_path / "gen_test.npz"), "--json", str(tmp_path / "e.json"), "--no-progress"]  # fmt: skip
    assert main(ev) == 0, capsys.readouterr().err
    m = json.loads((tmp_path / "e.json").read_text())["metrics"]
    assert m["n"] == 17 and m["mpjpe_mm"] > 0 and m["pa_mpjpe_mm"] <= m["mpjpe_mm"] and m["mpjve_mm"] > 0
    # the single-frame baseline is scored on exactly the same frames, and equals HiPART's own lifter there
    assert main(ev + ["--single-frame", str(hip)]) == 0, capsys.readouterr().err
    single = json.loads((tmp_path / "e.json").read_text())["single_frame"]
    assert single["n"] == m["n"]
    z = np.load(tmp_path / "gen_test.npz")
    arrays = open_arrays(data)
    x_s = sparse_inputs(arrays, z["rows"], "det", tuple(load_manifest(data)["image_size"]))
    with torch.no_grad():
        pred = tiny_model.eval().lift(torch.from_numpy(x_s), torch.from_numpy(z["dense"]),
                                      torch.from_numpy(z["fine"])).numpy()
    gt = np.asarray(arrays["p3d_s"][z["rows"]])
    by_hand = np.linalg.norm(pred - (gt - gt[:, :1]), axis=-1).mean() * 1000
    assert np.isclose(single["mpjpe_mm"], by_hand, rtol=1e-4)
    assert main(ev[:-3] + ["--split", "train"]) == 2  # never on the training split
    mismatched = ev[:-3] + ["--input-2d", "gt"]
    assert main(mismatched) == 1 and "generated from input_2d='det'" in capsys.readouterr().err
    assert main(["bench", "--configs", "small,frames=9,prune=none", "small,frames=9", "--runs", "1",
                 "--json", str(tmp_path / "b.json")]) == 0  # fmt: skip
    res = json.loads((tmp_path / "b.json").read_text())["results"]
    assert len(res) == 2 and res[1]["gflops_window"] < res[0]["gflops_window"] and res[0]["fps_stream"] > 0


def test_cli_errors_are_clear(data, tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path / "missing.pt"), "--data", str(data)]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert main(["train", "--data", str(data), "--frames", "9", "--prune", "tpc", "--recover", "tri",
                 "--out", str(tmp_path / "r")]) == 1  # fmt: skip
    assert "TRI interpolates over time" in capsys.readouterr().err
    assert main(["bench", "--configs", "huge"]) == 1


def test_loss_masks_padding_and_seq2frame_training_learns(data, tmp_path):
    pred, target = torch.zeros(1, 4, 17, 3), torch.zeros(1, 4, 17, 3)
    target[0, 3] = 1.0  # a padded frame: ignored
    out = temporal_loss(pred, target, torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    assert float(out["loss"]) == 0.0
    torch.manual_seed(0)
    cfg = TemporalConfig(frames=5, dim=16, blocks=2, heads=2, num_points=17, reduction="none", prune="tps",
                         recover="tra", schedule_r=(3,), schedule_b=(0,), pipeline="seq2frame", output_frame="last")
    model = TemporalLifter(cfg)
    ds = PoseWindows(data, "train", 5, stride=1, offset=4, input_2d="gt", num_points=17)
    before = evaluate_temporal(model, PoseWindows(data, "train", 5, 1, 4, "gt", 17))["mpjpe_mm"]
    train_temporal(model, ds, TemporalRecipe(lr=3e-3, batch_size=8, epochs=4), LoopConfig(progress=False), tmp_path)
    after = evaluate_temporal(model, PoseWindows(data, "train", 5, 1, 4, "gt", 17))
    assert after["mpjpe_mm"] < 0.7 * before and after["n"] == len(ds)
