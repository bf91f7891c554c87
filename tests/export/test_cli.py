"""hipart-export end to end on small inputs: summary, exit codes, clear errors, nothing half-written."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from export.cli import main
from export.pipeline import EXIT_BAD_INPUT, EXIT_DRIFT, EXIT_OK


def _files(path):
    return sorted(p.name for p in path.rglob("*")) if path.exists() else []


def test_onnx_only_lift_with_check_trt(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--random-weights", "tiny", "--only", "lift", "--onnx-only", "--check-trt", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == EXIT_OK, captured.err
    assert _files(out) == ["lift.onnx", "manifest.json"]
    assert f"manifest: {out / 'manifest.json'} (1 artifacts: lift.fp32)" in captured.out
    assert "lift.onnx" in captured.out and "rel, tokens ==" in captured.out
    assert "TensorRT preflight lift.onnx for TensorRT 10.x: 0 error(s)" in captured.err


def test_int8_chain_without_tensorrt(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--random-weights", "tiny", "--only", "lift,decode_step,detokenize", "--int8", "--fp16",
            "--synthetic-calib", "--calib-size", "48", "--fallback-trials", "2", "--no-parity",
            "--max-drift-mm", "1000", "--min-token-agreement", "0", "--max-output-err", "1e9",
            "--out", str(out)]  # fmt: skip
    code = main(args)
    captured = capsys.readouterr()
    assert code == EXIT_OK, captured.err
    names = _files(out)
    for f in ("lift.onnx", "lift.fp16.onnx", "lift.int8.onnx", "calib_lift.npz",
              "decode_step.onnx", "decode_step.fp16.onnx", "decode_step.int8.onnx",
              "detokenize.onnx", "detokenize.fp16.onnx", "detokenize.int8.onnx", "calib_detokenize.npz"):  # fmt: skip
        assert f in names
    man = json.loads((out / "manifest.json").read_text())["artifacts"]
    assert {"detokenize.fp32", "detokenize.fp16", "detokenize.int8"} <= set(man)
    with np.load(out / "calib_detokenize.npz") as z:
        assert z["q_s"].shape == (48, 16) and z["q_d"].shape == (48, 48) and z["q_s"].dtype == np.int64
    assert not [n for n in names if n.endswith(".tmp")]
    assert "engine step skipped: TensorRT is not installed" in captured.out
    assert "manifest.json" in names
    assert "int8 ONNX written to" in captured.out
    with np.load(out / "calib_lift.npz") as z:
        assert z["points"].shape == (48, 161, 2)
    meta = {p.key: p.value for p in onnx.load(str(out / "lift.int8.onnx")).metadata_props}
    assert meta["hipart.precision"] == "int8" and json.loads(meta["hipart.extra"])["calib_method"] == "minmax"


def test_drift_target_missed_is_exit_5(tmp_path, capsys):
    args = ["--random-weights", "tiny", "--only", "lift", "--int8", "--synthetic-calib", "--calib-size", "32",
            "--fallback-trials", "0", "--no-parity", "--max-drift-mm", "0.0001",
            "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(args) == EXIT_DRIFT
    assert "DRIFT > target" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "missing.pt"], "checkpoint not found"),
        (["--random-weights", "tiny", "--int8", "--calib-size", "513"], "the bundled set has 512 training poses < "),
        (["--random-weights", "tiny", "--int8", "--calib-data", "CALIB", "--calib-size", "64"], "too small"),
        (["--random-weights", "tiny", "--batch", "8,1,64"], "--batch"),
        (["--random-weights", "tiny", "--trt-version", "8.6"], "not supported"),
        (["--random-weights", "tiny", "--only", "nope"], "unknown artifacts"),
    ],
)
def test_bad_input_clear_message_nothing_written(tmp_path, capsys, args, message):
    calib = tmp_path / "calib.npz"
    np.savez(calib, x_s=np.zeros((10, 17, 2), np.float32))
    args = [str(calib) if a == "CALIB" else a for a in args]
    out = tmp_path / "out"
    assert main([*args, "--out", str(out)]) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert _files(out) == []


def test_without_bundled_model_or_calibration_set_the_message_says_what_to_pass(tmp_path, capsys, monkeypatch):
    import export.pipeline as pipeline

    monkeypatch.setattr(pipeline, "bundled_checkpoint", lambda: None)
    monkeypatch.setattr(pipeline, "bundled_calibration_path", lambda: None)
    out = tmp_path / "out"
    assert main(["--int8", "--out", str(out)]) == EXIT_BAD_INPUT
    assert "no model: pass --checkpoint PATH" in capsys.readouterr().err
    assert main(["--random-weights", "tiny", "--int8", "--out", str(out)]) == EXIT_BAD_INPUT
    assert "calibration data absent" in capsys.readouterr().err
    assert _files(out) == []


def test_corrupt_checkpoint_and_unwritable_dir(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(["--checkpoint", str(bad), "--out", str(tmp_path / "o")]) == EXIT_BAD_INPUT
    assert "not a readable checkpoint" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["--random-weights", "tiny", "--out", str(blocker / "sub")]) == EXIT_BAD_INPUT
    assert "not writable" in capsys.readouterr().err


def test_checkpoint_export_carries_model_hash(tmp_path, capsys):
    import torch

    from hipart.checkpoint import model_hash, save_checkpoint
    from hipart.models.config import HiPARTConfig
    from hipart.models.hipart import HiPART

    torch.manual_seed(3)
    model = HiPART(HiPARTConfig.tiny()).eval()
    ckpt = save_checkpoint(tmp_path / "tiny.pt", model, data_version="test")
    out = tmp_path / "out"
    assert main(["--checkpoint", str(ckpt), "--only", "lift", "--onnx-only", "--out", str(out)]) == EXIT_OK
    meta = {p.key: p.value for p in onnx.load(str(out / "lift.onnx")).metadata_props}
    assert meta["hipart.model_hash"] == model_hash(model)
    assert "data version test" in capsys.readouterr().err
    man = json.loads((out / "manifest.json").read_text())
    assert man["model_hash"] == model_hash(model) and man["artifacts"]["lift.fp32"]["model_hash"] == model_hash(model)
    assert man["model_source"].startswith(f"checkpoint {ckpt}")


def test_old_artifacts_subset_flag_still_selects_artifacts(capsys):
    from export.cli import _old_subset_flag

    assert _old_subset_flag(["--artifacts", "lift,decode_step", "--out", "x"]) == ["--only", "lift,decode_step",
                                                                                   "--out", "x"]  # fmt: skip
    assert _old_subset_flag(["--artifacts=lift"]) == ["--only=lift"]
    assert _old_subset_flag(["--artifacts", "exported/"]) == ["--artifacts", "exported/"]  # a folder: --out
    assert "read as --only" in capsys.readouterr().err
