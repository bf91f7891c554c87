"""The torch-free deploy path: `import edge`, the onnxruntime backend, the Estimator and hipart-run import no torch.

The parent exports the tiny model's hipart.onnx (with torch); each child process blocks torch with a meta-path
finder before importing edge, so any torch import on the path fails loudly instead of passing silently.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edge.backends import create_backend
from edge.estimator import Estimator
from edge.sources import sample_path
from export.manifest import Manifest

ATOL = 1e-4  # fp32 onnxruntime vs torch on CPU

BLOCK_TORCH = textwrap.dedent(
    """
    import importlib.abc
    import sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r} (torch is blocked in this test)", name=name)
            return None

    sys.meta_path.insert(0, NoTorch())
    """
)


def _child(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with torch blocked; argv[1:] = args."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=300, env=env, cwd=cwd,
    )  # fmt: skip


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory) -> tuple[Path, str]:
    """The tiny model's hipart.onnx with a manifest (what `hipart-export` writes), and its model hash."""
    pytest.importorskip("onnxruntime")
    art = pytest.importorskip("export.artifacts", reason="export/ or its deps are not installed")
    from hipart.checkpoint import model_hash

    out = tmp_path_factory.mktemp("exported")
    h = model_hash(tiny_model)
    onnx_path = art.export_artifact(tiny_model, "hipart", out, h)
    man = Manifest(out, model_hash=h, model_source="tiny test model")
    man.add_file(onnx_path, artifact="hipart", kind="onnx", precision="fp32", model_hash=h)
    man.write()
    return out, h


@pytest.fixture(scope="module")
def exported_step(tiny_model, tmp_path_factory) -> tuple[Path, str]:
    """The tiny model's decode_step + detokenize + lift with a manifest: the onnxruntime backend's "step" mode."""
    pytest.importorskip("onnxruntime")
    art = pytest.importorskip("export.artifacts", reason="export/ or its deps are not installed")
    from hipart.checkpoint import model_hash

    out = tmp_path_factory.mktemp("exported_step")
    h = model_hash(tiny_model)
    man = Manifest(out, model_hash=h, model_source="tiny test model")
    for name in ("decode_step", "detokenize", "lift"):
        man.add_file(art.export_artifact(tiny_model, name, out, h), artifact=name, kind="onnx", precision="fp32",
                     model_hash=h)  # fmt: skip
    man.write()
    return out, h


