"""Ahead-of-time build: committed cubins are current, compile here for sm_87/89/90, C library builds and loads."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kernels import aot
from kernels.triton_support import HAS_TRITON, TRITON_IMPORT_ERROR

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = json.loads(aot.MANIFEST.read_text())
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason=f"triton not installed ({TRITON_IMPORT_ERROR})")


def no_interpret_env() -> dict:
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    return env


def test_manifest_covers_every_variant_and_arch():
    assert [v["name"] for v in MANIFEST["variants"]] == [v.name for v in aot.VARIANTS]
    for v, spec in zip(MANIFEST["variants"], aot.VARIANTS, strict=True):
        assert sorted(cb["arch"] for cb in v["cubins"]) == [87, 89, 90], v["name"]
        # The cubins were compiled with the specialisation the C launchers are generated for.
        assert v["constexprs"] == spec.constexprs and v["num_warps"] == spec.num_warps, v["name"]
        assert v["args"] == [list(a) for a in spec.args] and v["grid"] == list(spec.grid), v["name"]


def test_committed_cubins_are_built_from_the_current_kernels():
    stale = [
        v["name"] for v in MANIFEST["variants"] if aot.kernel_digest(v["module"], v["kernel"]) != v["kernel_sha256"]
    ]
    assert not stale, f"kernel source changed since the cubins were built ({stale}): run `python kernels/aot.py build`"


def test_cubins_match_manifest_and_are_small():
    total = 0
    for v in MANIFEST["variants"]:
        for cb in v["cubins"]:
            data = (aot.AOT_DIR / cb["file"]).read_bytes()
            total += len(data)
            assert hashlib.sha256(data).hexdigest() == cb["cubin_sha256"]
            res = aot.cubin_resources(data, cb["kernel_symbol"])
            assert res["registers"] == cb["registers"] and 0 < res["registers"] <= 255
            assert cb["threads_per_block"] == 32 * v["num_warps"]
            assert cb["dynamic_shared_bytes"] + res["static_shared_bytes"] <= 99 * 1024  # fits sm_89's limit
    assert total < 2 * 1024 * 1024, f"cubins total {total} bytes; build them in CMake instead of committing"


@needs_triton
def test_compiles_on_this_cpu_only_machine(tmp_path):
    """triton.compile(ASTSource, GPUTarget('cuda', 87, 32)) without a GPU; same resources as the manifest."""
    name = "decode_attention_fp32"
    cmd = [
        sys.executable,
        str(ROOT / "kernels/aot.py"),
        "build",
        "--arch",
        "87",
        "--only",
        name,
        "--out",
        str(tmp_path),
    ]
    subprocess.run(cmd, check=True, cwd=ROOT, env=no_interpret_env(), capture_output=True, timeout=300)
    fresh = json.loads((tmp_path / "manifest.json").read_text())["variants"][0]["cubins"][0]
    committed = next(v for v in MANIFEST["variants"] if v["name"] == name)["cubins"][0]
    assert fresh["gpu_name"] == "sm_87"
    for key in ("registers", "dynamic_shared_bytes", "static_shared_bytes", "spill_store_bytes"):
        assert fresh[key] == committed[key], key


def test_generating_the_c_launchers_needs_no_triton(tmp_path):
    code = (
        "import sys, runpy; sys.modules['triton'] = None; sys.modules['torch'] = None; "
        f"sys.argv = ['aot.py', 'gen-c', '--out', {str(tmp_path)!r}]; "
        f"runpy.run_path({str(ROOT / 'kernels/aot.py')!r}, run_name='__main__')"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, timeout=120)
    header = (tmp_path / "hipart_kernels_generated.h").read_text()
    for v in aot.VARIANTS:
        assert f"int hipart_{v.name}(void *stream" in header


@pytest.fixture(scope="module")
def built_library(tmp_path_factory):
    if not shutil.which("cmake") or not shutil.which("cc"):
        pytest.skip("cmake or a C compiler is missing")
    build = tmp_path_factory.mktemp("cmake-build")
    cfg = subprocess.run(
        [
            "cmake",
            "-S",
            str(ROOT),
            "-B",
            str(build),
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DPython3_EXECUTABLE={sys.executable}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if cfg.returncode and "CUDAToolkit" in cfg.stderr + cfg.stdout:
        pytest.skip("the CUDA toolkit (headers) is not installed")
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    out = subprocess.run(["cmake", "--build", str(build), "-j2"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "warning" not in out.stdout.lower(), out.stdout
    return build


def test_cmake_builds_and_the_smoke_program_runs(built_library):
    run = subprocess.run(
        [str(built_library / "hipart_kernels_smoke"), "--allow-no-driver"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(aot.VARIANTS)} kernels, triton {MANIFEST['triton_version']}" in run.stdout
    for v in aot.VARIANTS:
        assert v.name in run.stdout


def test_ctypes_loader_reads_the_library(built_library):
    from kernels.library import KernelLibrary, LibraryError

    lib = KernelLibrary(built_library / "libhipart_kernels.so")
    assert lib.triton_version == MANIFEST["triton_version"]
    embedded = lib.kernels()
    for v in MANIFEST["variants"]:
        for cb in v["cubins"]:
            assert embedded[v["name"]][cb["arch"]] == {
                "registers": cb["registers"],
                "shared_bytes": cb["dynamic_shared_bytes"],
            }
    if not torch.cuda.is_available():
        with pytest.raises(LibraryError, match="no CUDA driver"):
            lib.init()
        with pytest.raises(LibraryError):  # a launch says why instead of crashing
            lib.launch("codebook_nn_fp32", None, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1)


def test_aot_variants_use_the_launchers_tile_sizes():
    """A cubin must be the kernel the Triton launcher runs: same tiles, same warps."""
    from kernels import codebook_nn as cb
    from kernels import decode_attention as da
    from kernels import head_argmax as ha

    dtypes = {"fp32": torch.float32, "fp16": torch.float16}
    for v in aot.VARIANTS:
        kind, dt = v.name.rsplit("_", 1)
        c = v.constexprs
        if kind == "codebook_nn":
            assert (c["BLOCK_K"], v.num_warps) == cb.LAUNCH_CONFIG[dtypes[dt]]
            assert (c["BLOCK_N"], c["BLOCK_D"]) == (cb.BLOCK_N, cb.BLOCK_D)
        elif kind == "head_argmax":
            assert (c["BLOCK_K"], v.num_warps) == ha.LAUNCH_CONFIG[dtypes[dt]]
            assert (c["BLOCK_B"], c["BLOCK_D"], c["BLOCK_E"]) == (ha.BLOCK_B, ha.BLOCK_D, ha.BLOCK_E)
        else:
            assert kind == "decode_attention"
            assert (c["BLOCK_C"], v.num_warps) == (da.BLOCK_C, da.NUM_WARPS)
            assert (c["BLOCK_H"], c["BLOCK_HD"], c["BLOCK_T"]) == (8, 16, 32)  # HiARM: 8 heads x 16, 17 slots


GPU_ONLY_SPECIALISATIONS = """
import dataclasses, sys
sys.path.insert(0, ".")
from kernels import aot
V = {v.name: v for v in aot.VARIANTS}
cb, da, ha = V["codebook_nn_fp16"], V["decode_attention_fp32"], V["head_argmax_fp32"]
cases = [
    (dataclasses.replace(cb, args=tuple((n, t.replace("fp16", "bf16")) for n, t in cb.args)), 90),  # bf16 on GPU
    (dataclasses.replace(da, constexprs={**da.constexprs, "BLOCK_H": 4, "BLOCK_HD": 8, "HAS_PROJ": False,
                                          "HAS_BIAS": False}), 87),  # the tiny model, no projection
    (dataclasses.replace(ha, constexprs={**ha.constexprs, "HAS_BIAS": False}), 89),
]
for v, arch in cases:
    _, meta = aot.compile_variant(v, arch)
    assert meta["spill_store_bytes"] == 0, (v.name, arch, meta)
