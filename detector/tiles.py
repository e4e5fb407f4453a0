"""Which parts of a frame the detector examines: the whole frame and overlapping tiles, scheduled.

Each region (the whole frame, each tile) costs one inference, about 4 ms of CPU for BlazeFace
whatever its size. Two things keep that affordable for many cameras:

- Still regions: a region whose picture has not changed since its last examination (frame
  differencing on a grey copy 1/16 of the frame's side, :mod:`detector.motion`) keeps the faces found there last time
  instead of running the detector again; its faces are re-cut and re-classified from the new frame.
- A budget (``tiles_per_frame``): at most that many tiles are examined per frame. Tiles holding a
  face not yet confirmed go first (newcomers are confirmed quickly), then tiles unvisited for
  ``REFRESH_FRAMES``, then changed tiles, longest unvisited first. A changed tile left out this
  frame is not accounted for: the tracker holds the faces there rather than ageing them
  (:class:`Coverage`).

With tiles, the whole-frame pass (for faces too large for a tile) runs every ``WHOLE_EVERY``
frames at most. Every region is examined again after ``REFRESH_FRAMES`` frames whatever the motion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.motion import MOTION_SCALE, REFRESH_FRAMES, changed_cells, motion_grey

WHOLE_EVERY = 3  # with tiles, the whole-frame pass (for faces too large for a tile) runs at most every 3rd frame
WHOLE = -1  # region index of the whole frame


def tile_grid(width: int, height: int, side: int, overlap: float = 0.2) -> np.ndarray:
    """Square tiles (K, 4) xyxy of ``side`` pixels spread evenly over the frame, neighbours overlapping by at
    least ``overlap`` of a side; none if the frame fits in one tile."""
    if not side or max(width, height) <= side:
        return np.empty((0, 4), np.int64)
    shared = side * overlap

    def starts(length: int) -> np.ndarray:
        if length <= side:
            return np.zeros(1, np.int64)
        count = int(np.ceil((length - shared) / (side - shared)))
        return np.round(np.linspace(0, length - side, count)).astype(np.int64)

    return np.array(
        [(x, y, min(x + side, width), min(y + side, height)) for y in starts(height) for x in starts(width)], np.int64
    )


def centred_in(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(N boxes, K regions): the box's centre lies within the region."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    centres = ((boxes[:, :2] + boxes[:, 2:]) / 2)[:, None]
    regions = np.asarray(regions, np.float32).reshape(1, -1, 4)
    return (
        (centres[..., 0] >= regions[..., 0])
        & (centres[..., 1] >= regions[..., 1])
        & (centres[..., 0] < regions[..., 2])
        & (centres[..., 1] < regions[..., 3])
    )


@dataclass
class Coverage:
    """What a frame's faces account for: the tiles examined or still, and the smallest face the whole-frame
    pass finds (``inf`` when it did not run). A frame's coverage of ``None`` means everything."""

    tiles: np.ndarray
    whole_frame_min_px: float

    def covers(self, boxes: np.ndarray) -> np.ndarray:
        """Per xyxy box: would a face there have been found this frame (large enough for the whole-frame pass,
        or centred in an accounted tile)? Every point lies in some tile, so each face is looked at again."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        large = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= self.whole_frame_min_px
        return large | centred_in(boxes, self.tiles).any(axis=1)


@dataclass
class Plan:
    """One frame's schedule: regions to examine (``WHOLE`` or tile indices), faces kept from still regions,
    and the coverage of the frame's result."""

    examine: list[int]
    kept_boxes: np.ndarray
    kept_scores: np.ndarray
    coverage: Coverage | None = None


