"""Ahead-of-time build of the Triton kernels: cubins per GPU arch, a manifest, and generated C launchers.

Jetson has no Triton wheels, so the kernels ship as cubins inside libhipart_kernels (CMakeLists.txt):

    python kernels/aot.py build                       # needs triton, not a GPU: kernels/aot/
    python kernels/aot.py gen-c --out build/generated # stdlib only: C wrappers embedding the cubins
    cmake -S . -B build && cmake --build build        # runs gen-c itself, then builds libhipart_kernels.so

`build` compiles each variant with triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32)) and
records per arch the registers (read from the cubin's ELF, cross-checked with ptxas -v), spills, shared
memory and sizes. The C launchers are written here on the CUDA driver API (triton.tools.compile would need a
live driver). Each launcher passes the kernel's non-constexpr arguments plus Triton's two trailing scratch
pointers (global, profile; both null: the manifest asserts the kernels need none).

This module imports only the standard library at top level so CMake can run `gen-c` on a machine without
Triton or torch.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ARCHS = (87, 89, 90)  # Jetson Orin, RTX 40 (Ada), H100 (Hopper)
HERE = Path(__file__).resolve().parent
AOT_DIR = HERE / "aot"
MANIFEST = AOT_DIR / "manifest.json"

C_TYPES = {"i32": "int32_t", "fp32": "float"}  # pointers ('*...') are CUdeviceptr


@dataclass(frozen=True)
class Variant:
    """One specialisation of a Triton kernel compiled into the library as `hipart_<name>`."""

    name: str
    module: str  # kernels.<file>
    kernel: str  # the @triton.jit function's name
    args: tuple[tuple[str, str], ...]  # runtime arguments in kernel order: (name, triton type)
    constexprs: dict = field(default_factory=dict)
    num_warps: int = 4
    num_stages: int = 2
    grid: tuple[str, str, str] = ("1", "1", "1")  # C expressions over the argument names
    checks: tuple[str, ...] = ()  # C expressions that must hold, else HIPART_ERR_ARGS
    doc: str = ""


def _variants() -> list[Variant]:
    out = []
    # Tile sizes and warps must equal the Triton launchers' LAUNCH_CONFIG (tests/kernels/test_aot.py checks).
    BLOCK_ROWS = 16  # rows of z / h per program (codebook_nn.BLOCK_N, head_argmax.BLOCK_B)
    codebook_cfg = {"fp32": (64, 8), "fp16": (64, 4)}
    head_cfg = {"fp32": (32, 8), "fp16": (64, 4)}
    for dt in ("fp32", "fp16"):
        p = f"*{dt}"
        out.append(
            Variant(
                name=f"codebook_nn_{dt}",
                module="kernels.codebook_nn",
                kernel="codebook_nn_kernel",
                args=(
                    ("z", p),
                    ("codebook", p),
                    ("idx", "*i64"),
                    ("codes", p),
                    ("N", "i32"),
                    ("K", "i32"),
                    ("D", "i32"),
                    ("stride_zn", "i32"),
                    ("stride_ck", "i32"),
                    ("stride_on", "i32"),
                ),
                constexprs={"BLOCK_N": BLOCK_ROWS, "BLOCK_K": codebook_cfg[dt][0], "BLOCK_D": 32},
                num_warps=codebook_cfg[dt][1],
                grid=(f"(N + {BLOCK_ROWS - 1}) / {BLOCK_ROWS}", "1", "1"),
                checks=("N >= 0", "K > 0", "D > 0", "stride_zn >= D", "stride_ck >= D", "stride_on >= D"),
                doc="nearest codebook row: idx[N] (int64, -1 for non-finite rows) and codes[N, D]",
            )
        )
        out.append(
            Variant(
                name=f"head_argmax_{dt}",
                module="kernels.head_argmax",
                kernel="head_argmax_kernel",
                args=(
                    ("h", p),
                    ("weight", p),
                    ("bias", p),
                    ("table", p),
                    ("idx", "*i64"),
                    ("rows", p),
                    ("B", "i32"),
                    ("K", "i32"),
                    ("D", "i32"),
                    ("E", "i32"),
                    ("stride_hb", "i32"),
                    ("stride_wk", "i32"),
                    ("stride_tk", "i32"),
                    ("stride_ob", "i32"),
                ),
                constexprs={
                    "HAS_BIAS": True,
                    "BLOCK_B": BLOCK_ROWS,
                    "BLOCK_K": head_cfg[dt][0],
                    "BLOCK_D": 32,
                    "BLOCK_E": 32,
                },
                num_warps=head_cfg[dt][1],
                grid=(f"(B + {BLOCK_ROWS - 1}) / {BLOCK_ROWS}", "1", "1"),
                checks=(
                    "B >= 0",
                    "K > 0",
                    "D > 0",
                    "E > 0",
                    "stride_hb >= D",
                    "stride_wk >= D",
                    "stride_tk >= E",
                    "stride_ob >= E",
                ),
                doc="argmax_k(h W^T + bias), table[argmax]: idx[B] (int64, -1: non-finite row), rows[B, E]",
            )
        )
        out.append(
            Variant(
                name=f"decode_attention_{dt}",
                module="kernels.decode_attention",
                kernel="decode_attention_kernel",
                args=(
                    ("qkv", p),
                    ("k_cache", p),
                    ("v_cache", p),
                    ("proj_weight", p),
                    ("proj_bias", p),
                    ("residual", p),
                    ("out", p),
                    ("pos", "i32"),
                    ("H", "i32"),
                    ("HD", "i32"),
                    ("C_OUT", "i32"),
                    ("scale", "fp32"),
                    ("stride_qkv_b", "i32"),
                    ("stride_cb", "i32"),
                    ("stride_ch", "i32"),
                    ("stride_ct", "i32"),
                    ("stride_wc", "i32"),
                    ("stride_res_b", "i32"),
                    ("stride_out_b", "i32"),
                ),
                constexprs={
                    "HAS_PROJ": True,
                    "HAS_BIAS": True,
                    "HAS_RESIDUAL": True,
                    "BLOCK_H": 8,
                    "BLOCK_T": 32,
                    "BLOCK_HD": 16,
                    "BLOCK_C": 32,
                },
                grid=("batch", "1", "1"),
                checks=(
                    "batch >= 0",
                    "H > 0 && H <= 8",
                    "HD > 0 && HD <= 16",
                    "pos >= 0 && pos < 32",
                    "C_OUT > 0",
                ),
                doc="one cached attention step for all heads + out projection + residual; heads <= 8, "
                "head_dim <= 16, cache slots <= 32 (HiARM: 8 x 16, 17 slots)",
            )
        )
    return out


VARIANTS = _variants()


# -- cubin inspection (no driver needed) -----------------------------------------------------------------
def cubin_resources(cubin: bytes, kernel: str) -> dict:
    """Registers per thread and static shared memory of `kernel`, read from the cubin's ELF section headers.

    CUDA ELF keeps the register count in the top byte of sh_info of `.text.<kernel>`; static shared memory
    is the size of `.nv.shared.<kernel>` (Triton's shared memory is mostly dynamic: see the manifest).
    """
    if cubin[:4] != b"\x7fELF" or cubin[4] != 2:
        raise ValueError("not a 64-bit ELF cubin")
    (shoff,) = struct.unpack_from("<Q", cubin, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", cubin, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", cubin, shoff + i * shentsize) for i in range(shnum)]
    str_off = secs[shstrndx][4]

    def name(s):
        start = str_off + s[0]
        return cubin[start : cubin.index(b"\0", start)].decode()

    by_name = {name(s): s for s in secs}
    text = by_name.get(f".text.{kernel}")
    if text is None:
        raise ValueError(f"kernel {kernel!r} not in cubin")
    regs = text[7] >> 24  # sm_8x keeps the count here; sm_90 cubins leave it 0 and use .nv.info only
    symtab, info = by_name.get(".symtab"), by_name.get(".nv.info")
    if symtab is not None and info is not None:
        strtab = secs[symtab[6]][4]
        sym_index = None
        for i in range(symtab[5] // 24):
            (st_name,) = struct.unpack_from("<I", cubin, symtab[4] + 24 * i)
            start = strtab + st_name
            if cubin[start : cubin.index(b"\0", start)].decode() == kernel:
                sym_index = i
        pos, end = info[4], info[4] + info[5]
        while pos + 4 <= end:  # records: fmt u8, attr u8, then (fmt 4) u16 size + payload, else u16 value
            fmt, attr, size = struct.unpack_from("<BBH", cubin, pos)
            if fmt != 4:
                pos += 4
                continue
            if attr == 0x2F and size == 8:  # EIATTR_REGCOUNT: (symbol index, registers)
                sym, count = struct.unpack_from("<II", cubin, pos + 4)
                if sym == sym_index:
                    regs = count
            pos += 4 + size
    shared = by_name.get(f".nv.shared.{kernel}")
    return {"registers": regs, "static_shared_bytes": shared[5] if shared else 0, "text_bytes": text[5]}


def parse_ptxas_log(log: str) -> dict:
    out = {}
    for key, pat in (
        ("registers", r"Used (\d+) registers"),
        ("stack_frame_bytes", r"(\d+) bytes stack frame"),
        ("spill_store_bytes", r"(\d+) bytes spill stores"),
        ("spill_load_bytes", r"(\d+) bytes spill loads"),
        ("smem_bytes", r"(\d+) bytes smem"),
    ):
        m = re.search(pat, log)
        if m:
            out[key] = int(m.group(1))
    return out


def kernel_digest(module: str, kernel: str) -> str:
    """sha256 of the @triton.jit function's source: what a cubin was compiled from (launcher edits don't count)."""
    import importlib
    import inspect

    obj = getattr(importlib.import_module(module), kernel)
    return hashlib.sha256(inspect.getsource(getattr(obj, "fn", obj)).encode()).hexdigest()


# -- build (needs triton) --------------------------------------------------------------------------------
def _signature(fn, v: Variant) -> dict:
    """Triton signature: constexprs by name, runtime arguments positionally (C API names may differ)."""
    runtime = [a for a in fn.arg_names if a not in v.constexprs]
    if len(runtime) != len(v.args):
        raise ValueError(f"{v.name}: kernel has runtime arguments {runtime}, variant declares {len(v.args)}")
    types = dict(zip(runtime, (t for _, t in v.args), strict=True))
    return {a: "constexpr" if a in v.constexprs else types[a] for a in fn.arg_names}


def compile_variant(v: Variant, arch: int) -> tuple[bytes, dict]:
    """Compile one variant for sm_<arch> on this (GPU-less) machine: (cubin, metadata)."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise RuntimeError("unset TRITON_INTERPRET for the AOT build (the interpreter cannot emit cubins)")
    import importlib

    import triton
    from triton.backends.compiler import GPUTarget

    triton.knobs.compilation.disable_line_info = True  # line tables would triple the cubin size
    fn = getattr(importlib.import_module(v.module), v.kernel)
    sig = _signature(fn, v)
    attrs = {(i,): [["tt.divisibility", 16]] for i, a in enumerate(fn.arg_names) if sig[a].startswith("*")}
    src = triton.compiler.ASTSource(fn, sig, dict(v.constexprs), attrs)
    log = io.StringIO()
    old = triton.knobs.nvidia.dump_ptxas_log, triton.knobs.compilation.always_compile
    # Always run ptxas (a cache hit would skip it, and with it the -v log the manifest records).
    triton.knobs.nvidia.dump_ptxas_log, triton.knobs.compilation.always_compile = True, True
    try:
        with contextlib.redirect_stdout(log):
            cc = triton.compile(
                src,
                target=GPUTarget("cuda", arch, 32),
                options={"num_warps": v.num_warps, "num_stages": v.num_stages, "enable_fp_fusion": True},
            )
    finally:
        triton.knobs.nvidia.dump_ptxas_log, triton.knobs.compilation.always_compile = old
    md = cc.metadata
    if getattr(md, "global_scratch_size", 0) or getattr(md, "profile_scratch_size", 0):
        raise RuntimeError(f"{v.name} sm_{arch}: needs global/profile scratch; the C launcher passes none")
    cubin = cc.asm["cubin"]
    res = cubin_resources(cubin, md.name)
    ptxas = parse_ptxas_log(log.getvalue())
    if "registers" not in ptxas:
        raise RuntimeError(f"{v.name} sm_{arch}: no ptxas -v log captured")
    if ptxas["registers"] != res["registers"]:
        raise RuntimeError(f"{v.name} sm_{arch}: ELF says {res['registers']} registers, ptxas {ptxas['registers']}")
    gpu_name = re.search(r"\.target\s+(sm_\w+)", cc.asm["ptx"]).group(1)
    return cubin, {
        "arch": arch,
        "gpu_name": gpu_name,
        "kernel_symbol": md.name,
        "num_warps": md.num_warps,
        "threads_per_block": md.num_warps * 32,
        "dynamic_shared_bytes": md.shared,
        **res,
        "spill_store_bytes": ptxas.get("spill_store_bytes"),
        "spill_load_bytes": ptxas.get("spill_load_bytes"),
        "stack_frame_bytes": ptxas.get("stack_frame_bytes"),
        "cubin_bytes": len(cubin),
        "cubin_sha256": hashlib.sha256(cubin).hexdigest(),
        "ptxas_log": log.getvalue().strip(),
    }


