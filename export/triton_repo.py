"""A Triton Inference Server model repository from the exported artifacts (`hipart-export --triton-repo DIR`).

Three models. `hipart_onnx`: hipart.onnx on the onnxruntime backend with the dynamic batcher. `hipart_trt`: the same
graph as a TensorRT plan; plans belong to one GPU and TensorRT version, so the folder holds the config and a
`trtexec` script to build `1/model.plan` on the target (an engine the manifest lists is copied instead).
`hipart_temporal`: the causal streaming temporal lifter (export.temporal_onnx.export_temporal_stream) with the
sequence batcher; the ring buffer of the last T frames' tokens is Triton's implicit state, one per stream.
Every config.pbtxt is a `model_config_pb2.ModelConfig` written with text_format, parsed back, and checked name by
name (data type, dims) against the ONNX graph it serves; a disagreement stops the command.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import onnx
from google.protobuf import text_format

from export.engine_cache import read_sidecar
from export.manifest import ENGINE_PREFERENCE, Entry, Manifest, ManifestError, check_file, load_manifest, resolve
from export.pipeline import BadInput
from hipart.atomic_write import OutputDirError, ensure_writable_dir, write_bytes_atomic

if TYPE_CHECKING:
    from hipart.models.temporal import TemporalLifter

try:  # the Triton model-config schema; prepare() says what to install when it is missing
    from tritonclient.grpc import model_config_pb2 as mc
except ImportError:
    mc = None

ONNX_MODEL, TRT_MODEL, TEMPORAL_MODEL = "hipart_onnx", "hipart_trt", "hipart_temporal"
MODELS = (ONNX_MODEL, TRT_MODEL, TEMPORAL_MODEL)
STATE = ("state_in", "state_out")  # the streaming graph's implicit-state tensors
CONTROLS = ("START", "READY")  # the streaming graph's sequence-control inputs (int32, 0 = false, 1 = true)
ORT_TRT_CACHE = "/tmp/hipart_ort_trt"  # inside the container: onnxruntime's TensorRT engine cache


class TritonRepoError(BadInput):
    """The repository cannot be written as asked (folder, missing artifact, config that disagrees with its graph)."""


@dataclass
class RepoOptions:
    """How the repository's models are served (hipart-export's --triton-* flags and --batch)."""

    kind: str = "gpu"  # instance kind of the onnxruntime models: gpu | cpu (hipart_trt is always GPU)
    batch: tuple[int, int, int] = (1, 8, 64)  # min, opt, max: max_batch_size = max, preferred = opt and max
    queue_delay_us: int = 100  # how long the batchers wait to fill a batch
    ort_tensorrt: bool = False  # hipart_onnx through onnxruntime's TensorRT execution provider (FP16)
    streams: int = 16  # hipart_temporal's max_batch_size: concurrent streams per instance (direct strategy)
    idle_us: int = 5_000_000  # a stream silent this long is ended and its slot freed


@dataclass
class RepoPlan:
    """A checked request to write a repository: call `write()` once the artifacts exist."""

    repo: Path
    artifacts: Path
    options: RepoOptions
    temporal: TemporalLifter | None = None  # streamed as hipart_temporal
    temporal_source: str = ""  # where the temporal lifter came from, or why there is none

    def write(self, log: Callable[[str], None] = lambda m: print(f"[triton-repo] {m}", file=sys.stderr)) -> list[str]:
        """Write the repository (see `write_repo`); returns the summary lines."""
        return write_repo(self, log)


def prepare(repo: str | Path, artifacts: str | Path, options: RepoOptions, temporal: str | None = None) -> RepoPlan:
    """Check the target folder, the options and the temporal checkpoint (`none`: no temporal model; None: the
    bundled one if this build has it) before any export work; TritonRepoError / OutputDirError otherwise."""
    if mc is None:
        raise TritonRepoError("--triton-repo needs the Triton model-config schema: pip install 'tritonclient[grpc]'")
    repo, artifacts = Path(repo), Path(artifacts)
    if repo.exists() and not repo.is_dir():
        raise OutputDirError(f"--triton-repo {repo} is a file; give a folder (Triton's --model-repository)")
    r, a = repo.resolve(), artifacts.resolve()
    if r == a or r in a.parents:
        raise TritonRepoError(f"--triton-repo {repo} holds the artifacts folder {artifacts}: Triton would take "
                              "every folder in it (engines/, ...) for a model; give the repository its own folder")
    if options.kind not in ("gpu", "cpu"):
        raise TritonRepoError(f"--triton-kind must be gpu or cpu, got {options.kind!r}")
    if options.ort_tensorrt and options.kind != "gpu":
        raise TritonRepoError("--triton-ort-trt runs onnxruntime's TensorRT provider: it needs --triton-kind gpu")
    ensure_writable_dir(repo)
    plan = RepoPlan(repo, artifacts, options, temporal_source="not written (--triton-temporal none)")
    if temporal != "none":
        plan.temporal, plan.temporal_source = _temporal_model(temporal)
    return plan


def _temporal_model(path: str | None) -> tuple[TemporalLifter | None, str]:
    """(the temporal lifter to stream, where it came from); no lifter when none is given and none is bundled."""
    from export.temporal_onnx import STREAM_STATIC
    from hipart.checkpoint import CheckpointError, bundled_temporal_checkpoint, load_checkpoint

    src = path or bundled_temporal_checkpoint()
    if src is None:
        return None, "not written (no --triton-temporal given and this build bundles no temporal model)"
    try:
        model, _ = load_checkpoint(src, expect_kind="temporal")
    except CheckpointError as e:
        raise TritonRepoError(f"--triton-temporal: {e}") from None
    if model.config.prune not in STREAM_STATIC:
        raise TritonRepoError(f"--triton-temporal {src}: prune={model.config.prune!r} picks frames from the data; the "
                              f"streaming graph needs static kept frames ({' or '.join(STREAM_STATIC)})")
    return model, ("bundled temporal model " if path is None else "") + str(src)


# -- configs ---------------------------------------------------------------------------------------------------------
def _dtype(elem_type: int) -> int:
    """Triton DataType of an ONNX element type (TYPE_INVALID when Triton has none)."""
    name = {"FLOAT": "TYPE_FP32", "FLOAT16": "TYPE_FP16", "DOUBLE": "TYPE_FP64", "INT64": "TYPE_INT64",
            "INT32": "TYPE_INT32", "INT8": "TYPE_INT8", "UINT8": "TYPE_UINT8", "BOOL": "TYPE_BOOL"}.get(
        onnx.TensorProto.DataType.Name(elem_type), "TYPE_INVALID")  # fmt: skip
    return mc.DataType.Value(name)


def graph_tensors(graph: onnx.ModelProto, which: str) -> dict[str, tuple[int, list[int]]]:
    """name -> (Triton data type, dims with -1 for a symbolic axis) of the graph's inputs or outputs."""
    values = graph.graph.input if which == "input" else graph.graph.output
    inits = {i.name for i in graph.graph.initializer}
    return {
        v.name: (_dtype(v.type.tensor_type.elem_type),
                 [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim])
        for v in values if v.name not in inits
    }  # fmt: skip


