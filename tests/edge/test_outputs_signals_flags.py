"""Issue 19 regressions: crash-safe outputs, SIGTERM/SIGHUP, disk full, --recover, and flag validation."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from edge import cli_run
from edge.sinks import JsonlSink, NpzSink, SinkError, VideoSink, journal_path, open_sink, recover_npz


@pytest.fixture
def fresh_clone(tmp_path, monkeypatch):
    """No exported artifacts: --backend auto falls back to torch."""
    monkeypatch.setenv("HIPART_ARTIFACTS", str(tmp_path / "no-exports"))


def _env() -> dict[str, str]:
    """Child environment: one thread, no exported artifacts."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "HIPART_ARTIFACTS": "/nonexistent-hipart-exports"}


def _video_frames(path) -> int:
    """Frames OpenCV decodes from a video file."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _jsonl(path) -> list[dict]:
    """Every line of a JSONL file, parsed (fails on a half-written line)."""
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def _record(i: int, persons: int = 1) -> dict:
    """A frame record shaped like Item.to_record()."""
    person = {
        "keypoints_2d": np.full((17, 2), i, float).tolist(),
        "confidence": [1.0] * 17,
        "dense_2d": np.zeros((48, 2)).tolist(),
        "fine_2d": np.zeros((96, 2)).tolist(),
        "pose_3d": np.full((17, 3), i, float).tolist(),
        "tokens": {"sparse": [0] * 16, "dense": [1] * 48},
    }
    return {"frame": i, "timestamp": i / 30, "status": "ok", "persons": [person] * persons}


RUN = [sys.executable, "-m", "edge.cli_run", "--source", "sample", "--backend", "torch", "--threads", "1", "--quiet"]


def _wait_lines(path, n: int, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    """Wait until `path` holds n lines (or the process ended)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_drain_and_close_every_output(tmp_path, sig):
    j, v, n = tmp_path / "o.jsonl", tmp_path / "o.mp4", tmp_path / "o.npz"
    cmd = [*RUN, "--loop", "--save", str(v), "--poses", str(j), "--poses", str(n)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        _wait_lines(j, 5, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    assert f"interrupted ({signal.Signals(sig).name}): outputs flushed and closed" in err
    k = len(_jsonl(j))
    assert k >= 5 and _video_frames(v) == k
    with np.load(n, allow_pickle=False) as z:
        assert z["frame"].tolist() == list(range(k))
    assert not journal_path(n).exists()


def test_signal_before_the_pipeline_runs_is_a_clean_exit(monkeypatch, capsys):
    def start(opts):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends

    monkeypatch.setattr(cli_run, "run_pipeline", start)
    prev = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    try:
        assert cli_run.main(["--source", "sample"]) == 143
    finally:
        signal.signal(signal.SIGTERM, prev[0])
        signal.signal(signal.SIGHUP, prev[1])
    assert "SIGTERM before the pipeline started" in capsys.readouterr().err


def _limit_file_size(limit: int):
    """preexec_fn: files may not grow past `limit` bytes; writes past it fail with EFBIG (as a full disk)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("out", ["o.mp4", "o.jsonl", "o.npz"])
def test_disk_full_is_exit_1_with_output_complete_to_the_last_good_frame(tmp_path, out):
    path = tmp_path / out
    flag = "--save" if out.endswith(".mp4") else "--poses"
    limit = 300_000 if out.endswith(".mp4") else 120_000
    proc = subprocess.run(
        [*RUN, "--loop", "--max-frames", "400", flag, str(path)],
        stderr=subprocess.PIPE, text=True, env=_env(), timeout=300, preexec_fn=_limit_file_size(limit),
    )  # fmt: skip
    err = proc.stderr
    assert proc.returncode == 1, err
    assert "no space left" in err and "INCOMPLETE" in err and "Traceback" not in err
    if out.endswith(".mp4"):
        assert _video_frames(path) >= 10
    elif out.endswith(".jsonl"):
        recs = _jsonl(path)  # every line whole: the half line was cut
        assert len(recs) >= 10 and [r["frame"] for r in recs] == list(range(len(recs)))
    else:
        with np.load(path, allow_pickle=False) as z:  # built from the journal, which is smaller than the limit
            assert len(z["frame"]) >= 10 and z["frame"].tolist() == list(range(len(z["frame"])))


def test_journal_recovery_after_a_kill(tmp_path, capsys):
    npz = tmp_path / "o.npz"
    with open(journal_path(npz), "w", encoding="utf-8") as f:
        for i in range(5):
            f.write(json.dumps(_record(i, persons=2)) + "\n")
        f.write('{"frame": 5, "timest')  # the line in flight when SIGKILL came
    assert cli_run.main(["--recover", str(npz)]) == 0
    assert "recovered 5 frames" in capsys.readouterr().err
    with np.load(npz, allow_pickle=False) as z:
        assert z["frame"].tolist() == [0, 1, 2, 3, 4] and z["pose_3d"].shape == (10, 17, 3)
        np.testing.assert_array_equal(z["person_frame"], np.repeat(np.arange(5), 2))
        assert z["pose_3d"][9, 0, 0] == 4.0
    assert not journal_path(npz).exists()
    assert cli_run.main(["--recover", str(npz)]) == 1  # nothing left to recover: a clear error
    assert "no journal" in capsys.readouterr().err


def test_a_new_run_recovers_a_stale_journal_instead_of_overwriting_it(tmp_path):
    npz = tmp_path / "o.npz"
    journal_path(npz).write_text("".join(json.dumps(_record(i)) + "\n" for i in range(3)))
    sink = NpzSink(npz)
    sink.start()
    sink.write(_record(0))
    sink.close()
    with np.load(tmp_path / "o.recovered.npz") as z:
        assert z["frame"].tolist() == [0, 1, 2]
    with np.load(npz) as z:
        assert z["frame"].tolist() == [0]


def test_journal_that_is_not_ours_is_refused(tmp_path):
    npz = tmp_path / "o.npz"
    journal_path(npz).write_text("not json\n{}\n")
    with pytest.raises(SinkError, match="not a hipart-run journal"):
        recover_npz(npz)


def test_video_survives_truncation_like_a_killed_run(tmp_path):
    """Fragmented MP4: a copy taken mid-run (what SIGKILL leaves) plays up to its last finished fragment."""
    v = VideoSink(tmp_path / "o.mp4", fps=10)
    img = np.zeros((120, 160, 3), np.uint8)
    for i in range(35):
        img[:] = i * 7
        v.write({}, img)
    killed = tmp_path / "killed.mp4"
    killed.write_bytes((tmp_path / "o.mp4").read_bytes())
    v.close()
    assert _video_frames(tmp_path / "o.mp4") == 35
    assert 10 <= _video_frames(killed) < 35  # whole one-second fragments


def test_jsonl_write_error_cuts_back_to_whole_lines(tmp_path):
    s = JsonlSink(tmp_path / "o.jsonl")
    s.start()
    s.write(_record(0))
    s._f.write('{"half": ')  # a partial line buffered when the disk fills
    s._f.flush()
    s._f = _Failing(s._f)
    with pytest.raises(SinkError, match="no space left"):
        s.write(_record(1))
    assert [r["frame"] for r in _jsonl(tmp_path / "o.jsonl")] == [0]


class _Failing:
    """A file object whose writes fail as on a full disk."""

    def __init__(self, f):
        self.f = f

    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")

    def __getattr__(self, name: str):
        return getattr(self.f, name)


def test_poses_and_save_extensions_are_checked(tmp_path, capsys, fresh_clone):
    with pytest.raises(SinkError, match="for a video use --save"):
        open_sink(tmp_path / "o.mp4", kind="poses")
    assert cli_run.main(["--poses", str(tmp_path / "o.mp4")]) == 2
    assert "for a video use --save" in capsys.readouterr().err
    assert cli_run.main(["--save", str(tmp_path / "o.jsonl")]) == 2
    assert "for poses use --poses" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--max-frames", "-5", "must be >= 1"),
        ("--max-frames", "0", "must be >= 1"),
        ("--duration", "-1", "finite number > 0"),
        ("--duration", "inf", "finite number > 0"),
        ("--min-conf", "7", "must be in [0, 1]"),
        ("--min-conf", "nan", "must be in [0, 1]"),
        ("--queue-size", "0", "must be >= 1"),
        ("--threads", "-2", "must be >= 1"),
        ("--max-batch-frames", "0", "must be >= 1"),
        ("--device", "banana", "expected auto, cpu, cuda or cuda:N"),
        ("--threads", "two", "expected a whole number"),
    ],
)
def test_bad_flag_values_are_refused_before_anything_runs(flag, value, says, capsys):
    with pytest.raises(SystemExit) as e:
        cli_run.build_parser().parse_args([flag, value])
    assert e.value.code == 2 and says in capsys.readouterr().err


def test_every_frame_failing_is_exit_1(tmp_path, monkeypatch, capsys, fresh_clone):
    from edge.estimator import Estimator

    def broken(self, items):
        return [RuntimeError("backend exploded") for _ in items]

    monkeypatch.setattr(Estimator, "lift", broken)
    out = tmp_path / "o.jsonl"
    assert cli_run.main(["--backend", "torch", "--max-frames", "4", "--poses", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "no frame could be processed (4 failed, 0 corrupt of 4)" in err and "backend exploded" in err
    assert [r["status"].startswith("error") for r in _jsonl(out)] == [True] * 4


def test_help_lists_exit_codes(capsys):
    with pytest.raises(SystemExit):
        cli_run.build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert "exit codes:" in out and "143 by SIGTERM" in out and "--recover" in out


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"width": -5}, "width must be a whole number > 0"),
        ({"height": 0}, "height must be a whole number > 0"),
        ({"fps": np.nan}, "fps must be a number > 0"),
        ({"width": "wide"}, "width must be a number"),
    ],
)
def test_keypoint_file_with_impossible_image_size_is_refused(tmp_path, extra, says):
    from edge.sources import SourceError, open_source

    np.savez(tmp_path / "k.npz", keypoints=np.full((3, 17, 2), 100, np.float32), format="h36m17", **extra)
    with pytest.raises(SourceError, match=says):
        open_source(str(tmp_path / "k.npz"))


def test_keypoint_npz_of_strings_is_a_clear_error(tmp_path, capsys, fresh_clone):
    np.savez(tmp_path / "k.npz", keypoints=np.full((3, 17, 2), "a", dtype="<U3"))
    assert cli_run.main(["--source", str(tmp_path / "k.npz")]) == 2
    err = capsys.readouterr().err
    assert "keypoints must be numbers" in err and "Traceback" not in err


def test_truncated_video_says_so_and_exits_1(tmp_path, capsys, fresh_clone):
    import av

    full, cut = tmp_path / "full.mp4", tmp_path / "cut.mp4"
    c = av.open(str(full), "w", format="mp4", options={"movflags": "faststart"})  # index first, as cameras write
    s = c.add_stream("mpeg4", rate=30)
    s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
    rng = np.random.default_rng(0)
    for _ in range(60):
        c.mux(s.encode(av.VideoFrame.from_ndarray(rng.integers(0, 255, (120, 160, 3), np.uint8), format="bgr24")))
    c.mux(s.encode(None))
    c.close()
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "o.jsonl"
    rc = cli_run.main(["--source", str(cut), "--backend", "torch", "--poses", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "the file ended early" in err and "of the 60 frames" in err, err
    assert 10 <= len(_jsonl(out)) < 60


def test_image_folder_of_only_corrupt_images_is_exit_1(tmp_path, capsys, fresh_clone):
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        (tmp_path / "imgs" / f"{i}.jpg").write_bytes(b"not a jpeg")
    assert cli_run.main(["--source", str(tmp_path / "imgs"), "--backend", "torch", "--quiet"]) == 1
    assert "no frame could be processed (0 failed, 3 corrupt of 3)" in capsys.readouterr().err


def test_keypoint_file_without_frames_is_refused(tmp_path, capsys, fresh_clone):
    np.savez(tmp_path / "k.npz", keypoints=np.zeros((0, 17, 2), np.float32))
    (tmp_path / "k.json").write_text('{"frames": []}')
    for name in ("k.npz", "k.json"):
        assert cli_run.main(["--source", str(tmp_path / name)]) == 2
        assert "holds no frames" in capsys.readouterr().err


@pytest.mark.parametrize("second", ["o.jsonl", "o.npz.partial.jsonl"])
def test_two_outputs_on_one_file_are_refused(tmp_path, capsys, fresh_clone, second):
    first = "o.jsonl" if second == "o.jsonl" else "o.npz"
    assert cli_run.main(["--poses", str(tmp_path / first), "--poses", str(tmp_path / second)]) == 2
    assert "two outputs would write the same file" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_auto_with_an_artifacts_folder_that_has_no_manifest_is_refused(tmp_path, capsys):
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "notes.txt").write_text("not an export")
    assert cli_run.main(["--artifacts", str(tmp_path / "art")]) == 2
    assert "no manifest.json there" in capsys.readouterr().err


def test_sigint_works_even_when_started_ignored():
    from hipart.cli.guard import install_stop_handlers

    prev = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # what `nohup` / `cmd &` hand a child
        install_stop_handlers()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        for s, h in zip((signal.SIGINT, signal.SIGTERM, signal.SIGHUP), prev, strict=True):
            signal.signal(s, h)


def test_bench_json_on_a_full_disk_is_one_line(capsys, monkeypatch, tmp_path):
    from edge import cli_bench

    monkeypatch.setenv("HIPART_ARTIFACTS", str(tmp_path / "none"))
    rc = cli_bench.main(["--config", "tiny", "--backends", "torch", "--batch", "1", "--iters", "1", "--warmup", "0",
                         "--json", "/dev/full"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "writing /dev/full failed: No space left on device" in err and "Traceback" not in err


def test_paced_source_plays_a_file_like_a_camera():
    from edge.sources import Frame, PacedSource, Source

    class Ten(Source):
        """Ten numbered frames."""

        def __init__(self):
            super().__init__("ten")
            self.i = 0

        def read(self):
            if self.i >= 10:
                return None
            self.i += 1
            return Frame(self.i - 1, 0.0, np.zeros((2, 2, 3), np.uint8), 2, 2)

    t = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        t[0] += s

    src = PacedSource(Ten(), fps=10, clock=lambda: t[0], sleep=sleep)
    assert src.live and src.read().index == 0 and src.read().index == 1 and slept == [pytest.approx(0.1)]
    t[0] += 0.35  # the pipeline was busy for 3.5 frame times: the frames due meanwhile are gone
    got = [f.index for f in iter(src.read, None)]
    assert src.skipped == 2 and len(got) == 6  # frames 2..9 minus the 2 missed
    src.close()
    assert "2 frames skipped" in src.events[0]


def test_pace_refuses_a_live_source_and_summary_names_the_latency_kind(tmp_path, capsys, fresh_clone):
    out = tmp_path / "o.jsonl"
    assert cli_run.main(["--pace", "--backend", "torch", "--max-frames", "6", "--poses", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "(live: what a camera user sees)" in err and len(_jsonl(out)) >= 1
    assert cli_run.main(["--backend", "torch", "--max-frames", "3", "--quiet"]) == 0
    assert "(file source: frames queue" in capsys.readouterr().err
