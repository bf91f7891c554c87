"""hipart-export --triton-repo: configs parse as Triton ModelConfig and match their ONNX graphs; the streaming temporal
graph reproduces TemporalStage and the windowed temporal model; clear errors."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
import torch

pytest.importorskip("tritonclient.grpc")

from edge.temporal import TemporalStage  # noqa: E402
from export.cli import main  # noqa: E402
from export.manifest import Manifest  # noqa: E402
from export.pipeline import EXIT_BAD_INPUT, EXIT_OK  # noqa: E402
from export.temporal_onnx import export_temporal, run_stream, stream_windows  # noqa: E402
from export.triton_repo import (  # noqa: E402
    RepoOptions,
    TritonRepoError,
    check_config,
    mc,
    onnx_config,
    prepare,
    read_config,
)
from hipart.checkpoint import save_checkpoint  # noqa: E402
from hipart.models.temporal import TemporalConfig, TemporalLifter  # noqa: E402

FRAMES = 9


def temporal_model() -> TemporalLifter:
    torch.manual_seed(0)
    cfg = TemporalConfig(frames=FRAMES, dim=16, blocks=3, heads=2, prune="tps", recover="tri", schedule_r=(5, 3),
                         schedule_b=(0, 1), pipeline="seq2frame", output_frame="last")  # fmt: skip
    return TemporalLifter(cfg).eval()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One hipart-export run (tiny random HiPART, hipart.onnx only) writing a repository with a tiny temporal model."""
    root = tmp_path_factory.mktemp("triton")
    ckpt = save_checkpoint(root / "temporal.pt", temporal_model())
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["--random-weights", "tiny", "--only", "hipart", "--onnx-only", "--no-parity",
                     "--out", str(root / "exp"), "--triton-repo", str(root / "repo"),
                     "--triton-temporal", str(ckpt)])  # fmt: skip
    finally:
        torch.set_num_threads(old)
    assert code == EXIT_OK
    return root


def io_of(graph: onnx.ModelProto, which: str, skip: tuple[str, ...] = ()) -> dict[str, tuple[str, list[int]]]:
    """name -> (Triton type name, dims without the batch axis), straight from the graph."""
    types = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.INT64: "TYPE_INT64",
             onnx.TensorProto.INT32: "TYPE_INT32"}  # fmt: skip
    values = graph.graph.input if which == "input" else graph.graph.output
    out = {}
    for v in values:
        dims = v.type.tensor_type.shape.dim
        assert dims[0].dim_param, f"{v.name}: batch axis not dynamic"
        if v.name not in skip:
            out[v.name] = (types[v.type.tensor_type.elem_type], [d.dim_value for d in dims[1:]])
    return out


def io_of_config(entries) -> dict[str, tuple[str, list[int]]]:
    return {e.name: (mc.DataType.Name(e.data_type), list(e.dims)) for e in entries}


def test_layout_and_readme(built, capsys):
    repo = built / "repo"
    names = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file())
    assert names == ["README.md", "hipart_onnx/1/model.onnx", "hipart_onnx/config.pbtxt",
                     "hipart_temporal/1/model.onnx", "hipart_temporal/config.pbtxt",
                     "hipart_trt/README.md", "hipart_trt/build_plan.sh", "hipart_trt/config.pbtxt"]  # fmt: skip
    assert (repo / "hipart_onnx/1/model.onnx").read_bytes() == (built / "exp/hipart.onnx").read_bytes()
    readme = (repo / "README.md").read_text()
    assert "NOT BUILT" in readme and "no Triton server" in readme and "sequence_start" in readme
    assert "nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models" in readme
    script = (repo / "hipart_trt/build_plan.sh").read_text()
    assert "--fp16" in script and "--minShapes=x_s:1x17x2 --optShapes=x_s:8x17x2 --maxShapes=x_s:64x17x2" in script


