"""The HiPART artifacts of docs/ARCHITECTURE.md §5 (+ detokenize): export each, then check it against PyTorch."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from calib import onnx_metadata as md
from export.hipart_graphs import (
    DecodeStepGraph,
    DensifyGraph,
    DetokenizeGraph,
    HiPARTGraph,
    LiftGraph,
    empty_cache,
    run_step_loop,
)
from export.onnx_export import DEFAULT_OPSET, GraphSpec, export_module, finalise
from export.parity import ParityReport, compare_outputs, session
from hipart import skeleton
from hipart.atomic_write import write_bytes_atomic
from hipart.models.hipart import HiPART

X_S = "screen-normalised 2D pose [B,17,2] (hipart.camera.normalize_screen_coordinates)"
DENSE = "dense 2D pose [B,48,2], normalised like x_s"
FINE = "fine 2D pose [B,96,2], normalised like x_s"
Q_S = "sparse token ids [B,16] (int64, canonical bone order)"
Q_D = "dense token ids [B,48] (int64, part p owns 3p..3p+2)"
POSE3D = "3D pose [B,17,3], metres, root-relative, camera frame"
CACHE = "GCSAB K/V cache [B,layers,heads,17,head_dim], slot i = sequence position i"

SPECS: dict[str, GraphSpec] = {
    "densify": GraphSpec("densify", {"x_s": X_S}, {"dense": DENSE, "fine": FINE, "q_s": Q_S, "q_d": Q_D}),
    "decode_step": GraphSpec(
        "decode_step",
        {
            "x_s": X_S,
            "step": "decode step i in [0,16) (int64 [1]); predicts part order[i]",
            "prev_q_s": "sparse token decoded at step i-1 [B] (ignored at step 0)",
            "prev_q_d": "dense tokens decoded at step i-1 [B,3] (ignored at step 0)",
            "past_k": CACHE,
            "past_v": CACHE,
        },
        {
            "q_s": "sparse token of part order[i] [B]",
            "q_d": "dense tokens of part order[i] [B,3]",
            "logits_s": "sparse logits [B,Ks]",
            "logits_d": "dense logits [B,3,Kd]",
            "present_k": CACHE,
            "present_v": CACHE,
        },
        unbatched=("step",),
    ),
    "detokenize": GraphSpec("detokenize", {"q_s": Q_S, "q_d": Q_D}, {"dense": DENSE, "fine": FINE}),
    "lift": GraphSpec("lift", {"points": "concat(x_s, dense, fine) [B,161,2]"}, {"pose3d": POSE3D}),
    "hipart": GraphSpec(
        "hipart", {"x_s": X_S}, {"dense": DENSE, "fine": FINE, "pose3d": POSE3D, "q_s": Q_S, "q_d": Q_D}
    ),
}
ARTIFACTS = tuple(SPECS)


@dataclass
class Artifact:
    """One exported file and its measured parity against PyTorch."""

    name: str
    path: Path
    size_bytes: int
    parity: ParityReport | None = None


def random_poses(batch: int, seed: int) -> np.ndarray:
    """Random x_s-like inputs [B,17,2] in the normalised range (parity inputs; not a pose prior)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, skeleton.NUM_JOINTS, 2, generator=g) * 2 - 1).numpy()


def _graph_and_inputs(model: HiPART, name: str, batch: int = 2):
    x = torch.from_numpy(random_poses(batch, 0))
    gen = model.generator
    if name == "densify":
        return DensifyGraph(model), (x,)
    if name == "hipart":
        return HiPARTGraph(model), (x,)
    if name == "lift":
        return LiftGraph(model), (torch.rand(batch, model.config.lifter.num_points, 2) * 2 - 1,)
    if name == "detokenize":
        f = parity_feeds(model, name, batch, 0)
        return DetokenizeGraph(model), (torch.from_numpy(f["q_s"]), torch.from_numpy(f["q_d"]))
    k, v = empty_cache(gen, batch, x)
    zeros = torch.zeros(batch, dtype=torch.long)
    return DecodeStepGraph(model), (x, torch.tensor([1]), zeros, zeros[:, None].repeat(1, gen.r), k, v)


