"""Every command lists its exit codes in --help and turns Ctrl-C / SIGTERM into one line and 130 / 143."""

from __future__ import annotations

import os
import signal
import time

import pytest

from hipart.cli.guard import interruptible

COMMANDS = {
    "hipart-run": "edge.cli_run",
    "hipart-bench": "edge.cli_bench",
    "hipart-export": "export.cli",
    "hipart-eval": "hipart.cli.eval",
    "hipart-train": "hipart.cli.train",
    "hipart-data": "hipart.cli.data",
    "hipart-model": "hipart.cli.model",
    "hipart-temporal": "export.temporal_cli",
}


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_help_lists_exit_codes(prog, capsys):
    import importlib

    mod = importlib.import_module(COMMANDS[prog])
    with pytest.raises(SystemExit) as e:
        mod.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "exit codes:" in out
    assert "  0 " in out and "130" in out and "143" in out, out[-600:]


def test_interruptible_maps_signals_to_one_line_exits(capsys):
    prev = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    try:

        def killed() -> int:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            return 0

        def ctrl_c() -> int:
            raise KeyboardInterrupt

        assert interruptible("hipart-x", killed) == 143
        assert interruptible("hipart-x", ctrl_c) == 130
    finally:
        signal.signal(signal.SIGTERM, prev[0])
        signal.signal(signal.SIGHUP, prev[1])
    err = capsys.readouterr().err
    assert "hipart-x: stopped by SIGTERM" in err and "hipart-x: interrupted (Ctrl-C)" in err and "Traceback" not in err


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_during_the_heavy_imports_is_one_line(tmp_path, sig, code):
    """The console scripts start in edge.launch: a signal while the command's module imports (torch: seconds)."""
    import subprocess
    import sys

    (tmp_path / "slowmod.py").write_text("import sys, time\nprint('importing', flush=True)\ntime.sleep(30)\n")
    child = "import sys\nfrom edge.launch import launch\nsys.exit(launch('slowmod', 'hipart-x'))\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "importing"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == code and "while starting" in err and "Traceback" not in err, err