def test_configs_parse_and_match_the_graphs(built):
    repo = built / "repo"
    hipart = onnx.load(str(repo / "hipart_onnx/1/model.onnx"))
    for name, platform, kind in (("hipart_onnx", "onnxruntime_onnx", "KIND_GPU"),
                                 ("hipart_trt", "tensorrt_plan", "KIND_GPU")):  # fmt: skip
        cfg = read_config(repo / name / "config.pbtxt")
        assert isinstance(cfg, mc.ModelConfig) and (cfg.name, cfg.platform, cfg.max_batch_size) == (name, platform, 64)
        assert io_of_config(cfg.input) == io_of(hipart, "input") == {"x_s": ("TYPE_FP32", [17, 2])}
        assert io_of_config(cfg.output) == io_of(hipart, "output")
        assert io_of_config(cfg.output)["q_s"] == ("TYPE_INT64", [16])
        assert list(cfg.dynamic_batching.preferred_batch_size) == [8, 64]
        assert cfg.dynamic_batching.max_queue_delay_microseconds > 0
        assert [mc.ModelInstanceGroup.Kind.Name(g.kind) for g in cfg.instance_group] == [kind]

    stream = onnx.load(str(repo / "hipart_temporal/1/model.onnx"))
    cfg = read_config(repo / "hipart_temporal/config.pbtxt")
    assert (cfg.platform, cfg.max_batch_size) == ("onnxruntime_onnx", 16) and not cfg.HasField("dynamic_batching")
    ins, outs = io_of(stream, "input"), io_of(stream, "output")
    assert io_of_config(cfg.input) == {"x": ins["x"]} == {"x": ("TYPE_FP32", [161, 2])}
    assert io_of_config(cfg.output) == {"pose3d": outs["pose3d"]} == {"pose3d": ("TYPE_FP32", [17, 3])}
    sb = cfg.sequence_batching
    assert sb.HasField("direct") and sb.max_sequence_idle_microseconds > 0
    kind = mc.ModelSequenceBatching.Control.Kind.Name
    controls = {c.name: (kind(c.control[0].kind), list(c.control[0].int32_false_true)) for c in sb.control_input}
    assert controls == {"START": ("CONTROL_SEQUENCE_START", [0, 1]), "READY": ("CONTROL_SEQUENCE_READY", [0, 1])}
    assert ins["START"] == ins["READY"] == ("TYPE_INT32", [1])
    (state,) = sb.state
    assert (state.input_name, state.output_name) == ("state_in", "state_out")
    assert (mc.DataType.Name(state.data_type), list(state.dims)) == ins["state_in"] == outs["state_out"]
    assert list(state.dims)[0] == FRAMES
    (init,) = state.initial_state
    assert init.zero_data and list(init.dims) == list(state.dims)


def test_streaming_graph_matches_temporal_stage_and_windowed_model(built, tmp_path):
    model = temporal_model()
    rng = np.random.default_rng(0)
    steps, restart = FRAMES + 5, FRAMES + 2
    frames = (rng.normal(0, 0.3, (1, 2, 161, 2)) + np.cumsum(rng.normal(0, 0.02, (steps, 2, 161, 2)), 0))
    frames = frames.astype(np.float32)
    starts = np.zeros(steps, bool)
    starts[[0, restart]] = True
    got = run_stream(built / "repo/hipart_temporal/1/model.onnx", frames, starts)

    stage = TemporalStage(model, mode="causal")  # a START is a discontinuity for the stage: time jumps 10 s
    times = 0.1 * np.arange(steps) + 10.0 * (np.arange(steps) >= restart)
    staged = np.stack([stage.step(f, t, track_ids=[1, 2]) for f, t in zip(frames, times, strict=True)])
    assert stage.resets == 1
    np.testing.assert_allclose(got, staged, atol=1e-4)

    windowed = export_temporal(model, tmp_path / "temporal_lift.onnx")  # the windowed artifact on the same windows
    from export.parity import session

    sess = session(windowed)
    ref = np.stack([sess.run(None, {"x": w})[0] for w in stream_windows(frames, starts, FRAMES)])
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert np.abs(got[restart] - got[restart - 1]).max() > 1e-4  # the refill changed the output


def test_not_ready_slot_keeps_its_state(built):
    from export.parity import session

    sess = session(built / "repo/hipart_temporal/1/model.onnx")
    state = np.random.default_rng(1).normal(size=[2, *sess.get_inputs()[3].shape[1:]]).astype(np.float32)
    x = np.zeros((2, 161, 2), np.float32)
    _, out = sess.run(None, {"x": x, "START": np.array([[1], [1]], np.int32), "READY": np.array([[1], [0]], np.int32),
                             "state_in": state})  # fmt: skip
    assert np.array_equal(out[1], state[1]) and not np.array_equal(out[0], state[0])


def test_config_disagreeing_with_graph_fails_clearly(built):
    graph = onnx.load(str(built / "repo/hipart_onnx/1/model.onnx"))
    check_config(onnx_config(graph, RepoOptions()), graph, "hipart.onnx")  # agrees
    bad = onnx_config(graph, RepoOptions())
    bad.input[0].dims[:] = [161, 2]
    bad.output[3].data_type = mc.TYPE_INT32
    with pytest.raises(TritonRepoError, match=r"input 'x_s': dims \[161, 2\], the graph has \[17, 2\].*output 'q_s': "
                       "data_type TYPE_INT32, the graph has TYPE_INT64"):  # fmt: skip
        check_config(bad, graph, "hipart.onnx")
    renamed = onnx_config(graph, RepoOptions())
    renamed.input[0].name = "x"
    with pytest.raises(TritonRepoError, match=r"input 'x' is not in the graph.*graph inputs \['x_s'\] are fed by "):
        check_config(renamed, graph, "hipart.onnx")