def export_artifact(model: HiPART, name: str, out_dir: str | Path, model_hash: str, opset: int = DEFAULT_OPSET) -> Path:
    """Export one of ARTIFACTS to out_dir/<name>.onnx (atomic)."""
    graph, inputs = _graph_and_inputs(model.eval(), name)
    return export_module(graph, inputs, SPECS[name], Path(out_dir) / f"{name}.onnx", model_hash, opset,
                         extra=runtime_metadata(model))  # fmt: skip


def runtime_metadata(model: HiPART) -> dict[str, str]:
    """What a torch-free runtime needs to loop decode_step and feed lift (`hipart.extra` of every artifact).

    decode_steps / kv_slots; generation_order / inverse_order (JSON lists: step i predicts part order[i];
    tokens[:, inverse_order] puts generation-order tokens back in canonical order); kv_cache (JSON
    [layers, heads, slots, head_dim], the per-sample K/V cache shape); lifter_input (sparse | dense | hierarchy)
    and lift_points (17 | 65 | 161).
    """
    gen = model.generator
    c = gen.config
    return {
        "decode_steps": str(gen.num_parts),
        "kv_slots": str(gen.max_len),
        "generation_order": json.dumps([int(i) for i in gen.order.tolist()]),
        "inverse_order": json.dumps([int(i) for i in gen.inv_order.tolist()]),
        "kv_cache": json.dumps([c.gcsab_blocks, c.heads, gen.max_len, c.dim // c.heads]),
        "lifter_input": model.config.lifter_input,
        "lift_points": str(model.config.lifter.num_points),
    }


def densify_from_hipart(hipart_path: str | Path, out_dir: str | Path) -> Path:
    """densify.onnx as the x_s -> (dense, fine, q_s, q_d) subgraph of hipart.onnx: one trace, same numerics."""
    from onnx.utils import Extractor

    full = onnx.load(str(hipart_path))
    sub = Extractor(full).extract_model(["x_s"], list(SPECS["densify"].outputs))
    del sub.opset_import[:]
    sub.opset_import.extend(full.opset_import)
    sub.ir_version = full.ir_version
    meta = md.read(full)
    meta.artifact, meta.inputs, meta.outputs = "densify", dict(SPECS["densify"].inputs), dict(SPECS["densify"].outputs)
    sub = finalise(sub, meta, run_simplify=False)
    return write_bytes_atomic(Path(out_dir) / "densify.onnx", sub.SerializeToString())


def reference_outputs(model: HiPART, name: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the PyTorch model itself (not the export view) gives for an artifact's inputs."""
    with torch.no_grad():
        if name == "lift":
            return {"pose3d": model.lifter(torch.from_numpy(feeds["points"])).numpy()}
        if name == "decode_step":
            out = DecodeStepGraph(model)(*(torch.from_numpy(v) for v in feeds.values()))
            return {n: o.numpy() for n, o in zip(SPECS[name].outputs, out, strict=True)}
        if name == "detokenize":
            dense, fine = model.decode_tokens(torch.from_numpy(feeds["q_s"]), torch.from_numpy(feeds["q_d"]))
            return {"dense": dense.numpy(), "fine": fine.numpy()}
        out = model(torch.from_numpy(feeds["x_s"]))
    return {n: out[n].numpy() for n in SPECS[name].outputs}


def parity_feeds(model: HiPART, name: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Random inputs for an artifact (for decode_step: a random step and random caches; detokenize: random ids)."""
    x = random_poses(batch, seed)
    if name in ("densify", "hipart"):
        return {"x_s": x}
    g = torch.Generator().manual_seed(seed)
    if name == "detokenize":
        tc = model.config.tokenizer
        return {
            "q_s": torch.randint(0, tc.sparse_codebook_size, (batch, tc.num_sparse), generator=g).numpy(),
            "q_d": torch.randint(0, tc.dense_codebook_size, (batch, tc.num_dense), generator=g).numpy(),
        }
    if name == "lift":
        return {"points": (torch.rand(batch, model.config.lifter.num_points, 2, generator=g) * 2 - 1).numpy()}
    gen = model.generator
    k, v = empty_cache(gen, batch, torch.zeros(1))
    return {
        "x_s": x,
        "step": np.array([seed % gen.num_parts], np.int64),
        "prev_q_s": torch.randint(0, gen.codebook_s.shape[0], (batch,), generator=g).numpy(),
        "prev_q_d": torch.randint(0, gen.codebook_d.shape[0], (batch, gen.r), generator=g).numpy(),
        "past_k": torch.randn(k.shape, generator=g).numpy(),
        "past_v": torch.randn(v.shape, generator=g).numpy(),
    }


def ort_runner(path: str | Path) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """A callable feeds -> named outputs over an onnxruntime CPU session."""
    sess = session(path)
    names = [o.name for o in sess.get_outputs()]
    return lambda feeds: dict(zip(names, sess.run(names, feeds), strict=True))


def check_artifact(
    model: HiPART, name: str, path: str | Path, batches: Sequence[int] = (1, 7), seeds: Sequence[int] = (0, 1, 2)
) -> ParityReport:
    """Worst-case parity of an artifact over batches x seeds (tokens must match in every case)."""
    run = ort_runner(path)
    worst = ParityReport()
    for b in batches:
        for s in seeds:
            feeds = parity_feeds(model, name, b, s)
            rep = compare_outputs(run(feeds), reference_outputs(model, name, feeds))
            for k, e in rep.max_rel_err.items():
                worst.max_rel_err[k] = max(e, worst.max_rel_err.get(k, 0.0))
                worst.max_abs_err[k] = max(rep.max_abs_err[k], worst.max_abs_err.get(k, 0.0))
            for k, eq in rep.tokens_equal.items():
                worst.tokens_equal[k] = eq and worst.tokens_equal.get(k, True)
    return worst


def step_loop_tokens(model: HiPART, path: str | Path, x_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode all parts by looping decode_step.onnx in onnxruntime (what a looping runtime does)."""
    run = ort_runner(path)
    names = list(SPECS["decode_step"].inputs)

    def step_fn(*args):
        out = run(dict(zip(names, (np.asarray(a) for a in args), strict=True)))
        return list(out.values())

    return run_step_loop(step_fn, model.generator, x_s)


def export_all(
    model: HiPART,
    out_dir: str | Path,
    model_hash: str,
    names: Sequence[str] = ARTIFACTS,
    opset: int = DEFAULT_OPSET,
    parity: bool = True,
    progress: Callable[[str], None] = lambda msg: None,
) -> list[Artifact]:
    """Export the requested artifacts and (optionally) measure their parity."""
    results = []
    # hipart first: densify is then cut out of it instead of tracing the unrolled decode a second time
    order = sorted(names, key=lambda n: (n != "hipart", ARTIFACTS.index(n)))
    for name in order:
        progress(f"exporting {name}.onnx")
        if name == "densify" and "hipart" in names:
            path = densify_from_hipart(Path(out_dir) / "hipart.onnx", out_dir)
        else:
            path = export_artifact(model, name, out_dir, model_hash, opset)
        rep = None
        if parity:
            progress(f"parity {name}.onnx vs PyTorch (batch 1, 7; seeds 0-2)")
            rep = check_artifact(model, name, path)
        results.append(Artifact(name, path, path.stat().st_size, rep))
    return sorted(results, key=lambda a: ARTIFACTS.index(a.name))