def _io(graph: onnx.ModelProto, which: str, skip: tuple[str, ...] = ()) -> list:
    """ModelInput / ModelOutput entries for the graph's tensors (batch axis dropped), except `skip`."""
    cls = mc.ModelInput if which == "input" else mc.ModelOutput
    return [cls(name=n, data_type=t, dims=d[1:]) for n, (t, d) in graph_tensors(graph, which).items() if n not in skip]


def _batched(cfg, graph: onnx.ModelProto, opts: RepoOptions) -> None:
    """Inputs, outputs and the dynamic batcher of a stateless model."""
    cfg.input.extend(_io(graph, "input"))
    cfg.output.extend(_io(graph, "output"))
    cfg.dynamic_batching.preferred_batch_size.extend(sorted({opts.batch[1], cfg.max_batch_size}))
    cfg.dynamic_batching.max_queue_delay_microseconds = opts.queue_delay_us


def _instances(kind: str):
    """One instance of the model on the GPU or the CPU."""
    return mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_GPU if kind == "gpu" else
                                 mc.ModelInstanceGroup.KIND_CPU, count=1)  # fmt: skip


def onnx_config(graph: onnx.ModelProto, opts: RepoOptions):
    """hipart_onnx: the whole model on the onnxruntime backend, dynamic batching, optionally its TensorRT provider."""
    cfg = mc.ModelConfig(name=ONNX_MODEL, platform="onnxruntime_onnx", max_batch_size=opts.batch[2])
    _batched(cfg, graph, opts)
    cfg.instance_group.append(_instances(opts.kind))
    if opts.ort_tensorrt:
        acc = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        acc.parameters.update({"precision_mode": "FP16", "max_workspace_size_bytes": str(1 << 30),
                               "trt_engine_cache_enable": "1", "trt_engine_cache_path": ORT_TRT_CACHE})  # fmt: skip
    return cfg


