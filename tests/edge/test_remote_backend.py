"""The edge client of hipart-serve (`hipart-run --server URL`, edge/backends/remote.py) against
tests/edge/serve_stub.py: API v1 over a real in-process backend on 127.0.0.1, so no Ray is needed.

Parity with the in-process backend (tokens identical, 3D within 1e-5), the same JSONL as a local run, a server killed
mid-run (frames fail with a clear status, the run goes on and resumes when the server is back on the same port), a
server missing at start (exit 2, one line), HTTP 400 (one frame's error) and a hung server (bounded by the timeout).
"""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest

from benchmarks import serve_load
from edge import cli_run
from edge.backends.remote import RemoteBackend, RemoteError, ServerUnavailable, server_url
from edge.backends.torch_backend import TorchBackend
from edge.estimator import Estimator, FrameResult
from edge.weights import load_model
from hipart.camera import normalize_screen_coordinates
from tests.edge.serve_stub import ServeStub
from tests.edge.test_torch_free import _child


@pytest.fixture(scope="module")
def backend() -> TorchBackend:
    """The model a local `hipart-run --backend torch --random-weights tiny` runs, in process (what the stub serves)."""
    loaded = load_model(random_weights="tiny")
    return TorchBackend(loaded.model, model_hash=loaded.model_hash)


@pytest.fixture
def stub(backend):
    with ServeStub(backend) as s:
        yield s


@pytest.fixture(scope="module")
def kpts(tmp_path_factory, walk_px) -> str:
    """The 24-frame synthetic walk as a keypoint file (17-joint order, 640x480, 30 fps)."""
    path = tmp_path_factory.mktemp("kpts") / "walk.npz"
    np.savez(path, keypoints=walk_px.astype(np.float32), width=640, height=480, fps=30.0, format="h36m17")
    return str(path)


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _same_poses(a: dict, b: dict) -> None:
    """Two JSONL records hold the same persons (3D within the 1e-5 of the 5-decimal rounding, tokens identical)."""
    assert (a["frame"], a["status"], len(a["persons"])) == (b["frame"], b["status"], len(b["persons"]))
    for p, q in zip(a["persons"], b["persons"], strict=True):
        assert p["tokens"] == q["tokens"] and p["keypoints_2d"] == q["keypoints_2d"]
        np.testing.assert_allclose(p["pose_3d"], q["pose_3d"], atol=2e-5)
        np.testing.assert_allclose(p["dense_2d"], q["dense_2d"], atol=0.02)
        np.testing.assert_allclose(p["fine_2d"], q["fine_2d"], atol=0.02)


def test_remote_matches_the_in_process_backend_on_one_kept_alive_connection(stub, backend, walk_px):
    x = normalize_screen_coordinates(walk_px.astype(np.float32), 640, 480)
    with RemoteBackend(stub.url) as remote:
        assert remote.model_hash == backend.model_hash and remote.info()["server_backend"] == "torch"
        for batch in (x, x[:1], x[:0]):
            got, want = remote.infer(batch), backend.infer(batch)
            assert got.tokens.dtype == np.int64 and np.array_equal(got.tokens, want.tokens)
            for k in ("pose3d", "dense", "fine"):
                assert getattr(got, k).dtype == np.float32
                np.testing.assert_allclose(getattr(got, k), getattr(want, k), atol=1e-5)
        assert {"server_queue", "server_infer", "http", "total"} <= set(remote.infer(x[:2]).timings)
    assert stub.connections == 1 and stub.requests == 4  # health + 3 non-empty calls (B = 0 never leaves)


