from __future__ import annotations

import cv2
import numpy as np
import pytest

from detector import Faces, crop_faces, iou_matrix, nms, square_boxes
from detector.blazeface import BlazeFaceDetector


def test_square_boxes_keep_centre_and_add_margin():
    squares = square_boxes(np.array([[10, 20, 30, 60]]), margin=0.5)
    np.testing.assert_allclose(squares, [[-10, 10, 50, 70]])


def test_crops_at_frame_borders_are_edge_padded():
    image = np.zeros((100, 120, 3), np.uint8)
    image[:, :60] = (255, 0, 0)  # blue left half (BGR)
    image[:, 60:] = (0, 0, 255)  # red right half
    boxes = np.array([[-30, -30, 30, 30], [100, 80, 140, 120], [50, 40, 70, 60]], np.float32)
    crops = crop_faces(image, boxes, margin=0.0)
    assert crops.shape == (3, 32, 32, 3) and crops.dtype == np.uint8
    assert (crops[0] == (0, 0, 255)).all()  # outside top-left: replicated blue, as RGB
    assert (crops[1] == (255, 0, 0)).all()  # outside bottom-right: replicated red
    assert (crops[2][:, :14] == (0, 0, 255)).all() and (crops[2][:, 18:] == (255, 0, 0)).all()


def test_crop_of_a_box_larger_than_the_frame():
    image = np.full((20, 20, 3), 7, np.uint8)
    crops = crop_faces(image, np.array([[-50, -50, 70, 70]]))
    assert (crops == 7).all()


def test_nms_keeps_best_of_overlapping():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keep = nms(boxes, np.array([0.6, 0.9, 0.5], np.float32))
    assert keep.tolist() == [1, 2]
    assert iou_matrix(boxes[:1], boxes[:1])[0, 0] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def detector():
    found = BlazeFaceDetector(min_face_px=0)
    yield found
    found.close()


@pytest.mark.parametrize(
    "name, at_least",
    [
        ("chandrikadeb7_pic1_masks.jpg", 2),
        ("chandrikadeb7_pic2_masks_chin.jpg", 3),
        ("fr_two_people.jpg", 2),
        ("insightface_t1.jpg", 5),
        ("retinaface_widerface_test.jpg", 8),
    ],
)
def test_finds_faces_in_group_photos(shared_data, detector, name, at_least):
    image = cv2.imread(str(shared_data / "scenes" / "misc" / name))
    faces = detector.detect(image)
    assert isinstance(faces, Faces)
    assert len(faces) >= at_least
    assert faces.crops.shape == (len(faces), 32, 32, 3)
    height, width = image.shape[:2]
    centres = (faces.boxes[:, :2] + faces.boxes[:, 2:]) / 2
    assert ((centres >= 0) & (centres <= [width, height])).all()


def test_no_faces_in_a_blank_frame(detector):
    assert len(detector.detect(np.full((480, 640, 3), 128, np.uint8))) == 0


def test_a_still_frame_reuses_its_faces_without_running_the_model(shared_data):
    image = cv2.imread(str(shared_data / "scenes" / "misc" / "insightface_t1.jpg"))
    frame = cv2.copyMakeBorder(image, 0, 0, 0, max(0, 1280 - image.shape[1]), cv2.BORDER_CONSTANT)
    detector = BlazeFaceDetector(min_face_px=0, keep_still=True)
    try:
        first = detector.detect(frame)
        ran = detector.inferences
        again = detector.detect(frame.copy())
        assert ran >= 2 and detector.inferences == ran  # whole frame and tiles the first time, nothing after
        assert len(first) >= 5
        np.testing.assert_array_equal(again.boxes, first.boxes)
        np.testing.assert_array_equal(again.crops, first.crops)
    finally:
        detector.close()


@pytest.mark.parametrize("width, height, floor", [(1280, 720, 0.8), (1920, 1080, 0.8)])
def test_faces_of_24_px_are_found_in_crowd_frames_with_small_tiles(shared_data, width, height, floor):
    """40 real faces (MaskedFace-Net and unmasked crops), face boxes of 24 px, pasted on a generated frame;
    a camera set to ``tile: 192, min_face_px: 24``. Measured here: 38/40 (1280x720, 46 inferences) and
    37/40 (1920x1080, 92 inferences) found; whole frame or auto tiles: 0/40 (``binarycop bench faces``)."""
    from binarycop.bench_faces import crowd_frame, face_patches, found
    from binarycop.config import parse_config
    from detector import make_detector

    config = parse_config("cameras: [{name: far, url: a.mp4, detector: {tile: 192, min_face_px: 24}}]", environ={})
    frame = crowd_frame(face_patches(shared_data, 40), width, height, face_px=24)
    detector = make_detector(config.cameras[0].detector_config(config.detector))
    try:
        faces = detector.detect(frame.pixels)
    finally:
        detector.close()
    assert len(frame.boxes) == 40
    assert found(frame.boxes, faces.boxes) >= floor * len(frame.boxes)
    assert len(faces) <= len(frame.boxes) + 2  # hardly anything on the background