def trt_config(graph: onnx.ModelProto, opts: RepoOptions):
    """hipart_trt: the same inputs and outputs as the ONNX graph the plan is built from, on the GPU; opts.batch is
    the plan's optimisation profile."""
    cfg = mc.ModelConfig(name=TRT_MODEL, platform="tensorrt_plan", max_batch_size=opts.batch[2])
    _batched(cfg, graph, opts)
    cfg.instance_group.append(_instances("gpu"))
    return cfg


def temporal_config(graph: onnx.ModelProto, opts: RepoOptions):
    """hipart_temporal: one frame per request; the sequence batcher (direct: one batch slot per stream) feeds START
    and READY, and keeps the token ring buffer as implicit state (zeros at first; the graph refills it at START)."""
    cfg = mc.ModelConfig(name=TEMPORAL_MODEL, platform="onnxruntime_onnx", max_batch_size=opts.streams)
    cfg.input.extend(_io(graph, "input", skip=CONTROLS + STATE[:1]))
    cfg.output.extend(_io(graph, "output", skip=STATE[1:]))
    sb = cfg.sequence_batching
    sb.max_sequence_idle_microseconds = opts.idle_us
    sb.direct.max_queue_delay_microseconds = opts.queue_delay_us
    kinds = {"START": mc.ModelSequenceBatching.Control.CONTROL_SEQUENCE_START,
             "READY": mc.ModelSequenceBatching.Control.CONTROL_SEQUENCE_READY}  # fmt: skip
    for name in CONTROLS:
        sb.control_input.add(name=name).control.add(kind=kinds[name], int32_false_true=[0, 1])
    dtype, dims = graph_tensors(graph, "input")[STATE[0]]
    state = sb.state.add(input_name=STATE[0], output_name=STATE[1], data_type=dtype, dims=dims[1:])
    state.initial_state.add(data_type=dtype, dims=dims[1:], zero_data=True, name="empty ring buffer")
    cfg.instance_group.append(_instances(opts.kind))
    return cfg


def _control_dtype(control) -> int:
    """The tensor data type a sequence control asks of its model input."""
    if control.int32_false_true:
        return mc.TYPE_INT32
    if control.fp32_false_true:
        return mc.TYPE_FP32
    return mc.TYPE_BOOL if control.bool_false_true else control.data_type


