"""Is anything moving? Frame differencing at low resolution, as Frigate does, so detection follows the crowd.

A camera's frame is shrunk to a grey copy 1/16 of its side (each cell the mean of 16x16 pixels: sensor noise
averages out, a face moving by a few pixels does not) and compared cell by cell with the copy of the frame last
examined, not the frame before: a slow change adds up until it counts. A frame in which no cell differs by more
than ``MOTION_LEVEL`` grey levels is still: its faces are where the last examination found them. Whatever the
motion, a camera's frames are examined again every ``REFRESH_FRAMES`` frames, so a face the detector missed once is
looked for again, and a person standing still is followed on a bounded schedule.

Costs about 0.3 ms of a core per 1280x720 frame (the area resize), against 6-31 ms for a YuNet pass.
"""

from __future__ import annotations

import cv2
import numpy as np

MOTION_SCALE = 16  # the grey copy used for frame differencing is 1/16 of the frame's side
MOTION_LEVEL = 8  # a grey cell (16x16 pixels averaged) differing by more than this has changed
REFRESH_FRAMES = 25  # a camera's frame (or a tile) is examined at least this often, motion or not (5 s at 5 fps)


def _cells(width: int, height: int) -> tuple[int, int]:
    """Cells across and down: whole 16x16 blocks (a strip under 16 px at the right and bottom edges is left out)."""
    return max(1, width // MOTION_SCALE), max(1, height // MOTION_SCALE)


def motion_grey(frame_bgr: np.ndarray) -> np.ndarray:
    """The frame's grey copy at 1/``MOTION_SCALE`` of its side, each cell the mean of one 16x16 block (int16, so
    differences do not wrap)."""
    height, width = frame_bgr.shape[:2]
    across, down = _cells(width, height)
    blocks = frame_bgr[: down * MOTION_SCALE, : across * MOTION_SCALE] if height >= 16 and width >= 16 else frame_bgr
    grey = cv2.cvtColor(cv2.resize(blocks, (across, down), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    return grey.astype(np.int16)


def reduced_motion_grey(reduced: np.ndarray | None, size: tuple[int, int]) -> np.ndarray | None:
    """:func:`motion_grey` of a frame of ``size`` (width, height) from its 1/8 grey decode (``Frame.reduced_grey``:
    each pixel an 8x8 block's mean luma), 2x2 of those per cell: within a grey level or two of the full decode's
    copy. None where there is no reduced decode."""
    if reduced is None:
        return None
    across, down = _cells(*size)
    if reduced.shape[0] >= 2 * down and reduced.shape[1] >= 2 * across:
        reduced = reduced[: 2 * down, : 2 * across]
    return cv2.resize(reduced, (across, down), interpolation=cv2.INTER_AREA).astype(np.int16)


def changed_cells(now: np.ndarray, then: np.ndarray) -> np.ndarray:
    """Per cell of two grey copies of the same size: has it changed?"""
    return np.abs(now - then) > MOTION_LEVEL


ROUND_CELLS = 8  # regions are whole multiples of 8 cells (128 pixels) where the frame allows
WHOLE_SHARE = 0.6  # changed regions covering more of the frame than this: the whole frame is examined instead


class MotionGate:
    """One camera's frames, in order: where each needs a detector pass (:meth:`regions`).

    The first frame, a frame of another size and every ``refresh_frames``-th frame are examined whole. Otherwise only
    the regions with a changed cell are, each grown by a margin (a face partly changed is examined whole), and a
    frame with none is still. Each cell's reference is its picture when it was last examined. ``whole``, ``partial``
    and ``still`` count the frames of each kind."""

    def __init__(self, refresh_frames: int = REFRESH_FRAMES):
        self.refresh_frames = max(1, refresh_frames)
        self._reference: np.ndarray | None = None
        self._since = 0  # frames since the last one examined whole
        self.whole = self.partial = self.still = 0

    def is_still(self, grey: np.ndarray) -> bool:
        """For a frame not yet decoded, judged on its grey copy (:func:`reduced_motion_grey`): True if it is still
        (counted as such, as :meth:`regions` would); False changes nothing, and the frame goes to :meth:`regions`."""
        if self._refresh_due(grey) or changed_cells(grey, self._reference).any():
            return False
        self._since += 1
        self.still += 1
        return True

    def _refresh_due(self, grey: np.ndarray) -> bool:
        reference = self._reference
        return reference is None or reference.shape != grey.shape or self._since + 1 >= self.refresh_frames

    def regions(self, frame_bgr: np.ndarray, margin_px: float = 64) -> np.ndarray | None:
        """None: examine the whole frame; else the xyxy regions (K, 4) of frame pixels to examine, none if the frame
        is still. The regions returned become the reference where they lie."""
        grey = motion_grey(frame_bgr)
        if self._refresh_due(grey):
            return self._examine_whole(grey)
        self._since += 1
        reference = self._reference
        changed = changed_cells(grey, reference)
        if not changed.any():
            self.still += 1
            return np.empty((0, 4), np.int64)
        grow = int(np.ceil(margin_px / MOTION_SCALE))
        grown = cv2.dilate(changed.astype(np.uint8), np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
        cells = _component_boxes(grown)
        cells[:, :2] = cells[:, :2] // ROUND_CELLS * ROUND_CELLS  # few sizes: onnxruntime plans each input size once
        cells[:, 2:] = np.minimum(-(-cells[:, 2:] // ROUND_CELLS) * ROUND_CELLS, grown.shape[::-1])
        cells = _merged_boxes(cells)
        if ((cells[:, 2] - cells[:, 0]) * (cells[:, 3] - cells[:, 1])).sum() > WHOLE_SHARE * grown.size:
            return self._examine_whole(grey)
        for x0, y0, x1, y1 in cells:
            reference[y0:y1, x0:x1] = grey[y0:y1, x0:x1]
        self.partial += 1
        height, width = frame_bgr.shape[:2]
        boxes = cells * MOTION_SCALE
        boxes[:, 2] = np.minimum(np.where(cells[:, 2] >= grey.shape[1], width, boxes[:, 2]), width)
        boxes[:, 3] = np.minimum(np.where(cells[:, 3] >= grey.shape[0], height, boxes[:, 3]), height)
        return boxes

    def examine(self, frame_bgr: np.ndarray) -> bool:
        """True if any of this frame needs a detector pass (whole-frame use: any change examines the whole frame)."""
        regions = self.regions(frame_bgr, margin_px=0)
        return regions is None or len(regions) > 0

    def _examine_whole(self, grey: np.ndarray) -> None:
        self._reference, self._since = grey, 0
        self.whole += 1
        return None

    def reset(self) -> None:
        """Forget the reference: the next frame is examined whole."""
        self._reference = None
        self._since = 0


def _component_boxes(mask: np.ndarray) -> np.ndarray:
    """Bounding boxes (K, 4) xyxy, in cells, of the connected parts of a 0/1 mask."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    x, y, w, h = (stats[1:, i].astype(np.int64) for i in range(4))
    return np.stack([x, y, x + w, y + h], axis=1) if count > 1 else np.empty((0, 4), np.int64)


def _merged_boxes(boxes: np.ndarray) -> np.ndarray:
    """Boxes that overlap merged into their common bounding box, until none overlap (nothing is examined twice)."""
    boxes = [list(box) for box in boxes]
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return np.array(boxes, np.int64).reshape(-1, 4)
