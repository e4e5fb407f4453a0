"""Face detection with BlazeFace (bundled in mediapipe 0.10.21, runs offline), with tiling.

Large frames are cut into overlapping tiles so that small faces reach the size
the full-range model sees; detections from the whole frame and the tiles are
merged by non-maximum suppression.
"""

from __future__ import annotations

import cv2
import numpy as np

from detector.faces import Faces, crop_faces, nms

FULL_RANGE = 1
SHORT_RANGE = 0


class BlazeFaceDetector:
    """Finds faces in BGR frames. ``tile`` is a tile side in pixels, 0 for none, or None for auto."""

    def __init__(
        self,
        min_score: float = 0.5,
        min_face_px: int = 24,
        tile: int | None = None,
        model: int = FULL_RANGE,
    ):
        import mediapipe as mp  # imported here: heavy, and only the detector needs it

        self._mp = mp.solutions.face_detection.FaceDetection(model_selection=model, min_detection_confidence=min_score)
        self.min_face_px = min_face_px
        self.tile = tile

    def close(self) -> None:
        self._mp.close()

    def detect(self, frame_bgr: np.ndarray, with_crops: bool = True) -> Faces:
        boxes, scores = self._detect_region(frame_bgr, 0, 0)
        for x0, y0, x1, y1 in self._tiles(frame_bgr.shape[1], frame_bgr.shape[0]):
            tile_boxes, tile_scores = self._detect_region(frame_bgr[y0:y1, x0:x1], x0, y0)
            boxes = np.concatenate([boxes, tile_boxes])
            scores = np.concatenate([scores, tile_scores])
        if len(boxes):
            keep = nms(boxes, scores)
            boxes, scores = boxes[keep], scores[keep]
            sizes = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
            big_enough = sizes >= self.min_face_px
            boxes, scores = boxes[big_enough], scores[big_enough]
        faces = Faces(boxes.astype(np.float32), scores.astype(np.float32))
        if with_crops and len(faces):
            faces.crops = crop_faces(frame_bgr, faces.boxes)
        return faces

    def _tiles(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        side = self.tile
        if side is None:  # auto: tile only frames much larger than the model's comfortable input
            side = 640 if max(width, height) > 960 else 0
        if not side or max(width, height) <= side:
            return []
        step = int(side * 0.75)
        xs = list(range(0, max(width - side, 0) + 1, step)) or [0]
        ys = list(range(0, max(height - side, 0) + 1, step)) or [0]
        if xs[-1] + side < width:
            xs.append(width - side)
        if ys[-1] + side < height:
            ys.append(height - side)
        return [(x, y, min(x + side, width), min(y + side, height)) for y in ys for x in xs]

    def _detect_region(self, region_bgr: np.ndarray, x0: int, y0: int) -> tuple[np.ndarray, np.ndarray]:
        height, width = region_bgr.shape[:2]
        result = self._mp.process(cv2.cvtColor(region_bgr, cv2.COLOR_BGR2RGB))
        boxes, scores = [], []
        for detection in result.detections or []:
            box = detection.location_data.relative_bounding_box
            x1, y1 = box.xmin * width + x0, box.ymin * height + y0
            boxes.append([x1, y1, x1 + box.width * width, y1 + box.height * height])
            scores.append(detection.score[0])
        return np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32)