def check_config(cfg, graph: onnx.ModelProto, graph_name: str) -> None:
    """TritonRepoError naming every input, output, control or state of `cfg` whose name, data type or dims (batch
    axis excluded) disagree with the ONNX graph, and every graph input the config does not feed."""
    ins, outs = graph_tensors(graph, "input"), graph_tensors(graph, "output")
    problems: list[str] = []

    def want(what: str, table: dict, name: str, dtype: int, dims) -> None:
        if name not in table:
            problems.append(f"{what} {name!r} is not in the graph (it has {sorted(table)})")
            return
        g_type, g_dims = table[name]
        if cfg.max_batch_size > 0:
            if not g_dims or g_dims[0] != -1:
                problems.append(f"{what} {name!r}: max_batch_size > 0 but the graph's axis 0 is not a dynamic batch")
            g_dims = g_dims[1:]
        if g_type != dtype:
            problems.append(f"{what} {name!r}: data_type {mc.DataType.Name(dtype)}, the graph has "
                            f"{mc.DataType.Name(g_type)}")  # fmt: skip
        if list(dims) != g_dims:
            problems.append(f"{what} {name!r}: dims {list(dims)}, the graph has {g_dims}")

    for i in cfg.input:
        want("input", ins, i.name, i.data_type, i.dims)
    for o in cfg.output:
        want("output", outs, o.name, o.data_type, o.dims)
    sb = cfg.sequence_batching
    for c in sb.control_input:
        for control in c.control:
            want("control input", ins, c.name, _control_dtype(control), [1])
    for s in sb.state:
        want("state input", ins, s.input_name, s.data_type, s.dims)
        want("state output", outs, s.output_name, s.data_type, s.dims)
        for init in s.initial_state:
            if (init.data_type, list(init.dims)) != (s.data_type, list(s.dims)):
                problems.append(f"state {s.input_name!r}: initial_state {mc.DataType.Name(init.data_type)} "
                                f"{list(init.dims)} differs from the state's")
    fed = {i.name for i in cfg.input} | {c.name for c in sb.control_input} | {s.input_name for s in sb.state}
    if set(ins) - fed:
        problems.append(f"graph inputs {sorted(set(ins) - fed)} are fed by nothing in the config")
    if problems:
        raise TritonRepoError(f"{cfg.name}/config.pbtxt disagrees with {graph_name}: " + "; ".join(problems))


CONFIG_HEADER = ("# Written by hipart-export --triton-repo from a Triton ModelConfig message (protobuf text format).\n"
                 "# Default values are not printed: a control without `kind` is CONTROL_SEQUENCE_START.\n")


def config_text(cfg) -> str:
    """The config as protobuf text, after checking that it parses back into the same ModelConfig."""
    text = CONFIG_HEADER + text_format.MessageToString(cfg)
    if text_format.Parse(text, mc.ModelConfig()) != cfg:
        raise TritonRepoError(f"{cfg.name}: config.pbtxt does not parse back into the same ModelConfig")
    return text


def read_config(path: str | Path):
    """A config.pbtxt parsed into ModelConfig (text_format.ParseError when it does not fit the schema)."""
    return text_format.Parse(Path(path).read_text(), mc.ModelConfig())


def _write_model(folder: Path, cfg, graph: onnx.ModelProto, graph_name: str) -> None:
    """Check `cfg` against the graph and write folder/config.pbtxt; what lands on disk is what was checked."""
    text = config_text(cfg)
    check_config(text_format.Parse(text, mc.ModelConfig()), graph, graph_name)
    write_bytes_atomic(folder / "config.pbtxt", text.encode())


# -- the repository ---------------------------------------------------------------------------------------------------
def _engine(man: Manifest) -> Entry | None:
    """The hipart engine the manifest lists (fp16, then int8, then fp32), or None."""
    return next((e for p in ENGINE_PREFERENCE for e in man.select("hipart", p, "engine")), None)


def trtexec_command(onnx_rel: str, plan_rel: str, input_name: str, dims: list[int], batch: tuple[int, int, int]) -> str:
    """The trtexec line that builds hipart_trt's plan with the profile min/opt/max batch."""
    shape = "x".join(str(d) for d in dims)
    profile = zip(("min", "opt", "max"), batch, strict=True)
    shapes = " ".join(f"--{k}Shapes={input_name}:{b}x{shape}" for k, b in profile)
    return f"${{TRTEXEC:-trtexec}} --onnx={onnx_rel} --saveEngine={plan_rel} --fp16 {shapes}"


