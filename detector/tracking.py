"""Faces followed across frames, so that people are counted once, not once per frame.

A small IoU tracker: detections are matched greedily to live tracks by box overlap; a track
is confirmed after ``min_hits`` matched frames and then counted once, with the class most of
its frames voted for; it ends after ``max_misses`` frames without a match. When the detector
examined only part of a frame (scheduled tiles), a track it could not have seen is held: no
hit, no miss. Track ids exist only inside this object: they never reach Redis, metrics or logs.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from detector.faces import Faces, iou_matrix
from detector.tiles import Coverage


@dataclass
class _Track:
    id: int
    box: np.ndarray
    zone: Hashable
    votes: Counter = field(default_factory=Counter)
    hits: int = 0
    misses: int = 0
    counted: bool = False

    @property
    def mask_class(self) -> Hashable:
        return self.votes.most_common(1)[0][0]


class FaceTracker:
    def __init__(self, min_hits: int = 3, max_misses: int = 3, min_iou: float = 0.3):
        self.min_hits = min_hits
        self.max_misses = max_misses
        self.min_iou = min_iou
        self._tracks: list[_Track] = []
        self._ids = itertools.count()

    def follow(self, faces: Faces) -> tuple[list[tuple[int, int]], Counter]:
        """:meth:`update` with a frame's classified, zoned faces (``class_ids``, ``zone_ids``); fills ``track_ids``.

        Returns (people confirmed now as (zone id, class id), faces in view by (zone id, class id))."""
        confirmed, visible, faces.track_ids = self._update(
            faces.boxes, faces.class_ids.tolist(), faces.zone_ids.tolist(), faces.coverage
        )
        return confirmed, visible

    def update(
        self,
        boxes: np.ndarray,
        classes: Sequence[Hashable],
        zones: Sequence[Hashable],
        coverage: Coverage | None = None,
    ) -> tuple[list[tuple[Hashable, Hashable]], Counter]:
        """Feed one frame's faces (each face's class and zone, as names or ids) and what the detector examined
        (None: everything).

        Returns (people confirmed now as (zone, class), faces in view by (zone, class))."""
        confirmed, visible, _ = self._update(boxes, classes, zones, coverage)
        return confirmed, visible

    def _update(self, boxes, classes, zones, coverage) -> tuple[list, Counter, np.ndarray]:
        track_ids = np.empty(len(boxes), np.int64)
        matched_tracks, matched_faces = self._match(boxes)
        for track_index, face_index in zip(matched_tracks, matched_faces):
            track = self._tracks[track_index]
            track_ids[face_index] = track.id
            track.box, track.zone = boxes[face_index], zones[face_index]
            track.votes[classes[face_index]] += 1
            track.hits += 1
            track.misses = 0
        unmatched = sorted(set(range(len(self._tracks))) - set(matched_tracks))
        looked = np.ones(len(unmatched), bool)
        if coverage is not None and unmatched:
            looked = coverage.covers(np.array([self._tracks[i].box for i in unmatched]))
        for track_index, seen_there in zip(unmatched, looked):
            self._tracks[track_index].misses += int(seen_there)
        for face_index in sorted(set(range(len(boxes))) - set(matched_faces)):
            votes = Counter([classes[face_index]])
            track = _Track(next(self._ids), boxes[face_index], zones[face_index], votes, hits=1)
            self._tracks.append(track)
            track_ids[face_index] = track.id
        self._tracks = [track for track in self._tracks if track.misses <= self.max_misses]
        confirmed = []
        for track in self._tracks:
            if not track.counted and track.hits >= self.min_hits:
                track.counted = True
                confirmed.append((track.zone, track.mask_class))
        visible = Counter((t.zone, t.mask_class) for t in self._tracks if t.counted and t.misses == 0)
        return confirmed, visible, track_ids

    def boxes(self) -> np.ndarray:
        """Boxes (N, 4) of every face being followed, counted or not, seen this frame or held while unseen."""
        return np.array([track.box for track in self._tracks], np.float32).reshape(-1, 4)

    def pending_boxes(self) -> np.ndarray:
        """Boxes (N, 4) of faces being followed but not yet counted: where the detector should look first."""
        pending = [track.box for track in self._tracks if not track.counted]
        return np.array(pending, np.float32).reshape(-1, 4)

    def _match(self, boxes: np.ndarray) -> tuple[list[int], list[int]]:
        if not self._tracks or not len(boxes):
            return [], []
        overlaps = iou_matrix(np.array([t.box for t in self._tracks]), boxes)
        tracks, faces = [], []
        for flat in np.argsort(-overlaps, axis=None):
            track_index, face_index = np.unravel_index(flat, overlaps.shape)
            if overlaps[track_index, face_index] < self.min_iou:
                break
            if track_index in tracks or face_index in faces:
                continue
            tracks.append(int(track_index))
            faces.append(int(face_index))
        return tracks, faces
