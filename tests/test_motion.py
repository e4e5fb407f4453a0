"""Detection follows motion: still frames keep the last pass's faces, any change or the refresh schedule runs it."""

from __future__ import annotations

from functools import partial

import cv2
import numpy as np
import pytest

from binarycop.config import DetectorConfig
from binarycop.democlip import GAP_FRAMES, SEGMENT_FRAMES, clip_frames
from detector import iou_matrix, make_detector
from detector.motion import REFRESH_FRAMES, MotionGate, motion_grey, reduced_motion_grey
from detector.yunet import ScalePlan
from ingest import Frame
from ingest.mjpeg import checked_size


def _background(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:360, 0:640]
    base = np.stack([80 + 0.2 * x, 100 + 0.2 * y, 140 - 0.1 * x], axis=-1)
    return np.clip(base + rng.normal(0, 6, (360, 640, 1)), 0, 255).astype(np.uint8)


def test_a_still_camera_is_examined_on_the_refresh_schedule_only():
    gate, frame = MotionGate(), _background()
    examined = [gate.examine(frame.copy()) for _ in range(2 * REFRESH_FRAMES + 1)]
    assert [i for i, e in enumerate(examined) if e] == [0, REFRESH_FRAMES, 2 * REFRESH_FRAMES]
    assert (gate.whole, gate.partial, gate.still) == (3, 0, 2 * REFRESH_FRAMES - 2)


def test_sensor_noise_is_still_and_a_small_change_is_motion():
    gate = MotionGate()
    assert gate.examine(_background(0))
    assert not gate.examine(_background(1))  # new noise in every pixel: averaged away in 16x16 cells
    moved = _background(2)
    moved[100:140, 300:340] = 20  # a dark object of 40 px appears
    assert gate.examine(moved)
    assert not gate.examine(moved.copy())


def test_a_slow_change_adds_up_against_the_frame_last_examined():
    gate, frame = MotionGate(), _background()
    assert gate.examine(frame)
    examined = []
    for step in range(1, 8):  # a patch darkening by 3 grey levels a frame: never 8 between neighbours
        darker = frame.copy()
        darker[96:160, 288:352] = np.clip(darker[96:160, 288:352].astype(int) - 3 * step, 0, 255)
        examined.append(gate.examine(darker))
    assert examined[:2] == [False, False] and any(examined)


def test_a_frame_of_another_size_is_examined_and_reset_forgets():
    gate = MotionGate()
    assert gate.examine(_background())
    assert gate.examine(np.zeros((720, 1280, 3), np.uint8))
    assert not gate.examine(np.zeros((720, 1280, 3), np.uint8))
    gate.reset()
    assert gate.examine(np.zeros((720, 1280, 3), np.uint8))


def test_the_default_detector_skips_still_frames_of_the_clip_and_finds_every_face():
    """The bundled clip as a camera at 5 fps, with the server's default detector: the gaps between face sets are
    background only and still, so they cost no pass; every face the detector finds on every frame it still finds."""
    frames = clip_frames()[::2]
    camera = make_detector(DetectorConfig())
    every_frame = make_detector(DetectorConfig(keep_still=False))
    found = [len(camera.detect(frame, with_crops=True)) for frame in frames]
    expected = [len(every_frame.detect(frame, with_crops=False)) for frame in frames]
    assert found == expected and sum(expected) >= 100
    gaps = (len(frames) * GAP_FRAMES) // (SEGMENT_FRAMES + GAP_FRAMES)
    assert camera.still_frames >= gaps - 8  # each gap's first frame differs from the last face frame
    assert camera.inferences == len(frames) - camera.still_frames
    assert every_frame.still_frames == 0 and every_frame.inferences == len(frames)


def test_a_still_frame_gives_the_last_pass_faces_cut_from_the_new_frame():
    frames = clip_frames()
    camera = make_detector(DetectorConfig())
    first = camera.detect(frames[0])
    brighter = np.clip(frames[0].astype(int) + 4, 0, 255).astype(np.uint8)  # under the motion level
    again = camera.detect(brighter)
    assert camera.inferences == 1 and len(first) == 4
    np.testing.assert_array_equal(again.boxes, first.boxes)
    assert not np.array_equal(again.crops, first.crops)  # re-cut from the new pixels, classified afresh
    assert np.abs(again.crops.astype(int) - first.crops.astype(int)).max() <= 4


def _planned(detector, second_full: bool):
    """``detector`` with its scale plan's phase pinned (it is drawn at random per camera): the second frame examined
    at full size, or at the reduced scale the first frame's faces allow."""
    detector._plan = ScalePlan(
        detector.full_every, phase=1 if second_full else detector.full_every, longest=detector.full_longest
    )
    return detector