def write_repo(plan: RepoPlan, log: Callable[[str], None]) -> list[str]:
    """Write hipart_onnx, hipart_trt, hipart_temporal and README.md into a staging folder inside the repository,
    then move them into place (replacing those of an earlier run); returns the summary lines."""
    try:
        man = load_manifest(plan.artifacts)
        src, entry = resolve(plan.artifacts, "hipart", "fp32", man=man)
    except ManifestError as e:
        raise TritonRepoError(f"--triton-repo needs hipart.onnx: {e}") from None
    opts = plan.options
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=plan.repo))
    try:
        graph = onnx.load(str(src), load_external_data=False)
        log(f"{ONNX_MODEL}: {src} (model {entry.model_hash})")
        (staging / ONNX_MODEL / "1").mkdir(parents=True)
        shutil.copyfile(src, staging / ONNX_MODEL / "1" / "model.onnx")
        _write_model(staging / ONNX_MODEL, onnx_config(graph, opts), graph, str(src))

        engine = _engine(man)
        trt_dir = staging / TRT_MODEL
        trt_dir.mkdir()
        batch = opts.batch
        if engine is not None:
            eng_path = check_file(man, engine)
            batch = tuple(read_sidecar(eng_path.with_suffix(".json")).get("batch") or batch)
            (trt_dir / "1").mkdir()
            shutil.copyfile(eng_path, trt_dir / "1" / "model.plan")
            plan_note = (f"1/model.plan copied from {engine.file} ({engine.describe()}); it runs only on that GPU "
                         "with that TensorRT version")  # fmt: skip
        else:
            plan_note = ("1/model.plan NOT BUILT (the artifacts folder lists no hipart TensorRT engine): build it on "
                         "the target GPU with build_plan.sh")  # fmt: skip
        _write_model(trt_dir, trt_config(graph, replace(opts, batch=batch)), graph, str(src))
        name, (_, dims) = next(iter(graph_tensors(graph, "input").items()))
        cmd = trtexec_command('"$HERE/../hipart_onnx/1/model.onnx"', '"$HERE/1/model.plan"', name, dims[1:], batch)
        write_bytes_atomic(trt_dir / "build_plan.sh", _build_script(cmd).encode())
        os.chmod(trt_dir / "build_plan.sh", 0o755)
        write_bytes_atomic(trt_dir / "README.md", _trt_readme(plan_note, cmd, batch).encode())
        log(f"{TRT_MODEL}: {plan_note}")

        lines = [f"triton repo: {plan.repo} ({ONNX_MODEL}: {src.name}, model {entry.model_hash}; "
                 f"{TRT_MODEL}: {plan_note}"]
        temporal_line = plan.temporal_source
        if plan.temporal is not None:
            temporal_line = _write_temporal(staging / TEMPORAL_MODEL, plan, log)
        lines[0] += f"; {TEMPORAL_MODEL}: {temporal_line})"
        write_bytes_atomic(staging / "README.md", _readme(plan, src, entry, plan_note, temporal_line).encode())
        _install(staging, plan.repo)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return lines + ["triton repo: configs parsed as ModelConfig and checked against their ONNX graphs; no Triton "
                    "server or TensorRT was run here (see README.md there)"]  # fmt: skip


def _write_temporal(folder: Path, plan: RepoPlan, log: Callable[[str], None]) -> str:
    """Export and check the streaming temporal graph, then its config; returns its summary."""
    from export.temporal_onnx import check_stream_parity, export_temporal_stream
    from hipart.checkpoint import model_hash

    path = export_temporal_stream(plan.temporal, folder / "1" / "model.onnx")
    worst = check_stream_parity(path, plan.temporal)
    graph = onnx.load(str(path), load_external_data=False)
    _write_model(folder, temporal_config(graph, plan.options), graph, "the streaming temporal graph")
    cfg = plan.temporal.config
    text = (f"{plan.temporal_source} (model {model_hash(plan.temporal)}, T={cfg.frames}, {cfg.num_points} points), "
            f"streamed vs windowed PyTorch max abs error {worst:.1e} m")  # fmt: skip
    log(f"{TEMPORAL_MODEL}: {text}")
    return text