def test_only_reuses_the_manifest_and_copies_a_listed_engine(built, tmp_path, capsys):
    exp = tmp_path / "exp"
    shutil.copytree(built / "exp", exp)
    engine = exp / "engines" / "hipart.fp16.test.engine"
    engine.parent.mkdir()
    engine.write_bytes(b"plumbing stand-in: the copy is checked, not the plan")
    engine.with_suffix(".json").write_text('{"batch": [1, 4, 32]}')
    man = Manifest(exp)
    man.add_file(engine, artifact="hipart", kind="engine", precision="fp16", model_hash="x", source="hipart.onnx",
                 engine={"gpu_name": "Test GPU", "compute_capability": "8.9", "trt_version": "10.0.0"})  # fmt: skip
    man.write()
    code = main(["--random-weights", "tiny", "--only", "lift", "--onnx-only", "--no-parity", "--out", str(exp),
                 "--triton-repo", str(tmp_path / "repo"), "--triton-temporal", "none", "--triton-kind", "cpu"])
    out = capsys.readouterr().out
    assert code == EXIT_OK, out
    repo = tmp_path / "repo"
    assert (repo / "hipart_trt/1/model.plan").read_bytes() == engine.read_bytes()
    trt = read_config(repo / "hipart_trt/config.pbtxt")  # the engine's profile, not --batch's
    assert trt.max_batch_size == 32 and list(trt.dynamic_batching.preferred_batch_size) == [4, 32]
    onnx_cfg = read_config(repo / "hipart_onnx/config.pbtxt")
    assert mc.ModelInstanceGroup.Kind.Name(onnx_cfg.instance_group[0].kind) == "KIND_CPU"
    assert not (repo / "hipart_temporal").exists() and "--triton-temporal none" in out
    assert "copied from engines/hipart.fp16.test.engine" in (repo / "README.md").read_text()


@pytest.mark.parametrize("case", ["file", "artifacts", "inside", "no-hipart", "ort-trt-cpu", "bad-temporal"])
def test_bad_target_clear_error(tmp_path, capsys, case):
    out, repo = tmp_path / "exp", tmp_path / "repo"
    extra = ["--triton-temporal", "none"]
    if case == "file":
        repo.write_text("not a folder")
    elif case == "artifacts":
        repo = out
    elif case == "inside":
        out = repo / "exported"
    elif case == "ort-trt-cpu":
        extra += ["--triton-kind", "cpu", "--triton-ort-trt"]
    elif case == "bad-temporal":
        extra = ["--triton-temporal", str(tmp_path / "missing.pt")]
    only = "lift" if case == "no-hipart" else "hipart"
    code = main(["--random-weights", "tiny", "--only", only, "--onnx-only", "--no-parity", "--out", str(out),
                 "--triton-repo", str(repo), *extra])  # fmt: skip
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    message = {"file": "is a file", "artifacts": "holds the artifacts folder", "inside": "holds the artifacts folder",
               "no-hipart": "needs hipart.onnx", "ort-trt-cpu": "needs --triton-kind gpu",
               "bad-temporal": "--triton-temporal"}[case]  # fmt: skip
    assert message in err and "Traceback" not in err
    if case != "no-hipart":  # checked before any export work
        assert not (out / "hipart.onnx").exists()


def test_prepare_refuses_a_data_dependent_temporal_model(tmp_path):
    torch.manual_seed(0)
    m = TemporalLifter(TemporalConfig(frames=5, dim=16, blocks=2, heads=2, prune="tpc", recover="tra",
                                      schedule_r=(3,), schedule_b=(0,)))  # fmt: skip
    ckpt = save_checkpoint(tmp_path / "tpc.pt", m)
    with pytest.raises(TritonRepoError, match="static kept frames"):
        prepare(tmp_path / "repo", tmp_path / "exp", RepoOptions(), str(ckpt))


def test_stream_parity_failure_is_exit_3_and_leaves_nothing(built, tmp_path, capsys, monkeypatch):
    import export.temporal_onnx as temporal_onnx
    from export.onnx_export import ExportError
    from export.pipeline import EXIT_PARITY

    def fail(*args, **kwargs):
        raise ExportError("streamed poses differ")

    monkeypatch.setattr(temporal_onnx, "check_stream_parity", fail)
    exp, repo = tmp_path / "exp", tmp_path / "repo"
    shutil.copytree(built / "exp", exp)
    code = main(["--random-weights", "tiny", "--only", "lift", "--onnx-only", "--no-parity", "--out", str(exp),
                 "--triton-repo", str(repo), "--triton-temporal", str(built / "temporal.pt")])  # fmt: skip
    assert code == EXIT_PARITY
    assert "triton repo NOT written: streamed poses differ" in capsys.readouterr().out
    assert list(repo.iterdir()) == []  # the staging folder is gone, nothing half-written