@pytest.mark.parametrize("second_full", [True, False], ids=["full-size", "reduced"])
def test_where_one_face_moved_only_its_region_is_examined_and_the_others_are_kept(second_full):
    from binarycop.democlip import FACE_PX, _positions

    frames = clip_frames()
    camera = _planned(make_detector(DetectorConfig()), second_full)
    first = camera.detect(frames[0])
    pixels = camera.pixels
    moved = frames[0].copy()
    x, y = _positions(0)[0]
    face = frames[0][y : y + FACE_PX, x : x + FACE_PX].copy()
    moved[y : y + FACE_PX, x : x + FACE_PX] = frames[SEGMENT_FRAMES][y : y + FACE_PX, x : x + FACE_PX]  # background
    moved[y + 6 : y + 6 + FACE_PX, x + 6 : x + 6 + FACE_PX] = face  # the first face, 6 px down and right
    again = camera.detect(moved)
    assert camera.partial_frames == 1 and camera.pixels - pixels < 0.5 * pixels
    assert len(again) == len(first) == 4
    every_frame = _planned(make_detector(DetectorConfig(keep_still=False)), second_full)  # the same scales, whole
    every_frame.detect(frames[0])
    whole = every_frame.detect(moved)
    left = np.argmin(again.boxes[:, 0])
    assert iou_matrix(again.boxes[left : left + 1], whole.boxes).max() > 0.8  # found again where it went
    others = np.sort(again.boxes[:, 0])[1:], np.sort(first.boxes[:, 0])[1:]
    # kept as the last pass found them, or found again where the grown region reaches them (a 72 px box within 4 px)
    np.testing.assert_allclose(*others, atol=4)
    assert (others[0] == others[1]).sum() >= 2  # the far ones are kept exactly: they were not examined


def _gate_grey(frame: Frame) -> np.ndarray | None:
    """What the pipeline gives the detector for a frame not yet decoded: the motion copy from the reduced decode."""
    return reduced_motion_grey(frame.reduced_grey(), frame.size)


def _undecoded(frame_bgr: np.ndarray) -> Frame:
    """The frame as an MJPEG reader hands it on: its JPEG, checked but not decoded."""
    jpeg = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    return Frame("cam", 0.0, jpeg=jpeg, size=checked_size(jpeg, 1 << 24))


@pytest.mark.parametrize("size", [(640, 360), (1000, 562)])
def test_the_reduced_decode_gives_the_gate_the_grey_copy_of_the_full_decode(size):
    """The motion copy from libjpeg's 1/8 grey decode is the full decode's within 2 grey levels (the gate's level is
    8), cell for cell, for frames whose side is no multiple of 16 too."""
    for frame_bgr in clip_frames()[::10]:
        frame = _undecoded(cv2.resize(frame_bgr, size, interpolation=cv2.INTER_AREA))
        grey = _gate_grey(frame)
        assert not frame.decoded
        full = motion_grey(frame.pixels)
        assert grey.shape == full.shape == (size[1] // 16, size[0] // 16)
        assert np.abs(grey - full).max() <= 2


def test_still_frames_with_nobody_in_view_are_never_decoded():
    """The bundled clip as an MJPEG camera at 5 fps, its frames handed on undecoded, the pipeline's order (the
    detector first asked whether it needs the pixels): the gaps between face sets are never decoded, and every frame
    has the faces that decoding and examining every frame finds."""
    frames = clip_frames()[::2]
    camera = make_detector(DetectorConfig())
    every_frame = make_detector(DetectorConfig(keep_still=False))
    found, undecoded = [], []
    for frame_bgr in frames:
        frame = _undecoded(frame_bgr)
        faces = camera.detect_undecoded(partial(_gate_grey, frame))
        if faces is None:
            faces = camera.detect(frame.pixels)
        found.append(len(faces))
        undecoded.append(not frame.decoded)
    expected = [len(every_frame.detect(frame, with_crops=False)) for frame in frames]
    assert found == expected
    gaps = (len(frames) * GAP_FRAMES) // (SEGMENT_FRAMES + GAP_FRAMES)
    assert sum(undecoded) >= gaps - 8 and all(n == 0 for n, skipped in zip(expected, undecoded) if skipped)
    keep_every = make_detector(DetectorConfig(keep_still=False))  # without the gate, every frame needs its pixels
    assert keep_every.detect_undecoded(lambda: motion_grey(frames[0])) is None


def test_a_box_at_a_region_edge_inside_the_frame_is_taken_for_part_of_a_face():
    """Only the edges a region shares with no frame edge cut faces; a box well inside is whole."""
    from detector.yunet import cut_by_edges

    region = np.array([[0, 0, 256, 384]])
    boxes = np.array(
        [
            [201, 150, 261, 235],  # past the region's right edge at x 256: cut
            [100, 150, 190, 235],  # well inside: whole
            [0, 150, 90, 235],  # at the region's left edge, which is the frame's: whole
            [400, 150, 490, 235],  # in no region
        ],
        np.float32,
    )
    assert cut_by_edges(boxes, region, 640, 384).tolist() == [True, False, False, False]
    assert not cut_by_edges(boxes, np.empty((0, 4)), 640, 384).any()