def _install(staging: Path, repo: Path) -> None:
    """Replace the repository's models and README by the staged ones (a model not staged this run is removed)."""
    for name in (*MODELS, "README.md"):
        new, dst = staging / name, repo / name
        if dst.is_dir() and not dst.is_symlink():
            old = staging / f".old-{name}"
            os.replace(dst, old)
            shutil.rmtree(old)
        elif dst.exists() or dst.is_symlink():
            dst.unlink()
        if new.exists():
            os.replace(new, dst)


def _build_script(cmd: str) -> str:
    """hipart_trt/build_plan.sh: the trtexec line, run from anywhere."""
    return f"""#!/bin/sh
# Builds hipart_trt/1/model.plan from hipart_onnx/1/model.onnx on THIS GPU (a plan is tied to the GPU model and the
# TensorRT version). Run it in the TensorRT container of the same release as the Triton container that serves it
# (nvcr.io/nvidia/tensorrt:<yy.mm>-py3 for tritonserver:<yy.mm>-py3), with the repository mounted; TRTEXEC overrides
# the trtexec binary (e.g. /usr/src/tensorrt/bin/trtexec).
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$HERE/1"
{cmd}
"""


def _trt_readme(plan_note: str, cmd: str, batch: tuple[int, int, int]) -> str:
    """hipart_trt/README.md: whether the plan exists and how to build it."""
    return f"""# hipart_trt: HiPART as a TensorRT plan

Status: {plan_note}.

`config.pbtxt` serves `1/model.plan` (platform `tensorrt_plan`, max_batch_size {batch[2]}, inputs and outputs named as
in `hipart_onnx`). TensorRT plans are not portable, so the plan is built on the GPU that will serve it:

```bash
docker run --rm --gpus all -v $PWD:/models nvcr.io/nvidia/tensorrt:<yy.mm>-py3 sh /models/hipart_trt/build_plan.sh
```

which runs

```bash
{cmd}
```

(optimisation profile: batch {batch[0]} / {batch[1]} / {batch[2]}; `max_batch_size` must not exceed the profile's
maximum). The token outputs `q_s` / `q_d` are INT64, which needs TensorRT 10 or newer (older releases have no INT64
tensors and the config would no longer match the plan). Alternatively run `hipart-export --fp16` on the target GPU
with TensorRT installed and rerun `hipart-export --triton-repo ...`: the engine the manifest lists is copied here.
"""


