"""hipart-temporal htp-train / htp-eval / htp-bench end to end on the tiny synthetic dataset (+ its cameras)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hipart.checkpoint import load_checkpoint, save_checkpoint
from hipart.cli.temporal import main
from hipart.data.sequences import PoseWindows
from hipart.models.diffusion import project
from hipart.models.htp import HTPConfig, HTPDenoiser
from hipart.training.htp import HTPRecipe, image_size, parse_spec, train_htp, window_intrinsics
from hipart.training.loop import LoopConfig
from tests.temporal_data import CAMERAS_PER_CLIP, CLIPS, SIZE, write_tiny_dataset


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The tiny dataset plus the intrinsics its projection used (focal 900 + 100 * camera, centre SIZE / 2)."""
    root = write_tiny_dataset(tmp_path_factory.mktemp("tiny_htp") / "data")
    n = len(CLIPS) * CAMERAS_PER_CLIP
    k = np.tile(np.eye(3, dtype=np.float32), (n, 1, 1))
    k[:, 0, 0] = k[:, 1, 1] = 900.0 + 100 * (np.arange(n) % CAMERAS_PER_CLIP)
    k[:, 0, 2] = k[:, 1, 2] = SIZE / 2
    extra = {"cam_K": k, "cam_size": np.full((n, 2), SIZE, np.int32)}
    man = json.loads((root / "manifest.json").read_text())
    for name, arr in extra.items():
        np.save(root / f"{name}.npy", arr)
        man["files"][f"{name}.npy"] = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
    (root / "manifest.json").write_text(json.dumps(man))
    return root


def test_window_intrinsics_reproject_the_clean_2d(data):
    """Normalised intrinsics + the absolute 3D reproduce the dataset's normalised ground-truth x_s."""
    w = PoseWindows(data, "test", 9, 9, 0, "gt", 17, camera=1)
    b = w[0]
    intr = window_intrinsics(w, b["row"][:1].numpy(), image_size(data))
    p3d = torch.from_numpy(np.asarray(w.arrays["p3d_s"][b["row"].numpy()]))
    assert torch.allclose(project(p3d, intr), b["x"], atol=1e-5)


def test_cli_train_resume_eval_bench(data, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["htp-train", "--data", str(data), "--out", str(out), "--frames", "9", "--batch-size", "4", "--camera",
            "0", "--mgptp-k", "2", "--no-progress"]  # fmt: skip
    assert main(base + ["--max-steps", "3"]) == 0, capsys.readouterr().err
    assert main(base + ["--max-steps", "5", "--resume"]) == 0, capsys.readouterr().err
    log = [json.loads(line) for line in (out / "htp.log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5] and all(np.isfinite(r["loss"]) for r in log)
    model, meta = load_checkpoint(out / "htp.pt", expect_kind="htp")
    assert isinstance(model, HTPDenoiser) and model.config.frames == 9 and model.config.keep == 2
    ev = ["htp-eval", "--checkpoint", str(out / "htp.pt"), "--data", str(data), "--camera", "0", "--hypotheses", "3",
          "--steps", "2", "--batch-size", "2", "--no-progress", "--json", str(tmp_path / "e.json")]  # fmt: skip
    assert main(ev) == 0, capsys.readouterr().err
    r = json.loads((tmp_path / "e.json").read_text())
    m = r["metrics"]
    assert r["n"] == CLIPS[3][1] and r["aggregate"] == "jpma" and set(m) == {"jpma", "mean", "p_best", "j_best"}
    assert m["j_best"]["mpjpe_mm"] <= m["p_best"]["mpjpe_mm"] and m["jpma"]["mpjve_mm"] > 0
    assert r["frames_per_s"] > 0 and r["cost"]["infer_gmacs_per_frame"] > r["cost"]["train_gmacs_per_frame"]
    assert main(ev[:-2] + ["--json", str(tmp_path / "e2.json")]) == 0  # seeded: the same numbers again
    assert json.loads((tmp_path / "e2.json").read_text())["metrics"] == m
    assert main(ev[:-2] + ["--split", "train"]) == 2
    assert main(["htp-bench", "--configs", "small,frames=9,mgptp_k=2", "small,frames=9,tcep=0,mgptp=0",
                 "--hypotheses", "2", "--steps", "2", "--runs", "1", "--json", str(tmp_path / "b.json")]) == 0
    res = json.loads((tmp_path / "b.json").read_text())["results"]
    assert res[0]["train_gmacs_per_frame"] < res[1]["train_gmacs_per_frame"] and res[0]["fps"] > 0


def test_cli_lifter_condition_and_clear_errors(data, tmp_path, tiny_model, capsys):
    hip = save_checkpoint(tmp_path / "hipart.pt", tiny_model)  # a 161-point lifter: dense/fine from ground truth
    out = tmp_path / "lift"
    args = ["htp-train", "--data", str(data), "--out", str(out), "--frames", "9", "--batch-size", "4", "--camera",
            "0", "--no-mgptp", "--lifter-from", str(hip), "--feature-cache", str(tmp_path / "f"), "--max-steps", "2",
            "--no-progress"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    model, _ = load_checkpoint(out / "htp.pt", expect_kind="htp")
    assert model.config.condition == "lifter" and model.config.num_points == 161 and list((tmp_path / "f").iterdir())
    assert main(["htp-eval", "--checkpoint", str(out / "htp.pt"), "--data", str(data), "--camera", "0",
                 "--hypotheses", "2", "--steps", "1", "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    bad = ["htp-train", "--data", str(data), "--out", str(tmp_path / "x"), "--frames", "9", "--keep", "9"]
    assert main(bad) == 1 and "MGPTP keeps n frames" in capsys.readouterr().err
    assert main(["htp-eval", "--checkpoint", str(tmp_path / "missing.pt"), "--data", str(data)]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["htp-bench", "--configs", "huge"]) == 1
    with pytest.raises(ValueError, match="tcep takes"):
        parse_spec("small,tcep=maybe")
    assert parse_spec("small,frames=9,tcep=0").sft is False  # SFT follows TCEP off


def test_minutes_bound_stops_and_resumes(data, tmp_path):
    torch.manual_seed(0)
    model = HTPDenoiser(HTPConfig.small(9, mgptp_k=2))
    windows = PoseWindows(data, "train", 9, 2, 0, "det", 17, camera=0)
    loop = LoopConfig(progress=False, save_every=4)
    rec = train_htp(model, windows, HTPRecipe(batch_size=4, epochs=50), loop, tmp_path, minutes=0.01)
    steps = [json.loads(line)["step"] for line in (tmp_path / "htp.log.jsonl").read_text().splitlines()]
    assert 1 <= rec["step"] < 50 * 5 and steps == list(range(1, rec["step"] + 1))
    more = train_htp(model, windows, HTPRecipe(batch_size=4, epochs=50), loop, tmp_path, resume=True, minutes=0.005)
    assert more["step"] > rec["step"]
