"""The hipart-export chain as a library: ONNX -> (FP16, INT8 calibration -> Q/DQ -> drift) -> preflight -> engines."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from calib import drift as drift_mod
from calib import onnx_metadata as md
from calib.bundled import bundled_calibration_path, load_bundled
from calib.calibration_set import DEFAULT_SIZE, CalibrationDataError, load_calibration, save_calibration
from calib.fp16 import convert_file
from calib.quantize import METHODS, quantize_modelopt, quantize_qdq
from calib.synthetic_poses import TRAIN_SUBJECTS, VAL_SUBJECTS, synthetic_poses
from export.artifact_feeds import feeds_for
from export.artifacts import ARTIFACTS, Artifact, export_all
from export.engine_cache import EngineCache
from export.manifest import Manifest, array_hash, file_sha256
from export.onnx_export import DEFAULT_OPSET
from export.trt_builder import (
    BuildSettings,
    TensorRTUnavailable,
    build_engine,
    engine_key,
    import_tensorrt,
)
from export.trt_preflight import preflight
from hipart.atomic_write import ensure_writable_dir
from hipart.checkpoint import bundled_checkpoint, load_checkpoint, model_hash, random_model
from hipart.models.hipart import HiPART

# Exit codes scripts can rely on.
EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_PARITY, EXIT_PREFLIGHT, EXIT_DRIFT = 0, 1, 2, 3, 4, 5


class BadInput(ValueError):
    """A user-facing input problem (checkpoint, output dir, calibration data, options)."""


@dataclass
class Options:
    """Everything hipart-export can be asked to do (CLI flags map 1:1)."""

    out: Path = Path("exported")
    checkpoint: Path | None = None
    random_weights: str | None = None  # paper | edge | tiny: untrained model, for tests and plumbing checks
    seed: int = 0
    artifacts: tuple[str, ...] = ARTIFACTS
    onnx_only: bool = False
    fp16: bool = False
    int8: bool = False
    calib_size: int = DEFAULT_SIZE
    eval_size: int = 2048  # val poses for the drift report with --dataset (0: all; the decode_step feeds of every
    # val pose hold 16 steps of KV cache: the whole 17,948-pose val split needs > 24 GB)
    calib_method: str = "minmax"
    calib_data: Path | None = None
    dataset: Path | None = None  # a `hipart-data build` directory: calibrate on train, drift on val
    eval_data: Path | None = None
    synthetic: bool = False
    quantizer: str = "ort"
    batch: tuple[int, int, int] = (1, 8, 64)
    workspace_mib: int = 1024
    check_trt: bool = False
    trt_version: str | None = None
    parity: bool = True
    max_mpjpe_mm: float = 1.0
    min_agreement: float = 0.98
    max_output_err: float = drift_mod.DEFAULT_MAX_OUTPUT_ERR
    fallback_trials: int = 24


@dataclass
class Row:
    """One line of the final summary table."""

    file: str
    precision: str
    size_bytes: int
    parity: str = "-"
    drift: str = "-"
    status: str = "ok"


@dataclass
class Result:
    """What the chain produced and the exit code it implies."""

    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    exit_code: int = EXIT_OK

    def fail(self, code: int) -> None:
        """Record a failure; the first failure's code wins."""
        if self.exit_code == EXIT_OK:
            self.exit_code = code


def load_model(opts: Options) -> tuple[HiPART, str]:
    """The model to export (--random-weights, else --checkpoint, else the bundled one) and where it came from."""
    if opts.random_weights is not None:
        return random_model(opts.random_weights, opts.seed)
    path, what = opts.checkpoint, "checkpoint"
    if path is None:
        path, what = bundled_checkpoint(), "bundled checkpoint"
    if path is None:
        raise BadInput(
            "no model: pass --checkpoint PATH (a hipart checkpoint) or --random-weights paper|edge|tiny "
            "(this build bundles no trained model)"
        )
    from hipart.checkpoint import CheckpointError

    try:
        model, meta = load_checkpoint(path)
    except CheckpointError as e:
        raise BadInput(str(e)) from None
    return model, f"{what} {path} (data version {meta.get('data_version')})"


