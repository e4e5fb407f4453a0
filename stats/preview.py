"""The setup view (``http.preview: true``, off by default): a recent frame of each camera with its face boxes,
classes and zones drawn, to aim a camera and check its zones.

Privacy: everything that may be a face is pixelated (:data:`PIXEL_BLOCKS` blocks across, the box grown by
:data:`MARGIN` on each side) as the picture is made, in the ingester process: the counted faces, every face the
tracker holds (also where this frame's pass did not look: tiles, reduced scales), and whatever the detector finds in
the whole frame at any size, down to a lower score (``hide``). Only that picture is kept (in this process's memory,
never in Redis) and served. A face the detector misses entirely is not pixelated (the docs say so): the view is
served on loopback unless configured otherwise, answers only requests whose ``Host`` is the address it is bound to
(no DNS rebinding), and pictures are scaled down to :data:`MAX_WIDTH`.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass

import cv2
import numpy as np
from aiohttp import web

from names import CLASS_COLOURS
from stats.listener import Listener
from stats.status import page_with_policy, status_json

log = logging.getLogger(__name__)
PIXEL_BLOCKS = 6  # blocks across a face region: a coarse mosaic, no features
MARGIN = 0.25  # of the box's side, on each side: hair, ears and chin go too
MAX_WIDTH = 960
EVERY_SECONDS = 1.0  # pictures made per camera at most once a second
HOLD_SECONDS = 30.0  # a picture with faces stays this long over later ones without (boxes to check zones against)
# The status page's and Grafana's class colours (names.CLASS_COLOURS), as OpenCV's blue, green, red.
CLASS_COLOURS_BGR = {name: tuple(int(hex_[i : i + 2], 16) for i in (5, 3, 1)) for name, hex_ in CLASS_COLOURS.items()}


def face_regions(boxes: np.ndarray, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Each face box (xyxy, pixels) grown by :data:`MARGIN` and clipped to the frame, as integer xyxy."""
    regions = []
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        grow_x, grow_y = (x2 - x1) * MARGIN, (y2 - y1) * MARGIN
        left, top = max(0, int(np.floor(x1 - grow_x))), max(0, int(np.floor(y1 - grow_y)))
        right, bottom = min(width, int(np.ceil(x2 + grow_x))), min(height, int(np.ceil(y2 + grow_y)))
        if right > left and bottom > top:
            regions.append((left, top, right, bottom))
    return regions