class RegionScheduler:
    """Plans each frame of one camera: ``side``-pixel tiles (0: none), at most ``budget`` tiles examined
    per frame (0: no limit), still regions kept when ``keep_still``."""

    def __init__(self, side: int, budget: int = 0, keep_still: bool = True, whole_frame_reliable: float = 1 / 6):
        self.side = side
        self.budget = budget
        self.keep_still = keep_still
        self.whole_frame_reliable = whole_frame_reliable
        self._size: tuple[int, int] | None = None
        self._frame = 0

    @property
    def tiles(self) -> np.ndarray:
        """Every tile (K, 4) of the current frame size."""
        return self._tiles

    def plan(self, frame_bgr: np.ndarray, focus: np.ndarray | None = None) -> Plan:
        height, width = frame_bgr.shape[:2]
        if self._size != (width, height):
            self._reset(width, height)
        self._frame += 1
        grey = motion_grey(frame_bgr)
        changed = self._changed(grey)
        stale = self._frame - self._visited >= REFRESH_FRAMES
        still = ~changed & ~stale if self.keep_still else np.zeros_like(changed)
        due = ~still
        if len(self._tiles) and self._frame - self._visited[0] < WHOLE_EVERY:
            due[0] = False  # tracks too large for the tiles are held until the whole-frame pass runs again
        tiles_due = np.flatnonzero(due[1:])
        if self.budget and len(tiles_due) > self.budget:
            tiles_due = self._most_needed(tiles_due, changed[1:], focus)
        examine = ([WHOLE] if due[0] else []) + [int(t) for t in tiles_due]
        for index in examine:
            self._reference[index + 1] = grey
            self._visited[index + 1] = self._frame
        accounted = still.copy()
        accounted[[index + 1 for index in examine]] = True
        boxes, scores = self._kept_faces(np.flatnonzero(still))
        return Plan(examine, boxes, scores, self._coverage(accounted, width, height))

    def region(self, index: int) -> tuple[int, int, int, int]:
        """The xyxy box of region ``index`` (``WHOLE`` or a tile index)."""
        x0, y0, x1, y1 = self._regions[index + 1]
        return int(x0), int(y0), int(x1), int(y1)

    def record(self, region: int, boxes: np.ndarray, scores: np.ndarray) -> None:
        """The faces (frame coordinates) the detector found in ``region`` this frame."""
        self._faces[region + 1] = (boxes, scores)

    def _reset(self, width: int, height: int) -> None:
        self._size = (width, height)
        self._tiles = tile_grid(width, height, self.side)
        self._regions = np.concatenate([[[0, 0, width, height]], self._tiles]).astype(np.int64)
        count = len(self._regions)
        self._visited = np.full(count, -(10**9), np.int64)
        self._reference: list[np.ndarray | None] = [None] * count
        empty = (np.empty((0, 4), np.float32), np.empty(0, np.float32))
        self._faces = [empty] * count

    def _changed(self, grey: np.ndarray) -> np.ndarray:
        """Per region: has any of its cells changed since the region was last examined?"""
        changed = np.ones(len(self._regions), bool)
        for index, (x0, y0, x1, y1) in enumerate(self._regions // MOTION_SCALE):
            reference = self._reference[index]
            if reference is None:
                continue
            now, then = grey[y0 : y1 + 1, x0 : x1 + 1], reference[y0 : y1 + 1, x0 : x1 + 1]
            changed[index] = bool(changed_cells(now, then).any())
        return changed

    def _most_needed(self, tiles: np.ndarray, changed: np.ndarray, focus: np.ndarray | None) -> np.ndarray:
        staleness = self._frame - self._visited[1:][tiles]
        wanted = np.zeros(len(tiles), bool)
        if focus is not None and len(focus):
            wanted = centred_in(focus, self._tiles[tiles]).any(axis=0)
        overdue = staleness >= REFRESH_FRAMES
        order = np.lexsort((-staleness, ~changed[tiles], ~overdue, ~wanted))
        return np.sort(tiles[order[: self.budget]])

    def _kept_faces(self, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes = [self._faces[index][0] for index in kept]
        scores = [self._faces[index][1] for index in kept]
        if not boxes:
            return np.empty((0, 4), np.float32), np.empty(0, np.float32)
        return np.concatenate(boxes), np.concatenate(scores)

    def _coverage(self, accounted: np.ndarray, width: int, height: int) -> Coverage | None:
        if accounted.all():
            return None
        whole_min = self.whole_frame_reliable * max(width, height) if accounted[0] else np.inf
        return Coverage(self._tiles[accounted[1:]], whole_min)
