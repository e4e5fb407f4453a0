"""Face detection with BlazeFace (bundled in mediapipe 0.10.21, runs offline), with tiling.

Large frames are cut into overlapping square tiles so that small faces reach the
size the full-range model sees; detections from the whole frame and the tiles are
merged by non-maximum suppression. ``detector/tiles.py`` decides which regions of
each frame run the model (still regions keep their faces; a per-frame tile budget).
"""

from __future__ import annotations

import cv2
import numpy as np

from detector.faces import FRAMING, Faces, Framing, large_enough_faces, nms
from detector.tiles import RegionScheduler, tile_grid

FULL_RANGE = 1
SHORT_RANGE = 0
AUTO_TILE_ABOVE = 960  # auto tiling: frames whose longer side exceeds this get square tiles of their shorter side


class BlazeFaceDetector:
    """Finds faces in the BGR frames of one camera. ``tile`` is a tile side in pixels, 0 for none, or None
    for auto; ``tiles_per_frame`` caps the tiles examined per frame (0: all); ``keep_still``: regions
    without motion since their last examination keep their faces instead of running the model."""

    def __init__(
        self,
        min_score: float = 0.5,
        min_face_px: int = 24,
        tile: int | None = None,
        model: int = FULL_RANGE,
        tiles_per_frame: int = 0,
        keep_still: bool = False,
        framing: Framing = FRAMING,
    ):
        import mediapipe as mp  # imported here: heavy, and only the detector needs it

        self._mp = mp.solutions.face_detection.FaceDetection(model_selection=model, min_detection_confidence=min_score)
        self.min_face_px = min_face_px
        self.tile = tile
        self.tiles_per_frame = tiles_per_frame
        self.keep_still = keep_still
        self.framing = framing
        self.inferences = 0
        self._schedulers: dict[int, RegionScheduler] = {}

    def close(self) -> None:
        self._mp.close()

    def detect(self, frame_bgr: np.ndarray, with_crops: bool = True, focus: np.ndarray | None = None) -> Faces:
        """Faces in the frame; ``focus``: boxes of faces not yet confirmed, whose tiles are examined first."""
        height, width = frame_bgr.shape[:2]
        scheduler = self._scheduler(width, height)
        plan = scheduler.plan(frame_bgr, focus)
        boxes, scores = [plan.kept_boxes], [plan.kept_scores]
        for region in plan.examine:
            x0, y0, x1, y1 = scheduler.region(region)
            found_boxes, found_scores = self._detect_region(frame_bgr[y0:y1, x0:x1], x0, y0)
            scheduler.record(region, found_boxes, found_scores)
            boxes.append(found_boxes)
            scores.append(found_scores)
        boxes, scores = np.concatenate(boxes), np.concatenate(scores)
        if len(boxes):
            keep = nms(boxes, scores)
            boxes, scores = boxes[keep], scores[keep]
        return large_enough_faces(frame_bgr, boxes, scores, self.min_face_px, with_crops, plan.coverage, self.framing)

    def candidates(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) of every face found in the whole frame (each tile of it when tiled), whatever its size: what
        the setup view pixelates besides the counted faces. Not counted, not cropped."""
        height, width = frame_bgr.shape[:2]
        side = self.tile_side(width, height)
        regions = tile_grid(width, height, side) if side and max(width, height) > side else [(0, 0, width, height)]
        found = [np.empty((0, 4), np.float32)]
        for x0, y0, x1, y1 in regions:
            found.append(self._detect_region(frame_bgr[y0:y1, x0:x1], int(x0), int(y0))[0])
        return np.concatenate(found)

    def detect_undecoded(self, motion_grey) -> None:
        """Every frame is decoded: BlazeFace's still regions are judged per tile (:mod:`detector.tiles`)."""
        return None

    def reset(self) -> None:
        """Forget what earlier frames showed (still regions, visits): the next frame is examined whole."""
        self._schedulers.clear()

    def tile_side(self, width: int, height: int) -> int:
        """The tile side used for frames of this size (0: no tiling)."""
        if self.tile is None:  # the model's input is square: two square tiles see a 16:9 frame 1.8x larger
            return min(width, height) if max(width, height) > AUTO_TILE_ABOVE else 0
        return self.tile

    def _scheduler(self, width: int, height: int) -> RegionScheduler:
        side = self.tile_side(width, height)
        if side not in self._schedulers:
            self._schedulers[side] = RegionScheduler(side, self.tiles_per_frame, self.keep_still)
        return self._schedulers[side]

    def _detect_region(self, region_bgr: np.ndarray, x0: int, y0: int) -> tuple[np.ndarray, np.ndarray]:
        height, width = region_bgr.shape[:2]
        self.inferences += 1
        result = self._mp.process(cv2.cvtColor(region_bgr, cv2.COLOR_BGR2RGB))
        boxes, scores = [], []
        for detection in result.detections or []:
            box = detection.location_data.relative_bounding_box
            x1, y1 = box.xmin * width + x0, box.ymin * height + y0
            boxes.append([x1, y1, x1 + box.width * width, y1 + box.height * height])
            scores.append(detection.score[0])
        return np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32)
