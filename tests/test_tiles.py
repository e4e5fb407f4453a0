"""Tile layout and the per-frame region schedule (still regions kept, tile budget, coverage for the tracker)."""

from __future__ import annotations

import numpy as np
import pytest

from detector.tiles import REFRESH_FRAMES, WHOLE, WHOLE_EVERY, Coverage, RegionScheduler, tile_grid
from detector.tracking import FaceTracker


@pytest.mark.parametrize(
    "width, height, side, count",
    [(1280, 720, 720, 2), (1920, 1080, 1080, 2), (1280, 720, 640, 6), (1920, 1080, 320, 32), (640, 360, 640, 0)],
)
def test_tiles_cover_the_frame_evenly_with_overlap(width, height, side, count):
    tiles = tile_grid(width, height, side)
    assert len(tiles) == count
    if not count:
        return
    covered = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in tiles:
        assert x1 - x0 == side and y1 - y0 == min(side, height)
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    xs = np.unique(tiles[:, 0])
    assert (np.diff(xs) <= side * 0.8 + 1).all()  # neighbours overlap by at least a fifth of a side


def _frame(changed_patch: tuple[int, int] | None = None) -> np.ndarray:
    frame = np.full((720, 1280, 3), 100, np.uint8)
    if changed_patch is not None:
        x, y = changed_patch
        frame[y : y + 64, x : x + 64] = 250
    return frame


def test_still_regions_keep_their_faces_and_changed_ones_run_again():
    scheduler = RegionScheduler(side=720, keep_still=True)
    first = scheduler.plan(_frame())
    assert first.examine == [WHOLE, 0, 1] and first.coverage is None
    face = np.array([[100, 100, 160, 160]], np.float32)
    scheduler.record(0, face, np.array([0.9], np.float32))
    still = scheduler.plan(_frame())
    assert still.examine == [] and still.coverage is None  # nothing moved: nothing runs, everything accounted
    np.testing.assert_array_equal(still.kept_boxes, face)
    moved = scheduler.plan(_frame(changed_patch=(1100, 300)))  # only the right tile changes
    assert moved.examine == [1]  # the whole-frame pass waits for its turn (every WHOLE_EVERY frames)
    np.testing.assert_array_equal(moved.kept_boxes, face)  # the left tile is still: its face is kept
    assert moved.coverage is not None and moved.coverage.whole_frame_min_px == np.inf
    big = np.array([[300, 100, 700, 500]], np.float32)  # too large for a tile, centred in the left one only
    assert moved.coverage.covers(np.concatenate([face, big])).tolist() == [True, True]
    later = [scheduler.plan(_frame(changed_patch=(1100, 300 + 8 * step))).examine for step in range(WHOLE_EVERY)]
    runs = [3 + step + 1 for step, examined in enumerate(later) if WHOLE in examined]  # frame numbers, from 1
    assert runs == [1 + WHOLE_EVERY]  # WHOLE_EVERY frames after its first run, not before, not twice


def test_every_region_is_looked_at_again_after_the_refresh_period():
    scheduler = RegionScheduler(side=720, keep_still=True)
    examined = [scheduler.plan(_frame()).examine for _ in range(REFRESH_FRAMES + 1)]
    assert examined[0] == [WHOLE, 0, 1] and examined[1:-1] == [[]] * (REFRESH_FRAMES - 1)
    assert examined[-1] == [WHOLE, 0, 1]


def test_tile_budget_serves_unconfirmed_faces_first_then_the_longest_unvisited():
    scheduler = RegionScheduler(side=320, budget=2, keep_still=False)  # 1280x720: 15 tiles
    frame = _frame()
    plan = scheduler.plan(frame)
    assert len(plan.examine) == 3 and plan.examine[0] == WHOLE
    tiles = scheduler.tiles
    target = len(tiles) - 1
    x0, y0, x1, y1 = tiles[target]
    focus = np.array([[x1 - 40, y1 - 40, x1 - 10, y1 - 10]], np.float32)  # a new face in the last tile only
    seen = set(plan.examine[1:])
    for _ in range(len(tiles)):
        plan = scheduler.plan(frame, focus)
        assert target in plan.examine  # the unconfirmed face's tile every frame
        seen.update(plan.examine)
    assert seen >= set(range(len(tiles)))  # the other slot goes round every tile
    assert plan.coverage is not None  # tiles were left out: the tracker must know which
    assert (plan.coverage.whole_frame_min_px == np.inf) == (WHOLE not in plan.examine)


def test_tracker_holds_faces_the_detector_did_not_look_at():
    tracker = FaceTracker(min_hits=2, max_misses=1)
    left, right = np.array([10, 10, 50, 50], np.float32), np.array([900, 10, 940, 50], np.float32)
    only_left = Coverage(np.array([[0, 0, 720, 720]]), whole_frame_min_px=np.inf)
    tracker.update(np.stack([left, right]), ["nose", "chin"], ["all", "all"])
    confirmed, visible = tracker.update(np.stack([left, right]), ["nose", "chin"], ["all", "all"])
    assert confirmed == [] and visible == {("all", "nose"): 1, ("all", "chin"): 1}  # both followed, not gone
    for _ in range(5):  # the right face's tile is not examined: it is held, not aged out
        confirmed, visible = tracker.update(left[None], ["nose"], ["all"], only_left)
        assert confirmed == [] and visible == {("all", "nose"): 1, ("all", "chin"): 1}
    confirmed, _ = tracker.update(np.stack([left, right]), ["nose", "chin"], ["all", "all"])
    assert confirmed == []  # the same person again, not a new one
    for _ in range(2):  # now the right tile is looked at and the face is gone: it leaves, and counts once
        confirmed, visible = tracker.update(left[None], ["nose"], ["all"])
    assert confirmed == [("all", "chin")] and visible == {("all", "nose"): 1}
