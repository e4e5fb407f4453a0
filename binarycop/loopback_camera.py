"""A real HTTP MJPEG camera on loopback: JPEG frames as multipart at 10 fps, looping.

Used by the tests (a camera that can die and come back) and by ``bench pipeline`` (many cameras).
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2

from binarycop.democlip import FPS, clip_frames


def clip_jpegs() -> list[bytes]:
    return [cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for frame in clip_frames()]


class MjpegCamera:
    """Serves ``/video.mjpg`` on 127.0.0.1:``port`` until :meth:`stop` (which also cuts open streams).

    Every frame in turn, one each 1/FPS s after the last was written; ``live``: the scene plays in real time, as a
    live camera's does, whatever the reader: each write sends the frame of that moment, so a frame whose moment
    passed while a write waited on a slow reader (or on this process's other threads) is skipped, and the stream
    never slows below FPS. ``served`` counts the frames written."""

    def __init__(
        self,
        port: int,
        garbage_every: int = 0,
        frames: list[bytes] | None = None,
        start_frame: int = 0,
        live: bool = False,
    ):
        self.port = port
        self.frames = frames if frames is not None else clip_jpegs()
        self.start_frame = start_frame  # where each stream starts in the frames
        self.garbage_every = garbage_every
        self.live = live
        self.served = 0
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> MjpegCamera:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                started, sent = time.monotonic(), 0
                while not camera._stopping.is_set():
                    step = int((time.monotonic() - started) * FPS) if camera.live else sent  # the scene's moment
                    payload = camera.frames[(camera.start_frame + step) % len(camera.frames)]
                    if camera.garbage_every and sent % camera.garbage_every == camera.garbage_every - 1:
                        payload = payload[: len(payload) // 3] + b"\x00garbage\xff" * 50  # a corrupt JPEG
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                        self.wfile.write(f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload + b"\r\n")
                    except OSError:
                        return
                    sent += 1
                    camera.served += 1
                    if camera.live:  # the next frame's moment
                        time.sleep(max(0.0, started + (step + 1) / FPS - time.monotonic()))
                    else:
                        time.sleep(1 / FPS)

        ThreadingHTTPServer.allow_reuse_address = True
        self._stopping.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/video.mjpg"

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