def _readme(plan: RepoPlan, src: Path, entry: Entry, plan_note: str, temporal_line: str) -> str:
    """The repository's README.md: models, how to run them, clients, what was and was not checked."""
    o = plan.options
    kind = "KIND_GPU" if o.kind == "gpu" else "KIND_CPU"
    temporal = f"| `{TEMPORAL_MODEL}` | - | - | {temporal_line} |"
    if plan.temporal is not None:
        n = plan.temporal.config.num_points
        temporal = (f"| `{TEMPORAL_MODEL}` | onnxruntime_onnx, {kind}, sequence batcher (direct, {o.streams} streams "
                    f"per instance, idle {o.idle_us // 1000} ms), implicit state | `x` [{n},2] one frame -> `pose3d` "
                    f"[17,3] (causal) | {temporal_line} |")  # fmt: skip
    accel = " + onnxruntime TensorRT provider (FP16)" if o.ort_tensorrt else ""
    onnx_row = (f"| `{ONNX_MODEL}` | onnxruntime_onnx, {kind}, dynamic batching (preferred {o.batch[1]}/{o.batch[2]}, "
                f"{o.queue_delay_us} us){accel} | `x_s` [17,2] -> `dense` [48,2], `fine` [96,2], `pose3d` [17,3], "
                f"`q_s` [16], `q_d` [48] (INT64) | `{src.name}`, model {entry.model_hash} |")  # fmt: skip
    return f"""# HiPART model repository for Triton Inference Server

Written by `hipart-export --triton-repo` from `{plan.artifacts}/manifest.json`. Layout:

```
hipart_onnx/config.pbtxt, 1/model.onnx       whole model (x_s -> dense, fine, pose3d, q_s, q_d)
hipart_trt/config.pbtxt, build_plan.sh, README.md  (+ 1/model.plan once built)
hipart_temporal/config.pbtxt, 1/model.onnx   streaming temporal lifter (one frame per request, state in Triton)
```

| model | serving | tensors | source |
|---|---|---|---|
{onnx_row}
| `{TRT_MODEL}` | tensorrt_plan, KIND_GPU | as `{ONNX_MODEL}` | {plan_note} |
{temporal}

## Run it (NGC container)

```bash
docker run --rm --gpus all -p 8000:8000 -p 8001:8001 -p 8002:8002 -v $PWD:/models \\
    nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models \\
    --model-control-mode=explicit --load-model={ONNX_MODEL} --load-model={TEMPORAL_MODEL}
```

Add `--load-model={TRT_MODEL}` once `{TRT_MODEL}/1/model.plan` exists (see `{TRT_MODEL}/README.md`); without the
explicit list Triton tries every folder and stops at the missing plan. On a machine without a GPU, write the
repository with `--triton-kind cpu` and drop `--gpus all`.

## Clients (`pip install tritonclient[http]`)

```python
import numpy as np
import tritonclient.http as http

client = http.InferenceServerClient("localhost:8000")
x_s = np.zeros((4, 17, 2), np.float32)  # normalised 2D poses (hipart.camera.normalize_screen_coordinates)
inp = http.InferInput("x_s", list(x_s.shape), "FP32")
inp.set_data_from_numpy(x_s)
res = client.infer("{ONNX_MODEL}", [inp])
pose3d, dense, fine = res.as_numpy("pose3d"), res.as_numpy("dense"), res.as_numpy("fine")  # [4,17,3] metres, ...

# hipart_temporal: one request per frame and person; sequence_id = the stream (track) id.
# x = that frame's lifter input: concat(x_s, dense, fine) [161,2] for a 161-point model, x_s for a 17-point one
# (edge.temporal.TemporalStage.hierarchical_input).
for i, frame in enumerate(frames):
    inp = http.InferInput("x", [1, *frame.shape], "FP32")
    inp.set_data_from_numpy(frame[None].astype(np.float32))
    res = client.infer("{TEMPORAL_MODEL}", [inp], sequence_id=stream_id, sequence_start=(i == 0))
    pose = res.as_numpy("pose3d")[0]  # causal 3D of this frame
```

`sequence_start=True` refills the ring buffer with copies of that frame (TemporalStage's warm-up); after a break in
the stream (time jump, person lost) start again: end the old sequence (`sequence_end=True`) or use a new
`sequence_id`. A stream silent for {o.idle_us // 1000} ms is ended by the server. The correlation id only routes the
requests: the state is kept per sequence by Triton (implicit state `{STATE[0]}` -> `{STATE[1]}`, zeros at first), so
the graph needs no CORRID input.

## What was checked here, and what was not run

Checked when this folder was written: every `config.pbtxt` is a `model_config_pb2.ModelConfig` (tritonclient's copy
of Triton's schema) written with protobuf text_format and parsed back; its input, output, control and state names,
data types and dims equal the ONNX graph's (batch axis excluded); the streaming temporal graph, fed frame by frame in
onnxruntime with the state handed back (START in the middle of the stream included), gives the windowed PyTorch
model's causal poses. Not run here: no Triton server (the configs were not loaded by one), no TensorRT (no plan
built, no onnxruntime TensorRT provider), no GPU, no client round trip.
"""