def _pose_sets(opts: Options) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, str]:
    """(calibration x_s, eval x_s, eval pose3d, description): --dataset, --calib-data, --synthetic-calib or bundled."""
    if opts.dataset is not None:
        from calib.calibration_set import greedy_k_center
        from calib.dataset_poses import split_poses

        train_x, _ = split_poses(opts.dataset, "train")  # the train split is subject-disjoint from val/test
        if len(train_x) < opts.calib_size:
            raise CalibrationDataError(
                f"calibration data too small: {len(train_x)} training poses < requested {opts.calib_size}"
            )
        val_x, val_p3d = split_poses(opts.dataset, "val")
        if opts.eval_size and len(val_x) > opts.eval_size:  # evenly spread over the val clips; bounded memory
            keep = np.linspace(0, len(val_x) - 1, opts.eval_size).astype(int)
            val_x, val_p3d = val_x[keep], val_p3d[keep]
        calib = train_x[greedy_k_center(train_x, opts.calib_size)]
        return calib, val_x, val_p3d, f"dataset {opts.dataset} (k-center over train, drift on {len(val_x)} val poses)"
    if opts.calib_data is not None:
        calib = load_calibration(opts.calib_data, ["x_s"], min_size=opts.calib_size)["x_s"][: opts.calib_size]
        ev = gt = None
        if opts.eval_data is not None:
            with np.load(opts.eval_data) as z:
                if "x_s" not in z.files:
                    raise CalibrationDataError(f"{opts.eval_data} lacks x_s")
                ev, gt = z["x_s"], (z["pose3d"] if "pose3d" in z.files else None)
        return calib, ev, gt, f"calibration {opts.calib_data}"
    if opts.synthetic:
        from calib.calibration_set import select_training

        ps = synthetic_poses(max(2 * opts.calib_size, 256) + 256, seed=opts.seed)
        idx = select_training(ps.x_s, ps.subjects, TRAIN_SUBJECTS, opts.calib_size)
        val = np.isin(ps.subjects, VAL_SUBJECTS)
        return ps.x_s[idx], ps.x_s[val][:256], ps.pose3d[val][:256], "SYNTHETIC poses (calib.synthetic_poses)"
    if bundled_calibration_path() is not None:
        b = load_bundled()
        if len(b.x_s) < opts.calib_size:
            raise CalibrationDataError(
                f"calibration data too small: the bundled set has {len(b.x_s)} training poses < requested "
                f"{opts.calib_size}; pass --dataset DIR or --calib-data NPZ for more"
            )
        # k-center order: the first calib_size poses are themselves a k-center selection
        return b.x_s[: opts.calib_size], b.eval_x_s, b.eval_pose3d, b.describe()
    raise CalibrationDataError(
        "calibration data absent: pass --dataset DIR (built by hipart-data), --calib-data NPZ (x_s from training "
        "subjects, see calib.calibration_set) "
        "or --synthetic-calib for a plumbing run on generated poses (this build bundles no calibration set)"
    )


def _drift_text(d: drift_mod.Drift, opts: Options | None = None) -> str:
    """Drift cell of the summary table; with `opts`, each measure next to its target."""
    parts = []
    if d.token_agreement is not None:
        parts.append(f"tok {100 * d.token_agreement:.2f}%" + (f" (>= {100 * opts.min_agreement:g}%)" if opts else ""))
    if d.mpjpe_vs_fp32_mm is not None:
        parts.append(f"3D {d.mpjpe_vs_fp32_mm:.2f}mm" + (f" (<= {opts.max_mpjpe_mm:g})" if opts else ""))
    elif d.mean_abs_err:
        parts.append(f"mean|err| {d.worst_mean_abs_err:.2e}" + (f" (<= {opts.max_output_err:g})" if opts else ""))
    return ", ".join(parts) or "-"


def run(
    opts: Options,
    log: Callable[[str], None] = lambda m: print(f"[hipart-export] {m}", file=sys.stderr),
    model: tuple[HiPART, str] | None = None,
) -> Result:
    """Run the chain (on `model` = (module, description) if given) and list every file in <out>/manifest.json."""
    if opts.calib_method not in METHODS:
        raise BadInput(f"--calib-method must be one of {sorted(METHODS)}")
    unknown = set(opts.artifacts) - set(ARTIFACTS)
    if unknown:
        raise BadInput(f"unknown artifacts {sorted(unknown)}; choose from {list(ARTIFACTS)}")
    model, source = model or load_model(opts)
    out = ensure_writable_dir(opts.out)
    mhash = model_hash(model)
    log(f"model: {source}; hash {mhash}")
    res = Result()
    # Calibration data is checked before any export work so a bad input fails fast and leaves nothing.
    drift_data = opts.synthetic or opts.dataset is not None or (opts.calib_data is None and bundled_calibration_path())
    want_drift = opts.fp16 and bool(drift_data)
    pose_sets = _pose_sets(opts) if opts.int8 or want_drift else None
    man = Manifest(out, model_hash=mhash, model_source=source)
    written: dict[tuple[str, str], Path] = {}
    try:
        _chain(opts, model, mhash, out, pose_sets, written, man, res, log)
    finally:  # whatever was written, also on an error, is listed: the manifest never lags the folder
        _record_onnx(man, written, res)
        if man.entries:
            man.write()
            log(f"manifest: {man.path}")
            res.notes.append(f"manifest: {man.summary()}")
    return res


