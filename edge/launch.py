"""The console-script entry points of every command: a light shell that turns Ctrl-C / SIGTERM during the heavy
imports (torch, onnxruntime, mediapipe: seconds) into one line and exit 130 / 143, then calls the command's main.

It lives in the top room because it names commands of every room (hipart, export, edge); it imports only the
standard library and hipart.cli.guard before the command's own module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from hipart.cli.guard import interruptible


def launch(module: str, prog: str, prepare: Callable[[], None] | None = None) -> int:
    """Import `module` and return its main()'s exit code; a stop signal during the import is a one-line exit.

    `prepare()` runs first, inside the same guard (optional set-up such as the fused quantiser kernel)."""

    def run() -> int:
        if prepare is not None:
            prepare()
        return importlib.import_module(module).main()  # each main guards its own run with `interruptible`

    return interruptible(prog, run, " while starting")


def hipart_run() -> int:
    """hipart-run."""
    return launch("edge.cli_run", "hipart-run")


def hipart_bench() -> int:
    """hipart-bench."""
    return launch("edge.cli_bench", "hipart-bench")


def hipart_serve() -> int:
    """hipart-serve."""
    return launch("edge.cli_serve", "hipart-serve")


def hipart_export() -> int:
    """hipart-export."""
    return launch("export.cli", "hipart-export")


def hipart_temporal() -> int:
    """hipart-temporal."""
    return launch("export.temporal_cli", "hipart-temporal")


def hipart_model() -> int:
    """hipart-model."""
    return launch("hipart.cli.model", "hipart-model")


def _fused_quantizer() -> None:
    """On a CUDA machine, the model's quantisers use the fused nearest-code kernel (kernels/codebook_nn.py)."""
    import torch  # the command imports it anyway; triton and kernels/ only where there is a GPU (~0.2 s otherwise)

    if not torch.cuda.is_available():
        return
    try:
        from kernels.codebook_nn import install

        install("cuda")
    except ImportError:  # kernels/ absent: the torch math stays in place
        pass


def hipart_train() -> int:
    """hipart-train (the tokenizer's quantisers on the fused NN kernel where CUDA is)."""
    return launch("hipart.cli.train", "hipart-train", _fused_quantizer)


def hipart_eval() -> int:
    """hipart-eval (token accuracy quantises the ground truth: fused NN kernel where CUDA is)."""
    return launch("hipart.cli.eval", "hipart-eval", _fused_quantizer)


def hipart_data() -> int:
    """hipart-data."""
    return launch("hipart.cli.data", "hipart-data")
