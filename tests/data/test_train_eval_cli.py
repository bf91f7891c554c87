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
    # a tokenizer checkpoint gets the reconstruction-only (Table 3) view
    rc = eval_main(["--checkpoint", str(out / "tokenizer.pt"), "--data", str(data), "--json", str(tmp_path / "t.json"),
                    "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    tok_res = json.loads((tmp_path / "t.json").read_text())["results"][0]
    assert tok_res["recon_fine_px"] > 0 and tok_res["codes_used_dense"] >= 1
    # assemble re-joins stage checkpoints (here the run's own) into a model that evaluates identically
    rc = train_main(["assemble", "--data", str(data), "--out", str(tmp_path / "asm"),
                     "--tokenizer-from", str(out / "tokenizer.pt"), "--generator-from", str(out / "generator.pt"),
                     "--lifter-from", str(out / "lifter.pt")])
    assert rc == 0, capsys.readouterr().err
    again, _ = load_checkpoint(tmp_path / "asm" / "hipart.pt")
    for k, v in model.state_dict().items():
        assert (again.state_dict()[k] == v).all(), k
    # a lifter checkpoint is not something hipart-eval can score
    assert eval_main(["--checkpoint", str(out / "lifter.pt"), "--data", str(data), "--no-progress"]) == 1


def test_eval_checks_the_checkpoint_before_building_data_from_bvh(tmp_path, monkeypatch, capsys):
    import hipart.data.dataset_build as build

    def never(*a, **k):
        raise AssertionError("the dataset was built before the checkpoint was checked")

    monkeypatch.setattr(build, "build_dataset", never)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    (tmp_path / "bvh").mkdir()
    assert eval_main(["--checkpoint", str(bad), "--bvh-dir", str(tmp_path / "bvh")]) == 1
    assert "not a readable checkpoint" in capsys.readouterr().err


def test_train_config_and_data_split_errors_are_one_line(tmp_path, capsys):
    import pytest

    from hipart.cli.data import _split_arg
    from hipart.cli.train import load_config
    from hipart.data.dataset import DatasetFormatError

    with pytest.raises(ValueError, match="not paper, edge, tiny or an existing HiPARTConfig JSON"):
        load_config(str(tmp_path / "none.json"), "hierarchy")
    with pytest.raises(ValueError, match="unknown split name"):
        _split_arg("training=01")
    with pytest.raises(ValueError, match="expected 'train=01,03"):
        _split_arg("train")
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "manifest.json").write_text("{}")
    with pytest.raises(DatasetFormatError, match="lacks files, image_size"):
        load_manifest(tmp_path / "ds")
