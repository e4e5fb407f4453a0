"""Zones: named polygons in relative frame coordinates; each face belongs to the first that holds its centre."""

from __future__ import annotations

import numpy as np

NO_ZONES = "all"  # the zone label when a camera has no zones
OUTSIDE = "outside"  # faces outside every configured zone


class Zones:
    def __init__(self, polygons: dict[str, list[list[float]]] | None):
        self.names = list(polygons or {})
        self.polygons = [np.asarray(points, np.float64) for points in (polygons or {}).values()]

    @property
    def labels(self) -> list[str]:
        """Every zone label this camera can report (a bounded set)."""
        return [*self.names, OUTSIDE] if self.names else [NO_ZONES]

    def of_boxes(self, boxes: np.ndarray, width: int, height: int) -> list[str]:
        """The zone label of each xyxy box (by its centre)."""
        labels = self.labels
        return [labels[index] for index in self.indices_of_boxes(boxes, width, height)]

    def indices_of_boxes(self, boxes: np.ndarray, width: int, height: int) -> np.ndarray:
        """The zone of each xyxy box (by its centre), as an index into :attr:`labels`: int64 (N,)."""
        zone_ids = np.full(len(boxes), len(self.names), np.int64)  # OUTSIDE, or NO_ZONES (index 0) without zones
        if not self.names:
            return zone_ids
        centres = (np.asarray(boxes, np.float64)[:, :2] + np.asarray(boxes, np.float64)[:, 2:]) / 2
        centres = centres / [width, height]
        for index in reversed(range(len(self.names))):  # first zone wins
            zone_ids[inside(centres, self.polygons[index])] = index
        return zone_ids


def inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd ray casting: which of the (N, 2) points lie inside the polygon (M, 2)."""
    x, y = points[:, 0][:, None], points[:, 1][:, None]
    x1, y1 = polygon[:, 0][None], polygon[:, 1][None]
    x2, y2 = np.roll(polygon[:, 0], -1)[None], np.roll(polygon[:, 1], -1)[None]
    crosses = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        at_x = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    return (crosses & (x < at_x)).sum(axis=1) % 2 == 1


def self_intersecting(points) -> bool:
    """Whether two edges of the polygon cross (a bow-tie): its inside is ambiguous, so a face's zone would be too.
    Edges that only meet at a shared corner do not count. Vectorised over every pair of edges."""
    corners = np.asarray(points, np.float64).reshape(-1, 2)
    if len(corners) < 4:
        return False
    a, b = corners[:, None], np.roll(corners, -1, axis=0)[:, None]  # edge i: a -> b
    c, d = a.transpose(1, 0, 2), b.transpose(1, 0, 2)  # edge j: c -> d
    crosses = (_turn(a, b, c) * _turn(a, b, d) < 0) & (_turn(c, d, a) * _turn(c, d, b) < 0)
    return bool(crosses.any())


def _turn(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Sign of the turn a -> b -> c (+1 left, -1 right, 0 straight), broadcast over pairs of edges."""
    return np.sign(
        (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])
    )
