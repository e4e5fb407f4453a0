"""Face detection with libfacedetection's YuNet (the ``yuface`` wheel: BSD 3-clause, runs offline), at one or
more image scales.

On real scenes it finds masked faces BlazeFace misses (``binarycop eval-scenes``, held-out scenes, faces
>= 24 px: 91.7 % at scale 1 and 95.3 % at scales 1 and 2; BlazeFace with the server's settings 57.8 %, and
50 % of the correctly masked faces), at about 4x BlazeFace's CPU per 640x360 frame at scale 1
(``binarycop bench slice --detector yuface``); scale 0.5 costs what BlazeFace does. Upscaling (scale 2)
finds faces down to about 10 px at 4x the cost of scale 1.

The wheel's ``c_detect`` holds Python's GIL while it runs (tens to hundreds of milliseconds per frame),
which would stall the server's event loop and every other camera. So the server's detectors
(``worker_process=True``) run it in a process of their own, one per camera; still-image tools call it directly.

Its boxes are framed differently from BlazeFace's (narrower, and taller towards the forehead); they are
mapped onto BlazeFace's framing, so a 32x32 crop looks the same to the classifier whichever detector cut it.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import cv2
import numpy as np

from detector.faces import Faces, large_enough_faces, nms
from detector.yunet import raw_detect

# Median yuface box against BlazeFace's on the same face (562 faces, both detectors, real photos and
# MaskedFace-Net): width 0.903 and height 1.161 of BlazeFace's, centre 0.0105 widths left and 0.0645 heights
# above it. ``to_blazeface_framing`` undoes that.
WIDTH_RATIO, HEIGHT_RATIO = 0.903, 1.161
CENTRE_SHIFT_X, CENTRE_SHIFT_Y = -0.0105, -0.0645


def to_blazeface_framing(boxes: np.ndarray) -> np.ndarray:
    """yuface boxes (N, 4) xyxy re-framed the way BlazeFace frames the same faces."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    width = (boxes[:, 2] - boxes[:, 0]) / WIDTH_RATIO
    height = (boxes[:, 3] - boxes[:, 1]) / HEIGHT_RATIO
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2 - CENTRE_SHIFT_X * width
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2 - CENTRE_SHIFT_Y * height
    return np.stack([centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2], 1)


class YuFaceDetector:
    """Finds faces in BGR frames with YuNet at each of ``scales`` (1: the frame as it is, 2: upscaled twice);
    with ``worker_process``, YuNet runs in a child process so the GIL stays free for the caller's threads."""

    def __init__(
        self,
        min_score: float = 0.5,
        min_face_px: int = 24,
        scales: tuple[float, ...] = (1.0,),
        worker_process: bool = False,
    ):
        import yuface  # noqa: F401 - fail here, not in the first frame, when the wheel is missing

        if not scales or any(not 0.25 <= scale <= 4 for scale in scales):
            raise ValueError(f"yuface scales {list(scales)}: expected one or more factors between 0.25 and 4")
        self.min_score = min_score
        self.min_face_px = min_face_px
        self.scales = tuple(float(scale) for scale in scales)
        self.inferences = 0
        self.worker_process = worker_process
        self._pool: ProcessPoolExecutor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _run(self, image: np.ndarray) -> np.ndarray:
        if not self.worker_process:
            return raw_detect(image)
        if self._pool is None:  # spawn: a fork of a threaded server could inherit held locks
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        try:
            return self._pool.submit(raw_detect, image).result()
        except BrokenProcessPool:
            self._pool = None  # the worker died (killed, out of memory): this frame fails, the next starts a new one
            raise RuntimeError("yuface worker process died") from None

    def detect(self, frame_bgr: np.ndarray, with_crops: bool = True, focus: np.ndarray | None = None) -> Faces:
        """Faces in the frame (``focus`` is accepted for the detector interface; every scale sees the whole frame)."""
        boxes, scores = [], []
        for scale in self.scales:
            found_boxes, found_scores = self._detect_scaled(frame_bgr, scale)
            boxes.append(found_boxes)
            scores.append(found_scores)
        boxes, scores = np.concatenate(boxes), np.concatenate(scores)
        if len(boxes):
            keep = nms(boxes, scores)
            boxes, scores = to_blazeface_framing(boxes[keep]), scores[keep]
        return large_enough_faces(frame_bgr, boxes, scores, self.min_face_px, with_crops)

    def _detect_scaled(self, frame_bgr: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
        image = frame_bgr
        if scale != 1:
            image = cv2.resize(frame_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        self.inferences += 1
        # rows: confidence (percent), x, y, w, h, five landmarks (int16)
        result = self._run(np.ascontiguousarray(image))
        result = result[result[:, 0] >= self.min_score * 100]
        boxes = result[:, 1:5].copy()
        boxes[:, 2:] += boxes[:, :2]
        return boxes / scale, result[:, 0] / 100