def build(archs=ARCHS, out_dir: Path = AOT_DIR, names: list[str] | None = None) -> dict:
    root = str(HERE.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    import triton

    out_dir = Path(out_dir)
    (out_dir / "cubin").mkdir(parents=True, exist_ok=True)
    manifest = {
        "triton_version": triton.__version__,
        "command": "python kernels/aot.py build --arch " + " ".join(map(str, archs)),
        "built_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "archs": list(archs),
        "variants": [],
    }
    for v in VARIANTS:
        if names and v.name not in names:
            continue
        entry = {
            "name": v.name,
            "module": v.module,
            "kernel": v.kernel,
            "kernel_sha256": kernel_digest(v.module, v.kernel),
            "args": [list(a) for a in v.args],
            "constexprs": v.constexprs,
            "num_warps": v.num_warps,
            "num_stages": v.num_stages,
            "grid": list(v.grid),
            "checks": list(v.checks),
            "doc": v.doc,
            "cubins": [],
        }
        for arch in archs:
            t0 = time.time()
            cubin, meta = compile_variant(v, arch)
            fname = f"cubin/{v.name}.sm_{arch}.cubin"
            (out_dir / fname).write_bytes(cubin)
            meta["file"] = fname
            meta["compile_seconds"] = round(time.time() - t0, 2)
            entry["cubins"].append(meta)
            regs, smem = meta["registers"], meta["dynamic_shared_bytes"]
            spills = f"{meta['spill_store_bytes']}/{meta['spill_load_bytes']}"
            size = len(cubin)
            print(f"{v.name:24s} sm_{arch}: {regs:3d} regs, {smem:6d} B smem, spills {spills} B, {size:7d} B")
        manifest["variants"].append(entry)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


# -- C wrapper generation (stdlib only) ------------------------------------------------------------------
def _c_array(data: bytes) -> str:
    lines = []
    for i in range(0, len(data), 24):
        lines.append("  " + ",".join(str(b) for b in data[i : i + 24]) + ",")
    return "\n".join(lines)


def _c_params(args) -> str:
    return ", ".join(f"CUdeviceptr {n}" if t.startswith("*") else f"{C_TYPES[t]} {n}" for n, t in args)


def gen_c(manifest_path: Path = MANIFEST, out_dir: Path = Path("build/generated")) -> list[Path]:
    """Write hipart_kernels_generated.{h,c}: embedded cubins + one typed launcher per variant."""
    manifest_path = Path(manifest_path)
    manifest = json.loads(manifest_path.read_text())
    base = manifest_path.parent
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    h = [
        "/* Generated by kernels/aot.py gen-c from kernels/aot/manifest.json; do not edit. */",
        "#ifndef HIPART_KERNELS_GENERATED_H",
        "#define HIPART_KERNELS_GENERATED_H",
        "#include <stdint.h>",
        "#include <cuda.h>",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
    ]
    c = [
        "/* Generated by kernels/aot.py gen-c from kernels/aot/manifest.json; do not edit. */",
        '#include "hipart_kernels.h"',
        '#include "hipart_internal.h"',
        "",
    ]
    table = []
    for v in manifest["variants"]:
        name, args = v["name"], [tuple(a) for a in v["args"]]
        needs_batch = any("batch" in g for g in v["grid"]) or any("batch" in k for k in v["checks"])
        params = "void *stream, " + ("int32_t batch, " if needs_batch else "") + _c_params(args)
        h.append(f"/* {v['doc']} */")
        h.append(f"HIPART_API int hipart_{name}({params});")
        cubins = []
        for cb in v["cubins"]:
            data = (base / cb["file"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != cb["cubin_sha256"]:
                raise RuntimeError(f"{cb['file']} does not match the manifest; rebuild with `aot.py build`")
            sym = f"cubin_{name}_sm{cb['arch']}"
            c.append(f"static const unsigned char {sym}[{len(data)}] = {{\n{_c_array(data)}\n}};")
            arch_specific = 1 if cb["gpu_name"].endswith("a") else 0
            cubins.append(
                f"{{{cb['arch']}, {arch_specific}, {sym}, sizeof({sym}), {cb['dynamic_shared_bytes']}, "
                f"{cb['registers']}}}"
            )
        nw = v["num_warps"]
        symbol = v["cubins"][0]["kernel_symbol"] if v["cubins"] else v["kernel"]
        c.append(f"static const hipart_cubin_t cubins_{name}[] = {{\n  " + ",\n  ".join(cubins) + "\n};")
        c.append(
            f'static hipart_kernel_t kernel_{name} = {{"{name}", "{symbol}", {nw}, '
            f"cubins_{name}, {len(cubins)}, {{{{0}}}}}};"
        )
        checks = " && ".join(f"({k})" for k in v["checks"]) or "1"
        align = " || ".join(f"({n} & 15u)" for n, t in args if t.startswith("*")) or "0"
        ptr_args = ", ".join(f"&{n}" for n, _ in args)
        c += [
            f"HIPART_API int hipart_{name}({params}) {{",
            f'  if (!({checks})) return hipart_fail(HIPART_ERR_ARGS, "{name}: arguments outside '
            f'{" && ".join(v["checks"])}");',
            f"  if ({align})",
            f'    return hipart_fail(HIPART_ERR_ALIGN, "{name}: device pointers must be 16-byte aligned");',
            f"  unsigned gx = (unsigned)({v['grid'][0]}), gy = (unsigned)({v['grid'][1]}), "
            f"gz = (unsigned)({v['grid'][2]});",
            "  CUdeviceptr global_scratch = 0, profile_scratch = 0;",
            f"  void *params[] = {{{ptr_args}, &global_scratch, &profile_scratch}};",
            f"  return hipart_launch(&kernel_{name}, stream, gx, gy, gz, params);",
            "}",
            "",
        ]
        table.append(f"&kernel_{name}")
    c.append("hipart_kernel_t *const hipart_kernel_table[] = {" + ", ".join(table) + "};")
    c.append(f"const int hipart_kernel_table_size = {len(table)};")
    c.append(f'const char *const hipart_cubin_triton_version = "{manifest["triton_version"]}";')
    h += ["", "#ifdef __cplusplus", "}", "#endif", "#endif", ""]
    paths = [out_dir / "hipart_kernels_generated.h", out_dir / "hipart_kernels_generated.c"]
    paths[0].write_text("\n".join(h))
    paths[1].write_text("\n".join(c) + "\n")
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="compile cubins (needs triton; no GPU needed)")
    b.add_argument("--arch", type=int, nargs="+", default=list(ARCHS))
    b.add_argument("--out", type=Path, default=AOT_DIR)
    b.add_argument("--only", nargs="*", help="variant names (default: all)")
    g = sub.add_parser("gen-c", help="generate the C launchers (stdlib only)")
    g.add_argument("--manifest", type=Path, default=MANIFEST)
    g.add_argument("--out", type=Path, default=Path("build/generated"))
    args = ap.parse_args(argv)
    if args.cmd == "build":
        m = build(args.arch, args.out, args.only)
        total = sum(cb["cubin_bytes"] for v in m["variants"] for cb in v["cubins"])
        print(f"{sum(len(v['cubins']) for v in m['variants'])} cubins, {total} bytes -> {args.out}")
    else:
        for p in gen_c(args.manifest, args.out):
            print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