print("ok")
"""


@needs_triton
def test_gpu_only_specialisations_compile():
    """What the interpreter never compiles: bf16 tensor-core dots, small/no-projection attention, no bias."""
    out = subprocess.run(
        [sys.executable, "-c", GPU_ONLY_SPECIALISATIONS],
        cwd=ROOT,
        env=no_interpret_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout + out.stderr


@pytest.mark.gpu
def test_library_launchers_match_the_references_on_gpu(built_library, monkeypatch):
    """The AOT path end to end on a real device: cubin load, argument marshalling, results."""
    from kernels import library
    from kernels.codebook_nn import reference_codebook_nn
    from kernels.decode_attention import reference_decode_attention
    from kernels.head_argmax import reference_head_argmax

    monkeypatch.setattr(library, "_loaded", library.KernelLibrary(built_library / "libhipart_kernels.so"))
    dev = "cuda"
    for dtype in (torch.float32, torch.float16):
        z = torch.randn(37, 128, device=dev).to(dtype)
        c = torch.randint(-4, 5, (2048, 128), device=dev).to(dtype)  # integers: exact ties, exact distances
        idx, codes = library.codebook_nn(z.round(), c)
        assert torch.equal(idx, reference_codebook_nn(z.round(), c)[0]) and torch.equal(codes, c[idx])
        h = torch.randint(-3, 4, (5, 128), device=dev).to(dtype)
        w, b = torch.randint(-3, 4, (3072, 128), device=dev).to(dtype), torch.zeros(3072, device=dev, dtype=dtype)
        idx, rows = library.head_argmax(h, w, b, c.repeat(2, 1)[:3072])
        assert torch.equal(idx, reference_head_argmax(h, w, b, w)[0])
    qkv = torch.randn(3, 384, device=dev)
    ck, cv = torch.randn(3, 8, 17, 16, device=dev), torch.randn(3, 8, 17, 16, device=dev)
    w, b, res = torch.randn(128, 128, device=dev) / 11.3, torch.randn(128, device=dev), torch.randn(3, 128, device=dev)
    ref = reference_decode_attention(qkv, ck.clone(), cv.clone(), 9, w, b, res)
    torch.testing.assert_close(library.decode_attention(qkv, ck, cv, 9, w, b, res), ref, rtol=1e-4, atol=1e-4)


FAKE_DRIVER_SCRIPT = """
import json, os, sys
from kernels.library import KernelLibrary, LibraryError
lib = KernelLibrary(sys.argv[1])
out = {}
for name, (types, values) in json.loads(sys.argv[2]).items():
    os.environ["HIPART_FAKE_PARAMS"] = types
    try:
        lib.launch(name, None, *values)
        out[name] = "ok"
    except LibraryError as exc:
        out[name] = str(exc)