def _chain(opts: Options, model: HiPART, mhash: str, out: Path, pose_sets, written: dict, man: Manifest, res: Result,
           log: Callable[[str], None]) -> None:  # fmt: skip
    """Export, FP16 / INT8 variants with drift, preflight and engines; fills `written` and `res`."""
    exported: list[Artifact] = export_all(model, out, mhash, opts.artifacts, parity=opts.parity, progress=log)
    for a in exported:
        ok = a.parity is None or a.parity.ok()
        par = "-" if a.parity is None else f"{a.parity.worst_rel:.1e} rel, tokens {'==' if ok else '!='}"
        res.rows.append(Row(a.path.name, "fp32", a.size_bytes, par, status="ok" if ok else "PARITY FAIL"))
        if not ok:
            a.path.unlink()
            res.fail(EXIT_PARITY)
        else:
            written[(a.name, "fp32")] = a.path
    if res.exit_code:
        return

    calib_hash = None
    if not opts.onnx_only and (opts.fp16 or opts.int8):
        calib_x, eval_x, eval_gt, data_desc = pose_sets if pose_sets else (None, None, None, "")
        if pose_sets:
            log(f"data: {data_desc}; {len(calib_x)} calibration poses, "
                f"{0 if eval_x is None else len(eval_x)} evaluation poses")  # fmt: skip
        if opts.int8:
            calib_hash = array_hash(np.ascontiguousarray(calib_x, np.float32))
            man.calibration = {"hash": calib_hash, "source": data_desc, "poses": len(calib_x),
                               "held_out_poses": 0 if eval_x is None else len(eval_x)}  # fmt: skip
            res.notes.append(f"int8 calibration: {len(calib_x)} poses of {data_desc} (hash {calib_hash}); drift on "
                             f"{0 if eval_x is None else len(eval_x)} held-out poses")  # fmt: skip
        for name in opts.artifacts:
            fp32 = written[(name, "fp32")]
            eval_feeds = feeds_for(model, name, eval_x) if eval_x is not None else None
            gt = eval_gt if name in ("hipart", "lift") else None
            if opts.fp16:
                log(f"fp16 mixed precision {name}")
                p = convert_file(fp32, out / f"{name}.fp16.onnx")
                written[(name, "fp16")] = p
                row = Row(p.name, "fp16-mixed", p.stat().st_size)
                if eval_feeds is not None:
                    d = drift_mod.report({"fp32": fp32, "fp16": p}, eval_feeds, gt)["fp16"]
                    row.drift = _drift_text(d)
                res.rows.append(row)
            if opts.int8:
                calib = feeds_for(model, name, calib_x)
                if isinstance(calib, dict):
                    save_calibration(out / f"calib_{name}.npz", calib, source=data_desc, method="greedy k-center")
                p = out / f"{name}.int8.onnx"
                log(f"int8 Q/DQ {name} ({opts.quantizer}, {opts.calib_method}, {len(calib_x)} poses)")
                if opts.quantizer == "modelopt":
                    quantize_modelopt(fp32, p, calib, opts.calib_method)
                else:
                    quantize_qdq(fp32, p, calib, opts.calib_method)
                row = Row(p.name, "int8-qdq", 0)
                if eval_feeds is not None:
                    fb = drift_mod.fallback(
                        fp32, p, p, eval_feeds, opts.max_mpjpe_mm, opts.min_agreement,
                        max_trials=opts.fallback_trials, max_output_err=opts.max_output_err, progress=log,
                    )  # fmt: skip
                    kept = f", {len(fb.kept_fp32)} layers fp32" if fb.kept_fp32 else ""
                    row.drift = _drift_text(fb.drift, opts) + kept
                    if not fb.met:
                        row.status = "DRIFT > target"
                        res.fail(EXIT_DRIFT)
                row.size_bytes = p.stat().st_size
                written[(name, "int8")] = p
                res.rows.append(row)

    if opts.check_trt or not opts.onnx_only:
        _preflight_and_engines(opts, written, mhash, res, log, man, calib_hash)


