"""Value types at the detector seam, and the crop geometry shared by training and serving."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from detector.tiles import Coverage
from names import CROP_MARGIN, Framing  # noqa: F401 (CROP_MARGIN re-exported by detector)

CROP_SIZE = 32
# Boxes the detector draws around faces of one true size spread by about +-15 % (24 px faces in generated
# crowd frames: 20.5 to 32 px, most 21.5 to 27), so a face is dropped only below 85 % of min_face_px.
MIN_FACE_TOLERANCE = 0.85


FRAMING = Framing()  # today's: the square box + 20 %, centred on the detector's box


@dataclass
class Faces:
    """Faces found in one frame: boxes (N, 4) xyxy in pixels, scores (N,), RGB crops (N, 32, 32, 3), and
    what the detector examined to find them (None: the whole frame at every scale it covers).

    Filled step by step as the frame moves on, each an int array (N,) or None until its step has run:
    ``class_ids`` (indices into the classifier's classes), ``zone_ids`` (indices into the camera's zone labels),
    ``track_ids`` (the tracker's, never leaving the process)."""

    boxes: np.ndarray
    scores: np.ndarray
    crops: np.ndarray = field(default_factory=lambda: np.empty((0, CROP_SIZE, CROP_SIZE, 3), np.uint8))
    coverage: Coverage | None = None
    class_ids: np.ndarray | None = None
    zone_ids: np.ndarray | None = None
    track_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> Faces:
        return cls(np.empty((0, 4), np.float32), np.empty(0, np.float32))


def large_enough_faces(
    frame_bgr: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    min_face_px: float,
    with_crops: bool = True,
    coverage: Coverage | None = None,
    framing: Framing = FRAMING,
) -> Faces:
    """The detections (after merging) whose box is large enough for ``min_face_px``, cropped when asked."""
    sizes = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    big_enough = sizes >= min_face_px * MIN_FACE_TOLERANCE
    faces = Faces(boxes[big_enough].astype(np.float32), scores[big_enough].astype(np.float32), coverage=coverage)
    if with_crops and len(faces):
        faces.crops = crop_faces(frame_bgr, faces.boxes, framing)
    return faces


def square_boxes(boxes: np.ndarray, framing: Framing = FRAMING) -> np.ndarray:
    """Square boxes (xyxy) of side larger side * (1 + margin), centred on ``boxes`` moved down by ``drop`` * side."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    sides = (boxes[:, 2:] - boxes[:, :2]).max(axis=1, keepdims=True)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2 + np.float32(framing.drop) * sides * np.array([[0, 1]], np.float32)
    half = sides * (1 + framing.margin) / 2
    return np.concatenate([centres - half, centres + half], axis=1)


def crop_faces(image_bgr: np.ndarray, boxes: np.ndarray, framing: Framing = FRAMING) -> np.ndarray:
    """RGB uint8 (N, 32, 32, 3) crops of ``framing``'s squares; parts outside the image are edge-replicated."""
    squares = np.round(square_boxes(boxes, framing)).astype(np.int64)
    crops = np.empty((len(squares), CROP_SIZE, CROP_SIZE, 3), np.uint8)
    height, width = image_bgr.shape[:2]
    for index, (x1, y1, x2, y2) in enumerate(squares):
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        if x1 >= 0 and y1 >= 0 and x2 <= width and y2 <= height:
            patch = image_bgr[y1:y2, x1:x2]
        else:  # rows and columns outside the image repeat its edge (only the patch is copied, not the frame)
            rows, columns = np.clip(np.arange(y1, y2), 0, height - 1), np.clip(np.arange(x1, x2), 0, width - 1)
            patch = image_bgr[rows[:, None], columns]
        resized = cv2.resize(patch, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
        crops[index] = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    return crops


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of xyxy boxes: (len(a), len(b))."""
    a = np.asarray(a, np.float32).reshape(-1, 4)[:, None]
    b = np.asarray(b, np.float32).reshape(-1, 4)[None]
    inter_w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    inter_h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.4) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores)
    keep: list[int] = []
    overlaps = iou_matrix(boxes, boxes)
    suppressed = np.zeros(len(boxes), bool)
    for index in order:
        if suppressed[index]:
            continue
        keep.append(int(index))
        suppressed |= overlaps[index] > iou_threshold
    return np.array(keep, np.int64)
