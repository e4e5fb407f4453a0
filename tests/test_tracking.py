from __future__ import annotations

import numpy as np
import pytest

from binarycop.config import ConfigError, parse_config
from detector.faces import Faces
from detector.tracking import FaceTracker
from detector.zones import Zones, inside

SQUARE = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]


def test_zone_of_each_face_by_its_centre():
    zones = Zones({"left": SQUARE, "middle": [[0.4, 0.0], [0.8, 0.0], [0.8, 1.0], [0.4, 1.0]]})
    boxes = np.array([[10, 10, 30, 30], [80, 10, 100, 30], [110, 10, 130, 30], [170, 10, 190, 30]], np.float32)
    # centres at x = 0.1 (left), 0.45 (both: the first listed wins), 0.6 (middle), 0.9 (none)
    assert zones.of_boxes(boxes, width=200, height=100) == ["left", "left", "middle", "outside"]
    assert zones.labels == ["left", "middle", "outside"]
    assert Zones(None).of_boxes(boxes, 200, 100) == ["all"] * 4
    assert zones.indices_of_boxes(boxes, width=200, height=100).tolist() == [0, 0, 1, 2]  # into zones.labels
    assert Zones(None).indices_of_boxes(boxes, 200, 100).tolist() == [0] * 4


def test_point_in_concave_polygon():
    l_shape = np.array([[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2]], float)
    points = np.array([[0.5, 0.5], [1.5, 0.5], [0.5, 1.5], [1.5, 1.5], [3, 3]])
    assert inside(points, l_shape).tolist() == [True, True, True, False, False]


@pytest.mark.parametrize(
    "zones, problem",
    [
        ("{all: [[0,0],[1,0],[1,1]]}", "not 'all' or 'outside'"),
        ("{door: [[0,0],[1,0]]}", "needs at least 3 points"),
        ("{door: [[0,0],[1.5,0],[1,1]]}", "between 0 and 1"),
    ],
)
def test_bad_zones_named(zones, problem):
    with pytest.raises(ConfigError) as raised:
        parse_config(f"cameras: [{{name: a, url: x.mp4, zones: {zones}}}]", environ={})
    assert any(p.startswith("cameras[a].zones") and problem in p for p in raised.value.problems), raised.value.problems


def _box(x: float) -> np.ndarray:
    return np.array([x, 10, x + 40, 50], np.float32)


def _frames(tracker: FaceTracker, frames: list[list[tuple[np.ndarray, str]]]) -> list[tuple[list, dict]]:
    """Feed (box, class) lists frame by frame, all in zone "all"; each frame's (people decided, faces in view)."""
    results = []
    for faces in frames:
        boxes = np.array([box for box, _ in faces], np.float32).reshape(-1, 4)
        results.append(tracker.update(boxes, [name for _, name in faces], ["all"] * len(faces)))
    return results


def test_a_person_is_counted_once_when_they_leave_with_the_class_all_their_frames_voted_for():
    tracker = FaceTracker(min_hits=3, max_misses=2)
    # The first three frames say nose, the next five correct: the first three alone would call them nose.
    votes = ["nose", "nose", "correct", "nose", "correct", "correct", "correct", "correct"]
    results = _frames(tracker, [[(_box(100 + 2 * step), vote)] for step, vote in enumerate(votes)] + [[]] * 3)
    decided = [person for people, _ in results for person in people]
    assert decided == [("all", "correct")]  # 5 of 8 frames
    assert [people for people, _ in results].index(decided) == len(votes) + 2  # on the frame they are gone
    assert results[2][1] == {("all", "nose"): 1}  # in view while followed: the vote so far
    assert results[-1][1] == {}


def test_someone_who_stays_is_counted_once_after_decide_after_frames():
    tracker = FaceTracker(min_hits=3, max_misses=2, decide_after=10)
    results = _frames(tracker, [[(_box(300), "no_mask" if step < 4 else "chin")] for step in range(40)] + [[]] * 3)
    decided_at = [step for step, (people, _) in enumerate(results) if people]
    assert decided_at == [9] and results[9][0] == [("all", "chin")]  # 6 of 10 frames; never again as they stay
    assert results[39][1] == {("all", "chin"): 1}  # still in view, still followed