print(json.dumps(out))
"""
INT_ARGS = {"N": 37, "K": 2048, "B": 5, "E": 96, "pos": 9, "H": 8, "HD": 16}  # everything else: 128
GRID_X = {"codebook_nn": 3, "head_argmax": 1, "decode_attention": 3}  # ceil(37/16), ceil(5/16), batch 3


def launch_plan():
    """Per variant: the fake's parameter type string and the values passed (distinct, aligned pointers)."""
    plan = {}
    for v in MANIFEST["variants"]:
        values, types = [], ""
        for i, (name, ty) in enumerate(v["args"]):
            if ty.startswith("*"):
                values.append(4096 * (i + 1))
                types += "p"
            elif ty == "i32":
                values.append(INT_ARGS.get(name, 128))
                types += "i"
            else:
                values.append(0.25)
                types += "f"
        batch = [3] if v["name"].startswith("decode_attention") else []
        plan[v["name"]] = (types + "pp", batch + values)  # + Triton's global and profile scratch pointers
    return plan


@pytest.fixture(scope="module")
def fake_libcuda(tmp_path_factory):
    if not shutil.which("cc"):
        pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("fake-driver")
    include = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"
    if not (include / "cuda.h").exists():
        pytest.skip("cuda.h not found")
    src = Path(__file__).with_name("fake_libcuda.c")
    cmd = ["cc", "-shared", "-fPIC", "-O1", f"-I{include}", str(src), "-o", str(out / "libcuda.so.1")]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return out