def test_crowd_frames_hide_faces_from_the_whole_frame_pass(shared_data):
    """The same generated frame without tiles: the faces are there, but too small for one pass (0/40 measured)."""
    from binarycop.bench_faces import crowd_frame, face_patches, found

    frame = crowd_frame(face_patches(shared_data, 40), 1280, 720, face_px=24)
    detector = BlazeFaceDetector(min_face_px=0, tile=0)
    try:
        assert found(frame.boxes, detector.detect(frame.pixels).boxes) <= 4
    finally:
        detector.close()


@pytest.fixture(scope="module")
def yunet():
    from detector.yuface import YuFaceDetector

    return YuFaceDetector(min_face_px=0)


def _matched_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    overlaps = iou_matrix(a, b)
    return overlaps.max(axis=1) if overlaps.size else np.empty(0)


def test_yuface_boxes_are_framed_like_blazeface(shared_data, detector, yunet):
    """The classifier sees one framing whichever detector cut the crop: converted yuface boxes overlap
    BlazeFace's boxes of the same faces closer than yuface's own boxes do."""
    raw, converted = [], []
    for name in ("chandrikadeb7_pic3.jpg", "fr_two_people.jpg", "insightface_t1.jpg", "fr_obama_and_biden.jpg"):
        image = cv2.imread(str(shared_data / "scenes" / "misc" / name))
        blaze = detector.detect(image, with_crops=False).boxes
        found = yunet.detect(image, with_crops=False).boxes  # already in BlazeFace's framing
        ious = _matched_ious(blaze, found)
        keep = ious > 0.3
        converted.extend(ious[keep])
        own, _ = yunet._detect_scaled(image, 1.0)  # yuface's own boxes, before re-framing
        raw.extend(_matched_ious(blaze, own)[keep])
    assert len(converted) >= 8
    assert np.median(converted) > 0.75
    assert np.median(converted) > np.median(raw) + 0.05


def test_yuface_finds_masked_faces_blazeface_misses(shared_data, detector, yunet):
    """Correctly masked faces >= 24 px in held-out real scenes: yuface finds most, BlazeFace far fewer."""
    from accel.scenes import match_boxes, scene_split

    found = {"blazeface": 0, "yuface": 0}
    total = 0
    for scene in scene_split(shared_data / "scenes", "held-out")[:40]:
        image = cv2.imread(str(scene.image_path))
        sizes = np.minimum(scene.boxes[:, 2] - scene.boxes[:, 0], scene.boxes[:, 3] - scene.boxes[:, 1])
        masked = (np.array(scene.groups) == "with_mask") & (sizes >= 24)
        total += int(masked.sum())
        for name, chosen in (("blazeface", detector), ("yuface", yunet)):
            matched = match_boxes(scene.boxes, chosen.detect(image, with_crops=False).boxes)
            found[name] += int(((matched >= 0) & masked).sum())
    assert total >= 30
    assert found["yuface"] >= 0.85 * total
    assert found["yuface"] >= found["blazeface"] + 0.15 * total


def test_what_a_yuface_worker_runs_imports_no_opencv():
    """A live yuface worker unpickles ``detector.yunet.raw_detect``: importing it (and the package above it)
    must not load OpenCV, which the worker never uses (6 MB of its own memory, 27 MB resident, per yuface camera)."""
    import subprocess
    import sys

    code = "import sys, detector.yunet; print(sorted(m for m in ('cv2', 'mediapipe', 'torch') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_a_live_yuface_detector_runs_in_its_own_process_and_outlives_its_death():
    """yuface holds the GIL while it runs, so a camera's detector runs it in a child process (the server's
    threads and other cameras keep running); the same boxes as in-process; a killed worker fails one
    frame with a clear error and the next frame starts a new worker."""
    import os
    import signal

    from binarycop.config import DetectorConfig
    from binarycop.democlip import clip_frames
    from detector import make_detector
    from detector.yuface import YuFaceDetector

    image = clip_frames()[0]  # the bundled clip: four faces in its first frame
    expected = YuFaceDetector().detect(image).boxes
    live = make_detector(DetectorConfig(kind="yuface"), live=True)
    try:
        assert len(expected) == 4
        np.testing.assert_array_equal(live.detect(image).boxes, expected)
        workers = list(live._pool._processes)
        assert len(workers) == 1 and workers[0] != os.getpid()
        os.kill(workers[0], signal.SIGKILL)
        with pytest.raises(RuntimeError, match="yuface worker process died"):
            live.detect(image)
        np.testing.assert_array_equal(live.detect(image).boxes, expected)
        assert list(live._pool._processes) != workers
    finally:
        live.close()
    assert live._pool is None


