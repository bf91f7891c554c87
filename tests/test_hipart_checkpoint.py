import pytest
import torch

from hipart.checkpoint import CheckpointError, load_checkpoint, model_hash, read_checkpoint, save_checkpoint
from hipart.cli.model import load_sample_pose, main
from hipart.models.config import HiPARTConfig, LifterConfig
from hipart.models.hipart import HiPART
from hipart.models.lifter import Lifter
from hipart.models.tokenizer import MSSTokenizer


def test_forward_shapes_tiny_and_paper(tiny_model):
    out = tiny_model(torch.randn(4, 17, 2) * 0.3)
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {"q_s": (4, 16), "q_d": (4, 48), "dense": (4, 48, 2), "fine": (4, 96, 2), "pose3d": (4, 17, 3)}
    paper = HiPART().eval()
    out = paper(load_sample_pose())
    assert out["pose3d"].shape == (1, 17, 3) and out["fine"].shape == (1, 96, 2)
    assert torch.isfinite(out["pose3d"]).all()


def test_forward_is_consistent_between_cached_and_uncached(tiny_model):
    x = torch.randn(3, 17, 2) * 0.3
    a, b = tiny_model(x), tiny_model(x, use_cache=False)
    assert torch.equal(a["q_s"], b["q_s"]) and torch.equal(a["q_d"], b["q_d"])
    torch.testing.assert_close(a["pose3d"], b["pose3d"])


def test_sparse_only_lifter():
    m = HiPART(HiPARTConfig.tiny(lifter_input="sparse")).eval()
    assert m(torch.zeros(2, 17, 2))["pose3d"].shape == (2, 17, 3)
    with pytest.raises(ValueError, match="num_points=161"):
        HiPARTConfig(lifter=LifterConfig(num_points=17))


@pytest.mark.parametrize(
    "bad, msg",
    [
        (torch.zeros(2, 16, 2), r"shape \[B, 17, 2\], got \[2, 16, 2\]"),
        (torch.zeros(17, 2), r"shape \[B, 17, 2\], got \[17, 2\]"),
        (torch.zeros(2, 17, 2, dtype=torch.int64), "floating-point"),
        (torch.tensor([[[float("nan"), 0.0]] * 17]), "NaN or inf"),
        (torch.tensor([[[float("inf"), 0.0]] * 17]), "NaN or inf"),
        ([[0.0, 0.0]] * 17, "must be a torch.Tensor"),
        (torch.zeros(0, 17, 2), "empty batch"),
    ],
)
def test_bad_inputs_raise_clear_value_errors(tiny_model, bad, msg):
    with pytest.raises(ValueError, match=msg):
        tiny_model(bad)


def test_bad_tokens_raise(tiny_model):
    with pytest.raises(ValueError, match="outside"):
        tiny_model.decode_tokens(torch.full((1, 16), 10_000), torch.zeros(1, 48, dtype=torch.long))
    with pytest.raises(ValueError, match="q_d must have shape"):
        tiny_model.decode_tokens(torch.zeros(1, 16, dtype=torch.long), torch.zeros(1, 47, dtype=torch.long))


def test_checkpoint_round_trip_is_bit_exact(tiny_model, tmp_path):
    p = save_checkpoint(tmp_path / "m.pt", tiny_model, data_version="cmu-v1-abc", extra={"epoch": 3})
    model, meta = load_checkpoint(p)
    assert meta["data_version"] == "cmu-v1-abc" and meta["extra"] == {"epoch": 3}
    assert meta["config"] == tiny_model.config.to_dict()
    assert meta["model_hash"] == model_hash(tiny_model) == model_hash(model)
    sd0, sd1 = tiny_model.state_dict(), model.state_dict()
    assert sd0.keys() == sd1.keys() and all(torch.equal(sd0[k], sd1[k]) for k in sd0)
    x = torch.randn(2, 17, 2) * 0.3
    a, b = tiny_model(x), model(x)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves nothing behind


def test_stage_checkpoints(tmp_path):
    lifter = Lifter(LifterConfig(num_points=17, dim=12, blocks=1, heads=2))
    save_checkpoint(tmp_path / "l.pt", lifter)
    back, meta = load_checkpoint(tmp_path / "l.pt", expect_kind="lifter")
    assert meta["kind"] == "lifter" and back.config == lifter.config
    tok = MSSTokenizer(HiPARTConfig.tiny().tokenizer)
    save_checkpoint(tmp_path / "t.pt", tok)
    with pytest.raises(CheckpointError, match="holds a 'tokenizer' checkpoint, expected 'hipart'"):
        load_checkpoint(tmp_path / "t.pt")


def test_corrupt_missing_and_mismatched_checkpoints(tiny_model, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    good = save_checkpoint(tmp_path / "good.pt", tiny_model)
    (tmp_path / "trunc.pt").write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "trunc.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a hipart-edge checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    payload = torch.load(good, weights_only=True)
    payload["config"]["lifter"]["dim"] = 48  # config no longer matches the weights
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="do not match the stored config"):
        load_checkpoint(tmp_path / "mismatch.pt")


def test_cli_smoke_run(capsys, tmp_path, tiny_model):
    assert main(["--random-weights", "tiny", "--runs", "1", "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "HiARM decode, KV cache" in out and "pose3d[0]" in out and "RANDOM weights" in out
    assert (tmp_path / "s.json").exists()
    (tmp_path / "bad.pt").write_bytes(b"\x00" * 10)
    assert main(["--checkpoint", str(tmp_path / "bad.pt")]) == 1
    assert "error:" in capsys.readouterr().err
    save_checkpoint(tmp_path / "ok.pt", tiny_model)
    assert main(["--checkpoint", str(tmp_path / "ok.pt"), "--runs", "1"]) == 0
    capsys.readouterr()
    assert main(["--runs", "1"]) == 0  # no flag: the bundled trained model, not random weights
    out = capsys.readouterr().out
    assert "hipart_default.pt" in out and "RANDOM" not in out


def test_half_checkpoint_halves_the_file_and_loads_as_float32(tiny_model, tmp_path):
    full = save_checkpoint(tmp_path / "f.pt", tiny_model)
    half = save_checkpoint(tmp_path / "h.pt", tiny_model, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    model, meta = load_checkpoint(half)
    assert meta["weights_dtype"] == "float16" and meta["model_hash"] == model_hash(model)
    p = next(model.parameters())
    assert p.dtype == torch.float32
    ref = tiny_model.lifter.head.weight
    torch.testing.assert_close(model.lifter.head.weight, ref.half().float())
    assert model(torch.zeros(1, 17, 2))["pose3d"].dtype == torch.float32


class _RunsCode:
    """Unpickling this would call os.system."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_unsafe_checkpoint_is_refused_without_advising_weights_only_false(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format": "hipart-edge", "x": _RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(tmp_path / "evil.pt")
    msg = str(e.value)
    assert "could run code" in msg and "system" in msg and "will likely succeed" not in msg
    assert "\n" not in msg and not marker.exists()


def test_checkpoint_with_nan_weights_is_refused(tmp_path):
    from hipart.models.config import HiPARTConfig
    from hipart.models.hipart import HiPART

    model = HiPART(HiPARTConfig.tiny())
    with torch.no_grad():
        next(model.lifter.parameters()).fill_(float("nan"))
    save_checkpoint(tmp_path / "nan.pt", model)
    with pytest.raises(CheckpointError, match="hold NaN or inf"):
        load_checkpoint(tmp_path / "nan.pt")