def _walk(persons: int = 2) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Two frames of the bundled sample walk as two persons of one frame: kpts [2,17,2] px, conf [2,17], w, h."""
    d = np.load(sample_path())
    return d["keypoints"][:persons], d["conf"][:persons], int(d["width"]), int(d["height"])


@pytest.mark.parametrize("mode", ["hipart", "step"])
def test_estimator_on_onnxruntime_imports_no_torch(mode, tiny_model, tmp_path, request):
    folder, h = request.getfixturevalue("exported" if mode == "hipart" else "exported_step")
    out = tmp_path / "child.npz"
    r = _child(
        """
        import sys
        import numpy as np

        import edge
        from edge.sources import sample_path
        from export.manifest import ExpectedModel

        folder, mhash, out, mode = sys.argv[1:5]
        backend = edge.create_backend("onnxruntime", artifacts=folder, device="cpu", threads=1,
                                      model_hash=mhash, expected=ExpectedModel(mhash, "the tiny model"))
        assert backend.mode == mode, backend.mode
        d = np.load(sample_path())
        with edge.Estimator(backend) as est:
            res = est.from_keypoints(d["keypoints"][:2], d["conf"][:2], int(d["width"]), int(d["height"]))
        assert res.pose3d.shape == (2, 17, 3) and res.dense.shape == (2, 48, 2) and res.fine.shape == (2, 96, 2)
        assert res.q_s.shape == (2, 16) and res.q_d.shape == (2, 48) and res.status == "ok"
        assert backend.artifact_hash == mhash and backend.info()["manifest"].endswith("manifest.json")
        np.savez(out, pose3d=res.pose3d, dense=res.dense, fine=res.fine, tokens=res.result.tokens)
        leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        assert not leaked, leaked
        print("ok, no torch")
        """,
        str(folder), h, str(out), mode,
    )  # fmt: skip
    assert r.returncode == 0 and "ok, no torch" in r.stdout, r.stdout + r.stderr
    # the same keypoints through the torch backend in this process: the torch-free path gives the same answer
    child = np.load(out)
    kpts, conf, w, hgt = _walk()
    ref = Estimator(create_backend("torch", tiny_model, device="cpu")).from_keypoints(kpts, conf, w, hgt)
    np.testing.assert_array_equal(child["tokens"], ref.result.tokens)
    np.testing.assert_allclose(child["pose3d"], ref.pose3d, atol=ATOL)
    np.testing.assert_allclose(child["dense"], ref.dense, atol=1e-2)  # pixels
    np.testing.assert_allclose(child["fine"], ref.fine, atol=1e-2)


def test_hipart_run_auto_picks_onnxruntime_without_torch(exported, tmp_path):
    """hipart-run with the default backend (auto), no --checkpoint: artifacts checked against the bundled model's
    sidecar hash (here pointed at a sidecar naming the tiny model), no checkpoint loaded, no torch imported."""
    folder, h = exported
    sidecar = tmp_path / "hipart_default.json"
    sidecar.write_text(json.dumps({"checkpoint": "hipart_default.pt", "model_hash": h}))
    poses = tmp_path / "poses.jsonl"
    r = _child(
        """
        import sys
        from pathlib import Path

        import edge.weights
        from edge import cli_run

        folder, sidecar, poses = sys.argv[1:4]
        edge.weights.BUNDLED_SIDECAR = Path(sidecar)  # as if the bundled model were the tiny one
        rc = cli_run.main(["--artifacts", folder, "--source", "sample", "--max-frames", "3", "--poses", poses,
                           "--threads", "1", "--quiet"])
        assert rc == 0, rc
        leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        assert not leaked, leaked
        print("ok, no torch")
        """,
        str(folder), str(sidecar), str(poses), cwd=tmp_path,  # no ./exported here
    )  # fmt: skip
    assert r.returncode == 0 and "ok, no torch" in r.stdout, r.stdout + r.stderr
    assert "auto picked 'onnxruntime'" in r.stderr and f"[{h}]" in r.stderr
    recs = [json.loads(line) for line in poses.read_text().splitlines()]
    assert [rec["frame"] for rec in recs] == [0, 1, 2]
    assert all(len(rec["persons"][0]["pose_3d"]) == 17 for rec in recs)
    # the same run against the real bundled model's hash refuses the tiny export, naming both hashes
    r = _child(
        """
        import sys
        from edge import cli_run

        rc = cli_run.main(["--backend", "onnxruntime", "--artifacts", sys.argv[1], "--source", "sample",
                           "--max-frames", "1", "--quiet"])
        assert "torch" not in sys.modules
        sys.exit(rc)
        """,
        str(folder), cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 2 and f"was made for model {h}" in r.stderr and "the bundled model is" in r.stderr, r.stderr


def test_bundled_reference_reads_the_sidecar_not_the_checkpoint():
    from edge.backends.registry import expected_model
    from edge.weights import BUNDLED_SIDECAR, bundled_reference, load_model

    ref = bundled_reference()
    if ref is None:
        pytest.skip("this build bundles no model")
    assert ref.model is None and ref.trained and ref.model_hash == json.loads(BUNDLED_SIDECAR.read_text())["model_hash"]
    exp = expected_model(ref)
    assert exp is not None and exp.label == "the bundled model" and exp.model_hash == ref.model_hash
    assert load_model().model_hash == ref.model_hash  # the sidecar names the checkpoint it sits beside


def test_gpu_probe_without_torch():
    r = _child(
        """
        import sys
        from edge.backends.cuda_probe import cuda_available, gpu_identity
        from edge.backends.registry import availability

        gpu, cc = gpu_identity()
        assert (gpu is None) == (cc is None) and cuda_available() == (gpu is not None)
        ok, why = availability("triton")
        assert not ok and ("`torch` package is not installed" in why or "`triton` package" in why), why
        ok, why = availability("torch")
        assert not ok and why == "torch backend: the `torch` package is not installed", why
        assert "torch" not in sys.modules
        print("ok", gpu, cc)
        """
    )
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stdout + r.stderr
