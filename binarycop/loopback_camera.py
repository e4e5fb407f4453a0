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
    """Serves ``/video.mjpg`` on 127.0.0.1:``port`` until :meth:`stop` (which also cuts open streams)."""

    def __init__(self, port: int, garbage_every: int = 0, frames: list[bytes] | None = None, start_frame: int = 0):
        self.port = port
        self.frames = frames if frames is not None else clip_jpegs()
        self.start_frame = start_frame  # where each stream starts in the frames
        self.garbage_every = garbage_every
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
                index = camera.start_frame
                while not camera._stopping.is_set():
                    payload = camera.frames[index % len(camera.frames)]
                    if camera.garbage_every and index % camera.garbage_every == camera.garbage_every - 1:
                        payload = payload[: len(payload) // 3] + b"\x00garbage\xff" * 50  # a corrupt JPEG
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                        self.wfile.write(f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload + b"\r\n")
                    except OSError:
                        return
                    index += 1
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