@pytest.mark.parametrize("cc,expect", [(87, 87), (89, 89), (90, 90), (88, 87), (86, None), (100, None)])
def test_c_launchers_pick_the_cubin_and_pass_every_argument(cc, expect, built_library, fake_libcuda, tmp_path):
    """libhipart_kernels against a fake driver: cubin choice per compute capability, grid, block, shared memory
    and the exact parameter block each generated launcher hands to cuLaunchKernel."""
    plan = launch_plan()
    log = tmp_path / "launches.log"
    env = {
        **no_interpret_env(),
        "LD_LIBRARY_PATH": str(fake_libcuda),
        "HIPART_FAKE_CC": str(cc),
        "HIPART_FAKE_LOG": str(log),
    }
    run = subprocess.run(
        [sys.executable, "-c", FAKE_DRIVER_SCRIPT, str(built_library / "libhipart_kernels.so"), json.dumps(plan)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads(run.stdout.strip().splitlines()[-1])
    if expect is None:
        assert all("no cubin for this GPU" in r and f"sm_{cc}" in r for r in results.values()), results
        assert not log.exists()
        return
    assert set(results.values()) == {"ok"}, results
    lines = log.read_text().splitlines()
    assert len(lines) == len(plan)
    for line, v in zip(lines, MANIFEST["variants"], strict=True):
        cubin = next(cb for cb in v["cubins"] if cb["arch"] == expect)
        types, values = plan[v["name"]]
        values = values[1:] if v["name"].startswith("decode_attention") else values
        params = " ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in values) + " 0 0"
        kind = v["name"].rsplit("_", 1)[0]
        assert line.strip() == (
            f"image={cubin['cubin_bytes']} grid={GRID_X[kind]},1,1 block={32 * v['num_warps']},1,1 "
            f"shared={cubin['dynamic_shared_bytes']} params={params}"
        ), v["name"]


def test_c_launchers_reject_bad_arguments(built_library, fake_libcuda, tmp_path):
    plan = launch_plan()
    types, values = plan["codebook_nn_fp32"]
    bad_dim = {"codebook_nn_fp32": (types, values[:6] + [0] + values[7:])}  # D = 0
    misaligned = {"codebook_nn_fp32": (types, [values[0] + 4] + values[1:])}
    env = {**no_interpret_env(), "LD_LIBRARY_PATH": str(fake_libcuda), "HIPART_FAKE_LOG": str(tmp_path / "log")}
    for case, message in ((bad_dim, "bad arguments"), (misaligned, "misaligned pointer")):
        run = subprocess.run(
            [sys.executable, "-c", FAKE_DRIVER_SCRIPT, str(built_library / "libhipart_kernels.so"), json.dumps(case)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert message in json.loads(run.stdout.strip().splitlines()[-1])["codebook_nn_fp32"], run.stdout + run.stderr
    assert not (tmp_path / "log").exists()


BACKEND_PICK = """
import sys
sys.modules["triton"] = None  # as on a Jetson: no Triton wheel
import torch
from edge.backends import triton_backend as tb
path, where = tb.kernel_path()
torch.cuda.is_available = lambda: True  # what a Jetson reports; nothing is launched here
ok, why = tb.TritonBackend.availability()
print(path, ok, where if path else why)
"""


def test_triton_backend_falls_back_to_the_aot_library_without_triton(built_library, tmp_path):
    """No triton package: the backend runs the kernels from libhipart_kernels; with neither it says why."""
    lib = built_library / "libhipart_kernels.so"
    env = {**no_interpret_env(), "HIPART_KERNELS_LIB": str(lib)}
    out = subprocess.run([sys.executable, "-c", BACKEND_PICK], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == ["aot", "True"] and str(lib) in out.stdout
    env["HIPART_KERNELS_LIB"] = str(tmp_path / "missing.so")
    out = subprocess.run([sys.executable, "-c", BACKEND_PICK], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("None False") and "triton` package is not installed" in out.stdout
    assert "libhipart_kernels not found" in out.stdout