def _onnx_facts(path: Path, mhash: str) -> tuple[str, int]:
    """(model hash, opset) from the file's own hipart.* metadata (the export's values if it has none)."""
    try:
        meta = md.read(onnx.load(str(path), load_external_data=False))
    except KeyError:  # e.g. a ModelOpt Q/DQ file: no hipart metadata carried over
        return mhash, DEFAULT_OPSET
    return meta.model_hash, int(meta.opset)


def _record_onnx(man: Manifest, written: dict[tuple[str, str], Path], res: Result) -> None:
    """Add every written ONNX file to the manifest (hash and opset read back from the file itself)."""
    status = {r.file: r.status for r in res.rows}
    for (name, prec), path in written.items():
        if not path.is_file():
            continue
        h, opset = _onnx_facts(path, man.model_hash or "unknown")
        calib = (man.calibration or {}).get("hash") if prec == "int8" else None
        man.add_file(path, artifact=name, kind="onnx", precision=prec, model_hash=h, opset=opset,
                     calibration_hash=calib, status=status.get(path.name, "ok"))  # fmt: skip


def _preflight_and_engines(
    opts: Options, written, mhash: str, res: Result, log, man: Manifest, calib_hash: str | None = None
) -> None:
    try:
        trt = import_tensorrt()
        trt_version = trt.__version__
    except TensorRTUnavailable as e:
        trt, trt_version = None, opts.trt_version or "10"
        missing = str(e).split(":")[0]
    target = opts.trt_version or trt_version
    for path in written.values():
        rep = preflight(onnx.load(str(path)), target)
        if opts.check_trt or not rep.ok:
            log(rep.format().replace("TensorRT preflight", f"TensorRT preflight {path.name}"))
        if not rep.ok:
            res.fail(EXIT_PREFLIGHT)
            for row in res.rows:
                if row.file == path.name:
                    row.status = "PREFLIGHT FAIL"
    if opts.onnx_only or res.exit_code == EXIT_PREFLIGHT:
        return
    precisions = [p for p, flag in (("fp16", opts.fp16), ("int8", opts.int8)) if flag] or ["fp32"]
    if trt is None:
        for prec in precisions:
            files = [str(p) for (n, q), p in written.items() if q == (prec if prec != "fp16" else "fp16")]
            files = files or [str(p) for (n, q), p in written.items() if q == "fp32"]
            res.notes.append(f"engine step skipped: {missing}; {prec} ONNX written to {', '.join(files)}")
        return
    cache = EngineCache(opts.out / "engines")
    major = int(trt_version.split(".")[0])
    for prec in precisions:
        for name in opts.artifacts:
            src = written.get((name, prec)) if (prec != "fp16" or major >= 11) else written[(name, "fp32")]
            src = src or written[(name, "fp32")]
            key = engine_key(mhash, prec, trt_version)
            src_sha = file_sha256(src)
            path = cache.lookup(name, key)
            if path is not None and _sidecar(path).get("onnx_sha256") == src_sha:
                log(f"engine cache hit: {name} {prec}")
            else:
                if path is not None:
                    log(f"engine for {name} {prec} is stale ({src.name} changed since it was built): rebuilding")
                log(f"building TensorRT {trt_version} {prec} engine for {name} from {src.name}")
                settings = BuildSettings(prec, opts.batch, opts.workspace_mib, opts.out / "engines" / "timing.cache")
                engine = build_engine(src, settings, trt)
                extra = {"onnx": src.name, "onnx_sha256": src_sha, "batch": list(opts.batch)}
                path = cache.store(name, key, engine, extra)
                res.rows.append(Row(path.name, f"engine-{prec}", path.stat().st_size))
            _, opset = _onnx_facts(src, mhash)
            man.add_file(path, artifact=name, kind="engine", precision=prec, model_hash=mhash, opset=opset,
                         calibration_hash=calib_hash if prec == "int8" else None, source=src.name,
                         engine={"gpu_name": key.gpu_name, "compute_capability": key.compute_capability,
                                 "trt_version": key.trt_version})  # fmt: skip


def _sidecar(engine_path: Path) -> dict:
    """An engine's JSON sidecar (empty when unreadable)."""
    try:
        return json.loads(engine_path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}


def format_table(res: Result) -> str:
    """The final summary table."""
    head = f"{'artifact':34s} {'precision':11s} {'size':>10s}  {'parity (max rel)':24s} {'drift vs fp32':34s} status"
    lines = [head, "-" * len(head)]
    for r in res.rows:
        size = f"{r.size_bytes / 1e6:.2f} MB"
        lines.append(f"{r.file:34s} {r.precision:11s} {size:>10s}  {r.parity:24s} {r.drift:34s} {r.status}")
    return "\n".join(lines + res.notes)
