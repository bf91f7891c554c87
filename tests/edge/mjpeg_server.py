"""A scriptable MJPEG-over-HTTP server on 127.0.0.1 for fault-injection tests (stdlib http.server, one thread).

Every frame carries its own index as a grid of large black/white blocks (the index bits, then their complement),
which survives JPEG and is read back with `decode_index`. Numbering is global across connections: each index is
reserved (under a lock) before it is sent, so no index is ever sent twice, even when a client reconnects while
an older connection is still stalled. Faults are scripted on the global frame index:

    srv = MjpegServer(stall={20: 3.0}, drop_after={40}, down_s={40: 1.0}).start()
    url = srv.url  # http://127.0.0.1:PORT/stream.mjpg

- `stall[i] = s`: sleep s seconds before sending frame i (once);
- `drop_after`: after frame i, close the TCP connection (no multipart terminator: an abrupt drop);
- `down_s[i] = s`: with that drop, the listening socket is closed (just before the drop) for s seconds, so
  connections are refused; then the server comes back on the same port and goes on numbering where it left off.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = "hipartframe"
BITS = 12  # indices 0..4095
COLS, ROWS = 6, 4  # 24 blocks: 12 index bits, then their complement (a check against misreads)
WIDTH, HEIGHT = 192, 128
BLOCK_W, BLOCK_H = WIDTH // COLS, HEIGHT // ROWS


def encode_index(i: int) -> np.ndarray:
    """A BGR image [HEIGHT, WIDTH, 3] whose blocks spell frame index i (bits, then their complement)."""
    bits = [(i >> b) & 1 for b in range(BITS)]
    bits += [1 - v for v in bits]
    img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for k, v in enumerate(bits):
        r, c = divmod(k, COLS)
        img[r * BLOCK_H : (r + 1) * BLOCK_H, c * BLOCK_W : (c + 1) * BLOCK_W] = 230 if v else 25
    return img


def decode_index(img: np.ndarray) -> int | None:
    """The frame index drawn by `encode_index` (None when the check bits disagree or the size is wrong)."""
    if img is None or img.shape[0] != HEIGHT or img.shape[1] != WIDTH:
        return None
    grey = img.mean(axis=2) if img.ndim == 3 else img
    bits = []
    for k in range(2 * BITS):
        r, c = divmod(k, COLS)
        centre = grey[r * BLOCK_H + BLOCK_H // 4 : (r + 1) * BLOCK_H - BLOCK_H // 4,
                      c * BLOCK_W + BLOCK_W // 4 : (c + 1) * BLOCK_W - BLOCK_W // 4]  # fmt: skip
        bits.append(int(centre.mean() > 128))
    if any(a + b != 1 for a, b in zip(bits[:BITS], bits[BITS:], strict=True)):
        return None
    return sum(v << b for b, v in enumerate(bits[:BITS]))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class MjpegServer:
    """An MJPEG stream at `url` with scripted stalls, drops and outages (see the module docstring)."""

    def __init__(
        self,
        fps: float = 40.0,
        stall: dict[int, float] | None = None,
        drop_after: set[int] | None = None,
        down_s: dict[int, float] | None = None,
        quality: int = 90,
    ):
        self.period, self.quality = 1.0 / fps, quality
        self.stall = dict(stall or {})
        self.drop_after = set(drop_after or ())
        self.down_s = dict(down_s or {})
        self.lock = threading.Lock()
        self.next_index = 0  # the next index to send (global across connections)
        self.generation = 0  # the newest connection; older ones stop sending
        self.sent: list[int] = []  # indices fully written to a client, in order
        self.connections = 0  # stream requests answered
        self._httpd: _Server | None = None
        self.port = 0
        self._closed = False

    @property
    def url(self) -> str:
        """The stream's URL."""
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> MjpegServer:
        """Listen (on a free port the first time, the same port when coming back) and serve in a thread."""
        handler = self._handler()
        for _ in range(50):  # coming back: the port may still be in TIME_WAIT for a moment
            try:
                self._httpd = _Server(("127.0.0.1", self.port), handler)
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise OSError(f"cannot listen on 127.0.0.1:{self.port} again")
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def _go_down(self, seconds: float) -> None:
        """Close the listening socket (new connections are refused) and come back after `seconds`."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

        def back() -> None:
            time.sleep(seconds)
            if not self._closed:
                self.start()

        threading.Thread(target=back, daemon=True).start()

    def close(self) -> None:
        """Stop serving; streaming threads end at their next frame."""
        self._closed = True
        with self.lock:
            self.generation += 1
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- streaming ---------------------------------------------------------------------------------
    def _jpeg(self, i: int) -> bytes:
        ok, buf = cv2.imencode(".jpg", encode_index(i), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        assert ok
        return buf.tobytes()

    def _reserve(self, gen: int) -> int | None:
        """The next index for connection `gen` (None: a newer connection took over, or the server closed)."""
        with self.lock:
            if gen != self.generation:
                return None
            i = self.next_index
            self.next_index += 1
            return i

    def _stream(self, h: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.generation += 1
            gen = self.generation
            self.connections += 1
        h.send_response(200)
        h.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Connection", "close")
        h.end_headers()
        while (i := self._reserve(gen)) is not None:
            if i in self.stall:
                time.sleep(self.stall.pop(i))
                if gen != self.generation:  # the client gave up on us while we stalled: frame i is never sent
                    return
            data = self._jpeg(i)
            head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            try:
                h.wfile.write(head + data + b"\r\n")
                h.wfile.flush()
            except OSError:  # the client went away
                return
            with self.lock:
                self.sent.append(i)
            if i in self.drop_after:
                if i in self.down_s:  # stop listening first, so no reconnect can slip in before the outage
                    self._go_down(self.down_s[i])
                self._drop(h)
                return
            time.sleep(self.period)

    @staticmethod
    def _drop(h: BaseHTTPRequestHandler) -> None:
        """Drop the TCP connection abruptly (RST, no multipart terminator)."""
        h.close_connection = True
        sock = h.connection
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                """The stream at /stream.mjpg; 404 elsewhere."""
                if self.path.split("?")[0] != "/stream.mjpg":
                    self.send_error(404)
                    return
                server._stream(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                """Quiet: no access log on stderr."""

        return Handler
