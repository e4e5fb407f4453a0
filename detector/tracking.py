"""Faces followed across frames, so that people are counted once, not once per frame.

A small IoU tracker: detections are matched greedily to live tracks by box overlap, with the box where it was or
where it should be now, moving at its recent speed (so a frame dropped under load does not split a passer-by). A
track seen in ``min_hits`` frames is a person (a confirmed track); fewer, and it was a glimpse (a stray detection),
never counted. A person is counted once, with the class most of *all* their frames voted for (and the zone most of
them were in), when their track ends (``max_misses`` frames without a match) or, for someone who stays,
``decide_after`` frames after it began, whichever comes first; a camera that stops decides its people at once
(:meth:`FaceTracker.finish`). When the detector examined only part of a frame (scheduled tiles), a track it could
not have seen is held: no hit, no miss. Track ids exist only inside this object: they never reach Redis, metrics or
logs.
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
    votes: Counter = field(default_factory=Counter)  # class -> frames
    zones: Counter = field(default_factory=Counter)  # zone -> frames
    hits: int = 0
    misses: int = 0
    age: int = 1  # frames since it began, held ones included
    decided: bool = False
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))  # px per frame, smoothed
    seen_at: int = 1  # its age when last seen

    def predicted(self) -> np.ndarray:
        """Where the face should be now, moving as it has been."""
        step = self.velocity * (self.age - self.seen_at)
        return self.box + np.concatenate([step, step])

    @property
    def mask_class(self) -> Hashable:
        return self.votes.most_common(1)[0][0]

    @property
    def zone(self) -> Hashable:
        return self.zones.most_common(1)[0][0]

    def see(self, box: np.ndarray, mask_class: Hashable, zone: Hashable) -> None:
        if self.hits:
            moved = ((box[:2] + box[2:]) - (self.box[:2] + self.box[2:])) / 2 / max(1, self.age - self.seen_at)
            self.velocity = moved if self.hits == 1 else (self.velocity + moved) / 2
        self.seen_at = self.age
        self.box = box
        self.votes[mask_class] += 1
        self.zones[zone] += 1
        self.hits += 1
        self.misses = 0


class FaceTracker:
    """People from faces frame by frame; ``decide_after``: frames after which someone who stays is counted
    (None: only when they leave)."""

    def __init__(self, min_hits: int = 3, max_misses: int = 3, min_iou: float = 0.3, decide_after: int | None = None):
        self.min_hits = min_hits
        self.max_misses = max_misses
        self.min_iou = min_iou
        self.decide_after = decide_after
        self._tracks: list[_Track] = []
        self._ids = itertools.count()

    def follow(self, faces: Faces) -> tuple[list[tuple[int, int]], Counter]:
        """:meth:`update` with a frame's classified, zoned faces (``class_ids``, ``zone_ids``); fills ``track_ids``.

        Returns (people decided now as (zone id, class id), faces in view by (zone id, class id))."""
        decided, visible, faces.track_ids = self._update(
            faces.boxes, faces.class_ids.tolist(), faces.zone_ids.tolist(), faces.coverage
        )
        return decided, visible

    def update(
        self,
        boxes: np.ndarray,
        classes: Sequence[Hashable],
        zones: Sequence[Hashable],
        coverage: Coverage | None = None,
    ) -> tuple[list[tuple[Hashable, Hashable]], Counter]:
        """Feed one frame's faces (each face's class and zone, as names or ids) and what the detector examined
        (None: everything).

        Returns (people decided now as (zone, class), faces in view by (zone, class))."""
        decided, visible, _ = self._update(boxes, classes, zones, coverage)
        return decided, visible

    def finish(self) -> list[tuple[Hashable, Hashable]]:
        """The camera stops: every person still followed and not yet counted is decided now, and forgotten."""
        decided = [(t.zone, t.mask_class) for t in self._tracks if t.hits >= self.min_hits and not t.decided]
        self._tracks = []
        return decided

    def _update(self, boxes, classes, zones, coverage) -> tuple[list, Counter, np.ndarray]:
        track_ids = np.empty(len(boxes), np.int64)
        matched_tracks, matched_faces = self._match(boxes)
        for track_index, face_index in zip(matched_tracks, matched_faces):
            track = self._tracks[track_index]
            track_ids[face_index] = track.id
            track.see(boxes[face_index], classes[face_index], zones[face_index])
        unmatched = sorted(set(range(len(self._tracks))) - set(matched_tracks))
        looked = np.ones(len(unmatched), bool)
        if coverage is not None and unmatched:
            looked = coverage.covers(np.array([self._tracks[i].box for i in unmatched]))
        for track_index, seen_there in zip(unmatched, looked):
            self._tracks[track_index].misses += int(seen_there)
        for track in self._tracks:
            track.age += 1
        for face_index in sorted(set(range(len(boxes))) - set(matched_faces)):
            track = _Track(next(self._ids), boxes[face_index])
            track.see(boxes[face_index], classes[face_index], zones[face_index])
            self._tracks.append(track)
            track_ids[face_index] = track.id
        decided = self._decide()
        visible = Counter((t.zone, t.mask_class) for t in self._tracks if t.hits >= self.min_hits and t.misses == 0)
        return decided, visible, track_ids

    def _decide(self) -> list[tuple[Hashable, Hashable]]:
        """People whose track ended, or who have stayed ``decide_after`` frames, as (zone, class); ended tracks
        are dropped."""
        decided, live = [], []
        for track in self._tracks:
            ended = track.misses > self.max_misses
            stayed = self.decide_after is not None and track.age >= self.decide_after
            if track.hits >= self.min_hits and not track.decided and (ended or stayed):
                track.decided = True
                decided.append((track.zone, track.mask_class))
            if not ended:
                live.append(track)
        self._tracks = live
        return decided

    def boxes(self) -> np.ndarray:
        """Boxes (N, 4) of every face being followed, counted or not, seen this frame or held while unseen."""
        return np.array([track.box for track in self._tracks], np.float32).reshape(-1, 4)

    def pending_boxes(self) -> np.ndarray:
        """Boxes (N, 4) of faces being followed but not yet confirmed as people: where the detector should look
        first."""
        pending = [track.box for track in self._tracks if track.hits < self.min_hits]
        return np.array(pending, np.float32).reshape(-1, 4)

    def _match(self, boxes: np.ndarray) -> tuple[list[int], list[int]]:
        if not self._tracks or not len(boxes):
            return [], []
        # the overlap with where the face was or where it should be now: someone walking past is followed across
        # a frame dropped or sampled late (twice the step between frames), where the last box alone would lose them
        overlaps = np.maximum(
            iou_matrix(np.array([t.box for t in self._tracks]), boxes),
            iou_matrix(np.array([t.predicted() for t in self._tracks]), boxes),
        )
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