def test_hipart_run_with_server_writes_the_poses_of_a_local_run(tmp_path, stub, kpts, capsys):
    local, remote = tmp_path / "local.jsonl", tmp_path / "remote.jsonl"
    assert cli_run.main(["--source", kpts, "--backend", "torch", "--random-weights", "tiny", "--poses", str(local),
                         "--quiet"]) == 0  # fmt: skip
    assert cli_run.main(["--source", kpts, "--server", stub.url, "--poses", str(remote), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"backend: remote on {stub.url} (torch)" in err and f"[{stub.backend.model_hash}]" in err
    a, b = _jsonl(local), _jsonl(remote)
    assert len(a) == len(b) == 24
    for ra, rb in zip(a, b, strict=True):
        _same_poses(ra, rb)


def test_hipart_run_with_server_imports_no_torch(tmp_path, stub, kpts):
    out = tmp_path / "o.jsonl"
    code = "import sys\nfrom edge.cli_run import main\nsys.exit(main(sys.argv[1:]))"
    r = _child(code, "--source", kpts, "--server", stub.url, "--poses", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    assert len(_jsonl(out)) == 24 and "24 written" in r.stderr


def test_server_killed_mid_run_frames_fail_then_results_resume(tmp_path, stub, backend, kpts, walk_px, capsys, caplog):
    stub.delay = 0.02  # the run lasts ~1 s, so the outage falls in its middle

    def kill_and_restart() -> None:
        while stub.requests < 8:
            time.sleep(0.005)
        stub.stop()
        time.sleep(1.0)
        stub.start()  # same port

    chaos = threading.Thread(target=kill_and_restart, daemon=True)
    chaos.start()
    out = tmp_path / "o.jsonl"
    t0 = time.perf_counter()
    rc = cli_run.main(["--source", kpts, "--server", stub.url, "--server-timeout", "0.5", "--max-batch-frames", "1",
                       "--poses", str(out), "--quiet"])  # fmt: skip
    chaos.join(5)
    err = capsys.readouterr().err
    assert rc == 0, err
    recs = _jsonl(out)
    status = [r["status"] for r in recs]
    assert [r["frame"] for r in recs] == list(range(24))  # every frame written once, in order
    failed = [i for i, s in enumerate(status) if s != "ok"]
    assert failed and status[-1] == "ok", status
    assert all(status[i].startswith(f"error: hipart: ServerUnavailable: no hipart-serve at {stub.url}") for i in failed)
    assert failed == list(range(failed[0], failed[-1] + 1))  # one outage, then results again
    assert f"{len(failed)} failed" in err and "frames fail until it answers again" in caplog.text
    assert "answers again after" in caplog.text
    assert time.perf_counter() - t0 < 20
    with Estimator(backend) as est:  # the frames after the outage are the right frames' poses
        for i in range(failed[-1] + 1, 24):
            want = est.from_keypoints(walk_px[i][None], None, 640, 480)
            np.testing.assert_allclose(recs[i]["persons"][0]["pose_3d"], want.pose3d[0], atol=2e-5)


def test_no_server_at_start_is_one_line_and_exit_2(tmp_path, stub, kpts, capsys):
    out = tmp_path / "o.jsonl"
    url = f"http://127.0.0.1:{_free_port()}"
    assert cli_run.main(["--source", kpts, "--server", url, "--poses", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"hipart-run: error: no hipart-serve at {url}: ConnectionRefusedError" in err
    assert "Traceback" not in err and not out.exists()
    assert cli_run.main(["--source", kpts, "--server", stub.url + "/not-here", "--poses", str(out)]) == 2
    assert "/not-here: GET /v1/health: hipart-serve failed (HTTP 404)" in capsys.readouterr().err
    assert cli_run.main(["--source", kpts, "--server", stub.url, "--backend", "torch"]) == 2
    assert "--server runs HiPART on hipart-serve" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli_run.build_parser().parse_args(["--server", "ftp://host"])
    assert e.value.code == 2 and "expected an http:// or https:// URL" in capsys.readouterr().err
    assert server_url("127.0.0.1:8000/") == "http://127.0.0.1:8000"


def test_http_400_and_503_fail_that_frame_only_with_the_servers_reason(stub, walk_px):
    with Estimator(RemoteBackend(stub.url)) as est:
        stub.fault = (400, "x_s must have shape [P, 17, 2]")
        with pytest.raises(RemoteError, match=r"refused the request \(HTTP 400\): x_s must have shape"):
            est.from_keypoints(walk_px[0][None], None, 640, 480)
        frames = [est.prepare(FrameResult(width=640, height=480), kpts_px=k[None]) for k in walk_px[:2]]
        errors = est.lift(frames)  # the batched path the pipeline runs: each frame gets its status
        assert all(isinstance(e, RemoteError) for e in errors)
        assert frames[0].status.startswith("error: hipart: RemoteError: POST /v1/infer: hipart-serve refused")
        stub.fault = (503, "overloaded: 64 requests queued")  # backs off like an absent server
        with pytest.raises(ServerUnavailable, match=r"is overloaded \(HTTP 503\): overloaded: 64 requests queued"):
            est.from_keypoints(walk_px[0][None], None, 640, 480)
        stub.fault = None
        assert len(est.from_keypoints(walk_px[0][None], None, 640, 480)) == 1  # still serving, same connection
    assert stub.connections == 1


def test_a_hung_server_blocks_a_frame_no_longer_than_the_timeout(stub, walk_px):
    x = normalize_screen_coordinates(walk_px[:1].astype(np.float32), 640, 480)
    remote = RemoteBackend(stub.url, timeout=0.3)
    stub.delay = 1.5
    t0 = time.perf_counter()
    with pytest.raises(ServerUnavailable, match="no answer within 0.3 s"):
        remote.infer(x)
    assert time.perf_counter() - t0 < 0.6
    stub.delay = 0.0
    assert len(remote.infer(x)) == 1  # reconnects on the next call
    remote.close()


def test_serve_load_streams_against_the_stub(stub, kpts):
    frames = serve_load.load_frames(kpts)
    rows = serve_load.run_served(stub.url, [1, 3], seconds=1.0, fps=30.0, frames=frames)
    for row in rows:
        assert row["errors"] == 0 and row["wrong_state"] == 0 and row["answered"] > 0, row
        assert row["batch_sizes"] == {"1": row["answered"]} and row["latency_ms"]["p50"] > 0
    stub.delay = 0.05  # slower than a frame period: every other frame finds its request still in flight
    row = serve_load.run_served(stub.url, [2], seconds=1.0, fps=30.0, frames=frames)[0]
    assert row["dropped"] > 0 and row["answered"] + row["dropped"] + row["errors"] == row["due"]
