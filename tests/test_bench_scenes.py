"""What the pipeline bench's cameras show, and how a detector is named on the bench's command line."""

from __future__ import annotations

import numpy as np
import pytest

from binarycop.bench.scenes import (
    FACE_PX,
    HEIGHT,
    STAND,
    VENUE_SECONDS,
    WALKERS,
    WIDTH,
    Scene,
    crowd_scene,
    venue_placements,
)
from binarycop.config import ConfigError, DetectorConfig, detector_name, detector_spec
from binarycop.democlip import FPS


def test_venue_faces_are_in_view_a_third_of_the_time_and_one_person_stays_a_minute():
    frames = venue_placements(np.random.default_rng(0))
    assert len(frames) == VENUE_SECONDS * FPS
    in_view = sum(1 for placed in frames if placed) / len(frames)
    assert abs(in_view - 1 / 3) < 0.01
    stander = [index for index, placed in enumerate(frames) if any(face == 0 for face, _, _ in placed)]
    assert (stander[0], stander[-1] + 1) == (STAND[0] * FPS, STAND[1] * FPS) and STAND[1] - STAND[0] == 60
    people = {face for placed in frames for face, _, _ in placed}
    assert people == set(range(1 + len(WALKERS)))
    for placed in frames:
        for _, x, y in placed:
            assert 0 <= x <= WIDTH - FACE_PX and 0 <= y <= HEIGHT - FACE_PX


def test_venue_walkers_move_little_enough_between_examined_frames_to_be_followed():
    """At 5 detect fps a walker's box moves at most 35 px between examined frames: the tracker's overlap test
    (IoU 0.3) follows a face box of 78 px that far."""
    frames = venue_placements(np.random.default_rng(0))
    where = {}
    for index, placed in enumerate(frames[::2]):
        for face, x, y in placed:
            if face in where and where[face][0] == index - 1:
                assert np.hypot(x - where[face][1], y - where[face][2]) <= 35
            where[face] = (index, x, y)


def test_cameras_start_at_spread_points_and_the_people_shown_follow_the_window():
    scene = Scene("test", [b""] * 140, people_per_loop=64)
    starts = [scene.start_frame(camera) for camera in range(24)]
    assert len(set(starts)) == 24 and all(0 <= start < 140 for start in starts)
    gaps = np.diff(sorted(starts))
    assert gaps.max() <= 3 * 140 / 24
    assert scene.shown(24, 14) == pytest.approx(24 * 64)
    crowd = crowd_scene()
    assert crowd.loop_seconds == 14 and crowd.shown(1, 3.5) == pytest.approx(16)


def test_detector_settings_on_the_command_line_are_checked_and_written_back():
    assert detector_spec("yunet:keep_still=false") == DetectorConfig(keep_still=False)
    spec = detector_spec("yunet@0.5:full_frame_every=1,tile=256")
    assert (spec.scales, spec.full_frame_every, spec.tile) == ([0.5], 1, 256)
    assert detector_name(spec) == "yunet@0.5:tile=256,full_frame_every=1"
    assert detector_spec(detector_name(spec)) == spec
    assert detector_name(DetectorConfig()) == "yunet@1"
    assert detector_name(detector_spec("yunet:full_frame_backoff=false")) == "yunet@1:full_frame_backoff=false"
    with pytest.raises(ConfigError, match="SETTING=VALUE pairs of min_face_px"):
        detector_spec("yunet:bogus=1")
    with pytest.raises(ConfigError, match="keep_still"):
        detector_spec("yunet:keep_still=maybe")