def pixelate_faces(pixels: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """A copy of ``pixels`` with every face region replaced by a mosaic of at most :data:`PIXEL_BLOCKS` blocks
    across (each block its region's mean colour)."""
    out = pixels.copy()
    height, width = out.shape[:2]
    for left, top, right, bottom in face_regions(boxes, width, height):
        region = out[top:bottom, left:right]
        side = max(right - left, bottom - top)
        blocks_x = max(1, round(PIXEL_BLOCKS * (right - left) / side))
        blocks_y = max(1, round(PIXEL_BLOCKS * (bottom - top) / side))
        small = cv2.resize(region, (blocks_x, blocks_y), interpolation=cv2.INTER_AREA)
        out[top:bottom, left:right] = cv2.resize(small, (right - left, bottom - top), interpolation=cv2.INTER_NEAREST)
    return out


def render(
    pixels: np.ndarray, boxes: np.ndarray, classes: list[str], zones: dict | None, hide: np.ndarray | None = None
) -> tuple[bytes, float]:
    """The setup picture (JPEG) and its scale: faces (``boxes``, and ``hide``: possible faces not counted)
    pixelated first, then scaled down, zones and the counted faces' boxes drawn."""
    hide = np.empty((0, 4)) if hide is None else hide
    every = np.concatenate([np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(hide, np.float64).reshape(-1, 4)])
    picture = pixelate_faces(pixels, every)
    height, width = picture.shape[:2]
    scale = min(1.0, MAX_WIDTH / width)
    if scale < 1:
        picture = cv2.resize(picture, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    height, width = picture.shape[:2]
    for name, points in (zones or {}).items():
        polygon = np.array([[x * width, y * height] for x, y in points], np.int32)
        cv2.polylines(picture, [polygon], True, (255, 255, 0), 2)
        cv2.putText(picture, name, tuple(polygon[0] + [4, 16]), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1)
    for (x1, y1, x2, y2), name in zip(np.asarray(boxes).reshape(-1, 4) * scale, classes):
        colour = CLASS_COLOURS_BGR.get(name, (255, 255, 255))
        cv2.rectangle(picture, (int(x1), int(y1)), (int(x2), int(y2)), colour, 2)
        cv2.putText(picture, name, (int(x1), max(12, int(y1) - 5)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 2)
    ok, jpeg = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return jpeg.tobytes(), scale


@dataclass(frozen=True)
class Picture:
    taken: float
    jpeg: bytes
    width: int
    height: int
    faces: list[dict]  # {"box": [x1, y1, x2, y2] relative to the frame, "class": name}
    zones: dict


class PreviewStore:
    """The latest setup picture of each camera, made from frames the pipeline offers (at most once a second); the
    latest with faces is kept over later ones without for :data:`HOLD_SECONDS`, so boxes stay to check zones by."""

    def __init__(self, every_seconds: float = EVERY_SECONDS):
        self.every_seconds = every_seconds
        self.pictures: dict[str, Picture] = {}
        self._last: dict[str, float] = {}

    def wants(self, camera: str) -> bool:
        return time.monotonic() - self._last.get(camera, -1e9) >= self.every_seconds

    def offer(
        self,
        camera: str,
        pixels: np.ndarray,
        boxes: np.ndarray,
        classes: list[str],
        zones: dict | None,
        hide: np.ndarray | None = None,
    ):
        """Make the camera's picture from this frame if one is due (the frame itself is not kept); ``hide``:
        boxes of possible faces pixelated besides the counted ones (``boxes``)."""
        if not self.wants(camera):
            return
        held = self.pictures.get(camera)
        if not len(boxes) and held is not None and held.faces and time.time() - held.taken < HOLD_SECONDS:
            return
        self._last[camera] = time.monotonic()
        height, width = pixels.shape[:2]
        jpeg, _ = render(pixels, boxes, classes, zones, hide)
        relative = np.asarray(boxes, np.float64).reshape(-1, 4) / [width, height, width, height]
        faces = [{"box": [round(float(v), 4) for v in box], "class": name} for box, name in zip(relative, classes)]
        self.pictures[camera] = Picture(time.time(), jpeg, width, height, faces, dict(zones or {}))

    def forget(self, camera: str) -> None:
        self.pictures.pop(camera, None)


SETUP_PAGE, SETUP_SCRIPT, SETUP_POLICY = page_with_policy("setup.html", "setup.js")


def is_loopback(bind: str) -> bool:
    """Whether ``bind`` (an address or ``localhost``) is this machine only."""
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


def host_allowed(host: str, bind: str, port: int) -> bool:
    """A ``Host`` header that names the address the view is bound to (any IP address when it is bound to all):
    never a DNS name, which a rebinding page would carry."""
    name, _, given_port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not name:  # no port given
        name, given_port = host, ""
    if given_port and given_port != str(port):
        return False
    name = name.removeprefix("[").removesuffix("]")
    if name == bind or (bind == "localhost" and name in ("localhost", "127.0.0.1", "::1")):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return bind in ("0.0.0.0", "::", "") and address is not None


class PreviewWeb:
    """The setup view on a listener of its own (``http.preview_bind``, loopback by default)."""

    def __init__(self, store: PreviewStore):
        self.store = store
        self.listener = Listener()
        self.bind = "127.0.0.1"

    async def start(self, bind: str, port: int) -> None:
        if not is_loopback(bind):
            log.warning(
                "setup view bound to %s, beyond this machine: anyone who reaches it sees the camera pictures (faces "
                "pixelated, a missed face not)",
                bind,
            )
        self.bind = bind
        app = web.Application(middlewares=[self._host_check])
        app.router.add_get("/", self._page)
        app.router.add_get("/api/preview", self._list)
        app.router.add_get("/preview/{camera}.jpg", self._picture)
        await self.listener.start(app, bind, port)

    @property
    def port(self) -> int:
        return self.listener.port

    @web.middleware
    async def _host_check(self, request: web.Request, handler):
        """Only requests naming the bound address (and port) as their ``Host``: a page from a name that resolves
        to this address (DNS rebinding) carries its own name and is refused."""
        if not host_allowed(request.headers.get("Host", ""), self.bind, self.port):
            return web.Response(status=421, text="Host not accepted: use the address the setup view is bound to\n")
        return await handler(request)

    async def stop(self) -> None:
        await self.listener.stop()

    async def _page(self, request: web.Request) -> web.Response:
        headers = {"Content-Security-Policy": SETUP_POLICY, "X-Content-Type-Options": "nosniff"}
        return web.Response(text=SETUP_PAGE, content_type="text/html", headers=headers)

    async def _list(self, request: web.Request) -> web.Response:
        cameras = {
            name: {"taken": round(p.taken, 3), "width": p.width, "height": p.height, "faces": p.faces, "zones": p.zones}
            for name, p in sorted(self.store.pictures.items())
        }
        return web.Response(text=status_json({"cameras": cameras}), content_type="application/json")

    async def _picture(self, request: web.Request) -> web.Response:
        picture = self.store.pictures.get(request.match_info["camera"])
        if picture is None:
            return web.Response(status=404, text="no picture of that camera (yet)\n")
        headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
        return web.Response(body=picture.jpeg, content_type="image/jpeg", headers=headers)