def test_yuface_upscaled_pass_finds_small_faces(shared_data):
    """A group photo shrunk until its faces are about 12 px: only the upscaled pass finds them."""
    from detector.yuface import YuFaceDetector

    image = cv2.imread(str(shared_data / "scenes" / "misc" / "insightface_t1.jpg"))
    full = YuFaceDetector(min_face_px=0).detect(image, with_crops=False)
    factor = 12 / np.median(full.boxes[:, 2] - full.boxes[:, 0])
    small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    once = YuFaceDetector(min_face_px=0, scales=(1.0,)).detect(small)
    twice = YuFaceDetector(min_face_px=0, scales=(1.0, 2.0)).detect(small)
    assert len(full) >= 5
    assert len(twice) >= len(full) - 1 > len(once)
    assert twice.crops.shape == (len(twice), 32, 32, 3)


def test_yuface_is_chosen_by_config_and_refuses_bad_scales():
    from binarycop.config import CameraConfig, DetectorConfig
    from detector import make_detector
    from detector.yuface import YuFaceDetector

    camera = CameraConfig(name="door", url="clip.mp4", detector={"kind": "yuface", "scales": [1, 2]})
    chosen = make_detector(camera.detector_config(DetectorConfig(min_face_px=30)))
    assert isinstance(chosen, YuFaceDetector) and chosen.scales == (1.0, 2.0) and chosen.min_face_px == 30
    assert len(chosen.detect(np.full((360, 640, 3), 128, np.uint8))) == 0
    with pytest.raises(ValueError, match="scales must be factors between 0.25 and 4"):
        DetectorConfig(kind="yuface", scales=[8])
    with pytest.raises(ValueError, match="kind"):
        DetectorConfig(kind="haar")


@pytest.mark.parametrize(
    "text, problem",
    [
        ("yuface@1,x", "'yuface@1,x': scales are comma-separated numbers"),
        ("yuface@9", "scales must be factors between 0.25 and 4"),
        ("blazeface@2", "'blazeface@2': only yuface takes scales"),
        ("retina", "kind: Input should be 'blazeface' or 'yuface'"),
    ],
)
def test_bench_detector_option(capsys, text, problem):
    """``bench slice/pipeline --detector`` takes the server's detector settings of that kind; a bad one is
    a clear error before anything runs."""
    from binarycop.cli import main
    from binarycop.config import DetectorConfig, detector_spec

    assert detector_spec("blazeface") == DetectorConfig()
    assert detector_spec("yuface@1,2") == DetectorConfig(kind="yuface", scales=[1.0, 2.0])
    assert main(["-q", "bench", "slice", "--detector", text]) == 2
    assert problem in capsys.readouterr().err


def test_bench_pipeline_compares_detectors_against_one_decode_search(capsys):
    """``bench pipeline`` with two detectors: real loopback MJPEG cameras through the whole server for
    each, and decoding alone searched once for both (its count is the same whichever detector runs)."""
    import json

    from binarycop.cli import main

    argv = ["-q", "bench", "pipeline", "--cameras", "1", "--seconds", "1", "--json"]
    assert main([*argv, "--detector", "blazeface", "--detector", "yuface@0.5"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert [figure["detector"] for figure in result["detectors"]] == ["blazeface", "yuface@0.5"]
    assert result["detector"] == "blazeface" and result["detectors"][0]["cameras_vs_first"] in (1.0, None)
    assert {figure["decode_only_cameras"] for figure in result["detectors"]} == {result["decode_only_cameras"]}
    assert result["decode_only_cameras"] in (0, 1)
    assert captured.err.count("decode only: 1 cameras") == 1 and captured.err.count("pipeline: 1 cameras") == 2