def test_a_camera_that_stops_decides_the_people_in_view_and_not_the_glimpses():
    tracker = FaceTracker(min_hits=3, max_misses=2)
    _frames(tracker, [[(_box(100), "nose"), (_box(400), "correct")]] * 4 + [[(_box(100), "nose")]])
    _frames(tracker, [[(_box(700), "no_mask")]])  # one frame: a glimpse, not a person
    assert sorted(tracker.finish()) == [("all", "correct"), ("all", "nose")]
    assert tracker.finish() == [] and tracker.pending_boxes().shape == (0, 4)


def test_decide_after_is_a_documented_config_setting_in_seconds():
    from binarycop.config import TrackingConfig

    assert TrackingConfig().decide_after_seconds == 60
    assert "whichever comes first" in TrackingConfig.model_fields["decide_after_seconds"].description
    with pytest.raises(ConfigError) as raised:
        parse_config("tracking: {decide_after_seconds: 0}\ncameras: [{name: a, url: x.mp4}]", environ={})
    assert any(p.startswith("tracking.decide_after_seconds") for p in raised.value.problems), raised.value.problems


def test_follow_fills_track_ids_and_counts_by_class_and_zone_ids():
    tracker = FaceTracker(min_hits=2, max_misses=1)
    results = []
    for boxes in ([_box(100), _box(300)], [_box(302), _box(102)], [_box(104), _box(500)]):
        faces = Faces(np.stack(boxes), np.ones(len(boxes), np.float32))
        faces.class_ids, faces.zone_ids = np.array([4, 1]), np.array([0, 0])
        results.append((tracker.follow(faces), faces.track_ids.tolist()))
    (first, ids_1), (second, ids_2), (third, ids_3) = results
    assert ids_1 == [0, 1] and ids_2 == [1, 0]  # the same two people, listed the other way round
    assert ids_3 == [0, 2]  # the first walks on; a newcomer gets a new id
    assert first == ([], {}) and second == ([], {(0, 1): 1, (0, 4): 1})  # (zone id, class id): confirmed on hit 2
    assert third == ([], {(0, 4): 1})  # the one at 300 missed once: not in view; the newcomer: not yet confirmed
    faces = Faces(np.stack([_box(106)]), np.ones(1, np.float32))
    faces.class_ids, faces.zone_ids = np.array([4]), np.array([0])
    assert tracker.follow(faces)[0] == [(0, 1)]  # missed twice: gone, and counted as the class its frames said


def test_a_person_who_leaves_and_a_new_one_who_arrives_are_two_people():
    tracker = FaceTracker(min_hits=2, max_misses=1)
    counted = []
    frames = [[_box(100)], [_box(100)], [], [], [_box(100)], [_box(100)]]  # gap longer than max_misses
    for boxes in frames:
        confirmed, _ = tracker.update(
            np.array(boxes, np.float32).reshape(-1, 4), ["chin"] * len(boxes), ["all"] * len(boxes)
        )
        counted += confirmed
    assert counted == [("all", "chin")]  # the first has left; the second is still in view
    assert tracker.finish() == [("all", "chin")]


def test_short_glimpses_are_not_people():
    tracker = FaceTracker(min_hits=3, max_misses=0)
    counted = []
    for x in (0, 200, 400, 600):  # a different place every frame: never the same face twice
        confirmed, visible = tracker.update(np.stack([_box(x)]), ["nose"], ["all"])
        counted += confirmed
    assert counted == [] and not visible and tracker.finish() == []


def test_a_passer_by_is_followed_across_a_dropped_frame():
    """A 40 px face walking 16 px a frame (a 72 px face at 150 px/s and 5 detect fps), frames lost under load: twice the
    step between the frames the tracker sees, which its last box alone overlaps by under min_iou. The box where it
    should be, moving as it was, overlaps enough: one person, not two. Two people standing apart stay two."""
    from detector.faces import iou_matrix

    side = _box(0)[2] - _box(0)[0]
    assert iou_matrix(_box(148)[None], _box(180)[None])[0, 0] < 0.3 < iou_matrix(_box(164)[None], _box(180)[None])[0, 0]
    tracker = FaceTracker(min_hits=3, max_misses=2)
    walk = [[(_box(100 + 16 * step), "nose")] for step in (0, 1, 2, 3, 5, 6, 7, 9, 10)]  # frames 4 and 8 dropped
    results = _frames(tracker, walk + [[]] * 3)
    assert [person for people, _ in results for person in people] == [("all", "nose")]
    standing = FaceTracker(min_hits=3, max_misses=2)
    _frames(standing, [[(_box(100), "nose"), (_box(100 + 2 * side), "correct")]] * 5)
    assert sorted(standing.finish()) == [("all", "correct"), ("all", "nose")]
