"""The setup view never shows a face (issue 26, item 1): every picture made from the demo clip by a real server, with
the detector settings under which faces came out in the clear (tiles examined one per frame; faces all below
min_face_px), searched for faces by YuNet at scales 1 and 2; and the Host check against DNS rebinding. Real
onnxruntime, real Redis, real HTTP."""

from __future__ import annotations

import asyncio
import logging
import socket

import cv2
import numpy as np
import pytest

from binarycop.config import DetectorConfig, RedisConfig
from binarycop.democlip import demo_config
from binarycop.server import Server
from detector.yunet import YuNetDetector
from stats.preview import PreviewStore, PreviewWeb, host_allowed, render

HOSTILE_DETECTORS = {
    "tiled": {"tile": 256, "tiles_per_frame": 1},
    "min-face-400": {"min_face_px": 400},
}


class RecordingStore(PreviewStore):
    """Every picture made (one per frame), and the same frame rendered the way it was before: only the counted
    faces pixelated, to show the search below finds the faces the fix hides."""

    def __init__(self):
        super().__init__(every_seconds=0)
        self.served: list[bytes] = []
        self.counted_only: list[bytes] = []

    def offer(self, camera, pixels, boxes, classes, zones, hide=None):
        self.pictures.pop(camera, None)  # one picture per frame, faces or not
        super().offer(camera, pixels, boxes, classes, zones, hide)
        self.served.append(self.pictures[camera].jpeg)
        self.counted_only.append(render(pixels, boxes, classes, zones)[0])


def _faces_in(jpegs: list[bytes]) -> int:
    """Faces YuNet finds in the pictures (scales 1 and 2, any size from 8 px): each one a face in the clear."""
    oracle = YuNetDetector(min_score=0.5, min_face_px=8, scales=(1.0, 2.0), tile=0, full_every=1)
    return sum(
        len(oracle.detect(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), False)) for jpeg in jpegs
    )


def _pictures_of_the_clip(redis_url: str, detector: dict) -> RecordingStore:
    config = demo_config(port=0, loop=False, realtime=False)
    http = config.http.model_copy(update={"preview": True, "preview_port": 0})
    config = config.model_copy(
        update={"redis": RedisConfig(url=redis_url), "http": http, "detector": DetectorConfig(**detector)}
    )
    store = RecordingStore()

    async def scenario():
        server = Server(config, redis_url)
        server.preview = store
        await server.start()
        try:
            await asyncio.wait_for(server.cameras_done(), 300)
        finally:
            await server.stop()

    asyncio.run(scenario())
    return store


@pytest.mark.parametrize("detector", sorted(HOSTILE_DETECTORS))
def test_no_face_in_the_clear_in_any_setup_picture(redis_server, detector):
    store = _pictures_of_the_clip(redis_server.url, HOSTILE_DETECTORS[detector])
    assert len(store.served) >= 60  # every frame of the clip made a picture
    assert _faces_in(store.counted_only) > 0  # pixelating only the counted faces leaves faces in the clear
    assert _faces_in(store.served) == 0


def _raw_get(port: int, host: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET /api/preview HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply.split(b"\r\n", 1)[0]


def test_setup_view_answers_only_its_own_address_as_host():
    """A DNS-rebinding page reaches the loopback view under its own name, which the Host header carries."""

    async def scenario():
        web = PreviewWeb(PreviewStore())
        await web.start("127.0.0.1", 0)
        try:
            hosts = [f"127.0.0.1:{web.port}", "127.0.0.1", "evil.attacker.example", f"evil.example:{web.port}",
                     f"localhost:{web.port}", f"127.0.0.1:{web.port + 1}", ""]  # fmt: skip
            return [await asyncio.to_thread(_raw_get, web.port, host) for host in hosts]
        finally:
            await web.stop()

    statuses = [line.split(b" ")[1] for line in asyncio.run(scenario())]
    assert statuses == [b"200", b"200", b"421", b"421", b"421", b"421", b"421"]


@pytest.mark.parametrize(
    ("host", "bind", "allowed"),
    [
        ("[::1]:81", "::1", True),
        ("[::1]:82", "::1", False),
        ("10.0.0.7:81", "0.0.0.0", True),  # bound to all: any address of the machine
        ("camera-box.local:81", "0.0.0.0", False),  # never a name
        ("localhost:81", "localhost", True),
        ("127.0.0.1:81", "10.0.0.7", False),
    ],
)
def test_host_check_cases(host, bind, allowed):
    assert host_allowed(host, bind, 81) is allowed


def test_setup_view_beyond_loopback_is_warned_of(caplog):
    async def scenario():
        web = PreviewWeb(PreviewStore())
        await web.start("0.0.0.0", 0)
        await web.stop()

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert "setup view bound to 0.0.0.0, beyond this machine" in caplog.text


@pytest.mark.parametrize("kind", ["yunet", "blazeface"])
def test_candidates_find_the_faces_a_detector_drops_as_too_small(kind):
    """What the setup view pixelates besides the counted faces: with min_face_px 400 the detector counts none of the
    clip's faces, its whole-frame search finds every one it counts at the default size."""
    from detector import iou_matrix, make_detector
    from tests.test_page import _demo_frame_with_faces

    frame, counted, _ = _demo_frame_with_faces()
    detector = make_detector(DetectorConfig(kind=kind, min_face_px=400))
    try:
        assert len(detector.detect(frame, False)) == 0
        candidates = detector.candidates(frame)
    finally:
        detector.close()
    assert len(candidates) >= len(counted)
    assert (iou_matrix(counted, candidates).max(axis=1) > 0.4).all()
