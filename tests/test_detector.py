from __future__ import annotations

import cv2
import numpy as np
import pytest

from detector import Faces, Framing, crop_faces, iou_matrix, nms, square_boxes
from detector.blazeface import BlazeFaceDetector


def test_square_boxes_keep_centre_and_add_margin():
    squares = square_boxes(np.array([[10, 20, 30, 60]]), Framing(margin=0.5))
    np.testing.assert_allclose(squares, [[-10, 10, 50, 70]])


def test_a_dropped_framing_moves_the_square_down_by_a_share_of_the_side():
    squares = square_boxes(np.array([[10, 20, 30, 60]]), Framing(margin=0.5, drop=0.25))
    np.testing.assert_allclose(squares, [[-10, 20, 50, 80]])  # side 40: 10 px down, the width unchanged


@pytest.mark.parametrize(
    "meta", [{"margin": "wide"}, {"margin": 0.2, "tilt": 1}, {"margin": 9.0}, {"drop": 0.9}, ["margin", 0.2]]
)
def test_a_framing_record_that_is_not_one_is_refused(meta):
    with pytest.raises(ValueError, match="framing"):
        Framing.from_meta(meta)


def test_a_model_without_a_framing_record_was_trained_with_the_default():
    assert Framing.from_meta(None) == Framing() == Framing.from_meta({"margin": 0.2, "drop": 0.0})


def test_crops_at_frame_borders_are_edge_padded():
    image = np.zeros((100, 120, 3), np.uint8)
    image[:, :60] = (255, 0, 0)  # blue left half (BGR)
    image[:, 60:] = (0, 0, 255)  # red right half
    boxes = np.array([[-30, -30, 30, 30], [100, 80, 140, 120], [50, 40, 70, 60]], np.float32)
    crops = crop_faces(image, boxes, Framing(margin=0.0))
    assert crops.shape == (3, 32, 32, 3) and crops.dtype == np.uint8
    assert (crops[0] == (0, 0, 255)).all()  # outside top-left: replicated blue, as RGB
    assert (crops[1] == (255, 0, 0)).all()  # outside bottom-right: replicated red
    assert (crops[2][:, :14] == (0, 0, 255)).all() and (crops[2][:, 18:] == (255, 0, 0)).all()


def test_crops_across_and_beyond_the_edges_repeat_the_edge_as_numpy_pads_it():
    """Squares across an edge, past a corner and wholly outside the image: each crop is the crop of the image padded
    by edge replication (``np.pad(mode="edge")``), as if the frame went on."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (90, 130, 3), dtype=np.uint8)
    pad = 200
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    boxes = np.array([[-40, 10, 20, 70], [100, 60, 170, 130], [-90, -80, -40, -30], [150, 20, 190, 60]], np.float32)
    crops = crop_faces(image, boxes, Framing(margin=0.0))
    expected = crop_faces(padded, boxes + pad, Framing(margin=0.0))
    np.testing.assert_array_equal(crops, expected)


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
    from binarycop.bench.faces import crowd_frame, face_patches, found
    from binarycop.config import parse_config
    from detector import make_detector

    config = parse_config(
        "cameras: [{name: far, url: a.mp4, detector: {kind: blazeface, tile: 192, min_face_px: 24}}]", environ={}
    )
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
    from binarycop.bench.faces import crowd_frame, face_patches, found

    frame = crowd_frame(face_patches(shared_data, 40), 1280, 720, face_px=24)
    detector = BlazeFaceDetector(min_face_px=0, tile=0)
    try:
        assert found(frame.boxes, detector.detect(frame.pixels).boxes) <= 4
    finally:
        detector.close()


@pytest.fixture(scope="module")
def yunet():
    from detector.yunet import YuNetDetector

    return YuNetDetector(min_face_px=0)


def _matched_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    overlaps = iou_matrix(a, b)
    return overlaps.max(axis=1) if overlaps.size else np.empty(0)


def test_yunet_decoder_gives_cv2_facedetectoryn_boxes(shared_data):
    """The decoder against OpenCV's own YuNet (``cv2.FaceDetectorYN`` on the 640x640 model file): fed the raw
    outputs of the same network (cv2.dnn), it gives the same faces, boxes within float32 rounding (1e-3 px) and the
    same scores; onnxruntime's outputs for the dynamic model give the same faces again."""
    from detector.yunet import MODEL_DIR, YuNetRunner, decode, padded_input

    fixed = MODEL_DIR / "yunet_s_640_640.onnx"
    reference = cv2.FaceDetectorYN.create(str(fixed), "", (640, 640), 0.5, 0.3, 5000)
    network = cv2.dnn.readNet(str(fixed))
    names = network.getUnconnectedOutLayersNames()
    runner = YuNetRunner()
    compared = 0
    for path in sorted((shared_data / "scenes" / "images").iterdir())[:24]:
        image = cv2.resize(cv2.imread(str(path)), (640, 640))
        _, expected = reference.detect(image)
        expected = np.zeros((0, 15), np.float32) if expected is None else expected
        expected_boxes = np.concatenate([expected[:, :2], expected[:, :2] + expected[:, 2:4]], axis=1)
        blob = padded_input(image)
        network.setInput(blob)
        boxes, scores = decode(dict(zip(names, network.forward(names))), 640, 640, 0.5)
        order, expected_order = np.lexsort(boxes.T[::-1]), np.lexsort(expected_boxes.T[::-1])
        np.testing.assert_allclose(boxes[order], expected_boxes[expected_order], atol=1e-3)
        np.testing.assert_allclose(scores[order], expected[expected_order, 14], atol=1e-6)
        ours, _ = decode(runner.run(blob), 640, 640, 0.5)
        assert len(ours) == len(expected)
        if len(ours):
            assert np.median(_matched_ious(expected_boxes, ours)) > 0.99
        compared += len(expected)
    assert compared >= 40


def test_yunet_pads_frames_to_multiples_of_32():
    from detector.yunet import padded_input

    image = np.arange(33 * 70 * 3, dtype=np.uint8).reshape(33, 70, 3) % 251
    region = np.tile(image, (3, 3, 1))[5:40, 7:150]  # a view into a frame, as the motion regions are
    for picture, padded_shape in ((image, (1, 3, 64, 96)), (region, (1, 3, 64, 160))):
        height, width = picture.shape[:2]
        blob = padded_input(picture)
        assert blob.shape == padded_shape and blob.dtype == np.float32
        np.testing.assert_array_equal(blob[0, :, :height, :width], picture.transpose(2, 0, 1))
        assert not blob[0, :, height:].any() and not blob[0, :, :, width:].any()


def test_yunet_boxes_are_framed_like_blazeface(shared_data, detector, yunet):
    """The classifier sees one framing whichever detector cut the crop: converted YuNet boxes overlap
    BlazeFace's boxes of the same faces closer than YuNet's own boxes do."""
    raw, converted = [], []
    for name in ("chandrikadeb7_pic3.jpg", "fr_two_people.jpg", "insightface_t1.jpg", "fr_obama_and_biden.jpg"):
        image = cv2.imread(str(shared_data / "scenes" / "misc" / name))
        blaze = detector.detect(image, with_crops=False).boxes
        yunet.reset()
        found = yunet.detect(image, with_crops=False).boxes  # already in BlazeFace's framing
        ious = _matched_ious(blaze, found)
        keep = ious > 0.3
        converted.extend(ious[keep])
        own, _ = yunet._detect_scaled(image, 1.0)  # YuNet's own boxes, before re-framing
        raw.extend(_matched_ious(blaze, own)[keep])
    assert len(converted) >= 8
    assert np.median(converted) > 0.75
    assert np.median(converted) > np.median(raw) + 0.05


def test_yunet_finds_masked_faces_blazeface_misses(shared_data, detector):
    """Correctly masked faces >= 24 px in held-out real scenes, both detectors with the server's settings (the
    default detector, and blazeface): YuNet finds most, BlazeFace far fewer."""
    from binarycop.config import DetectorConfig
    from lab.scan import offline_detector
    from lab.scenes import match_boxes, scene_split

    detectors = {"blazeface": offline_detector(DetectorConfig(kind="blazeface")), "yunet": offline_detector()}
    found = dict.fromkeys(detectors, 0)
    total = 0
    for scene in scene_split(shared_data / "scenes", "held-out")[:40]:
        image = cv2.imread(str(scene.image_path))
        sizes = np.minimum(scene.boxes[:, 2] - scene.boxes[:, 0], scene.boxes[:, 3] - scene.boxes[:, 1])
        masked = (np.array(scene.groups) == "with_mask") & (sizes >= 24)
        total += int(masked.sum())
        for name, chosen in detectors.items():
            matched = match_boxes(scene.boxes, chosen.detect(image, with_crops=False).boxes)
            found[name] += int(((matched >= 0) & masked).sum())
    detectors["blazeface"].close()
    assert total >= 30
    assert found["yunet"] >= 0.85 * total
    assert found["yunet"] >= found["blazeface"] + 0.15 * total


def test_one_yunet_session_serves_many_camera_threads_alike():
    """Every camera's detector shares the process's one onnxruntime session: eight threads detecting at once
    get exactly the boxes one thread gets alone."""
    from concurrent.futures import ThreadPoolExecutor

    from binarycop.democlip import clip_frames
    from detector.yunet import YuNetDetector, YuNetRunner

    frames = clip_frames()[:16]
    alone = [YuNetDetector().detect(frame).boxes for frame in frames]
    detectors = [YuNetDetector() for _ in range(8)]
    assert len({id(d.runner) for d in detectors}) == 1 and detectors[0].runner is YuNetRunner.shared()
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda i: detectors[i % 8].detect(frames[i]).boxes, range(len(frames))))
    assert sum(len(boxes) for boxes in alone) >= 30
    for mine, theirs in zip(together, alone):
        np.testing.assert_array_equal(mine, theirs)


def test_yunet_tiles_of_a_large_frame_find_what_the_whole_frame_does(shared_data):
    """A 1280x720 frame with 32 px faces: 480 px tiles (the whole frame at half size) find at least the faces one
    whole-frame pass finds, and examine nothing on the next frame when nothing moved."""
    from binarycop.bench.faces import crowd_frame, face_patches, found
    from detector.yunet import YuNetDetector

    frame = crowd_frame(face_patches(shared_data, 30), 1280, 720, face_px=32)
    whole = YuNetDetector(tile=0).detect(frame.pixels, with_crops=False)
    tiled_detector = YuNetDetector(tile=480, keep_still=True)
    tiled = tiled_detector.detect(frame.pixels, with_crops=False)
    assert found(frame.boxes, tiled.boxes) >= max(found(frame.boxes, whole.boxes), 0.8 * len(frame.boxes))
    first = tiled_detector.pixels
    again = tiled_detector.detect(frame.pixels, with_crops=False)
    assert tiled_detector.pixels == first  # nothing moved: every tile kept its faces, nothing ran
    assert found(frame.boxes, again.boxes) == found(frame.boxes, tiled.boxes)


def test_yunet_upscaled_pass_finds_small_faces(shared_data):
    """A group photo shrunk until its faces are about 12 px: only the upscaled pass finds them."""
    from detector.yunet import YuNetDetector

    image = cv2.imread(str(shared_data / "scenes" / "misc" / "insightface_t1.jpg"))
    full = YuNetDetector(min_face_px=0).detect(image, with_crops=False)
    factor = 12 / np.median(full.boxes[:, 2] - full.boxes[:, 0])
    small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    once = YuNetDetector(min_face_px=0, scales=(1.0,)).detect(small)
    twice = YuNetDetector(min_face_px=0, scales=(1.0, 2.0)).detect(small)
    assert len(full) >= 5
    assert len(twice) >= len(full) - 1 > len(once)
    assert twice.crops.shape == (len(twice), 32, 32, 3)


def test_yunet_is_the_default_chosen_by_config_and_refuses_bad_scales():
    from binarycop.config import CameraConfig, DetectorConfig
    from detector import make_detector
    from detector.yunet import YuNetDetector

    assert DetectorConfig().kind == "yunet"
    camera = CameraConfig(name="door", url="clip.mp4", detector={"kind": "yunet", "scales": [1, 2]})
    chosen = make_detector(camera.detector_config(DetectorConfig(min_face_px=30)))
    assert isinstance(chosen, YuNetDetector) and chosen.scales == (1.0, 2.0) and chosen.min_face_px == 30
    assert len(chosen.detect(np.full((360, 640, 3), 128, np.uint8))) == 0
    assert DetectorConfig(kind="yuface").kind == "yunet"  # configs written for the old runtime keep working
    with pytest.raises(ValueError, match="scales must be factors between 0.25 and 4"):
        DetectorConfig(kind="yunet", scales=[8])
    with pytest.raises(ValueError, match="kind"):
        DetectorConfig(kind="haar")


@pytest.mark.parametrize(
    "text, problem",
    [
        ("yunet@1,x", "'yunet@1,x': scales are comma-separated numbers"),
        ("yunet@9", "scales must be factors between 0.25 and 4"),
        ("blazeface@2", "'blazeface@2': only yunet takes scales"),
        ("retina", "kind: must be 'yunet' or 'blazeface'"),
    ],
)
def test_bench_detector_option(capsys, text, problem):
    """``bench slice/pipeline --detector`` takes the server's detector settings of that kind; a bad one is
    a clear error before anything runs."""
    from binarycop.cli import main
    from binarycop.config import DetectorConfig, detector_spec

    assert detector_spec("yunet") == DetectorConfig()
    assert detector_spec("blazeface") == DetectorConfig(kind="blazeface")
    assert detector_spec("yunet@1,2") == DetectorConfig(kind="yunet", scales=[1.0, 2.0])
    assert main(["-q", "bench", "slice", "--detector", text]) == 2
    assert problem in capsys.readouterr().err


def test_bench_pipeline_compares_detectors_against_one_decode_search(capsys):
    """``bench pipeline`` with two detectors: real loopback MJPEG cameras through the whole server for
    each, and decoding alone searched once for both (its count is the same whichever detector runs)."""
    import json

    from binarycop.cli import main

    argv = ["-q", "bench", "pipeline", "--cameras", "1", "--seconds", "1", "--json"]
    assert main([*argv, "--detector", "yunet", "--detector", "blazeface"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert [figure["detector"] for figure in result["detectors"]] == ["yunet@1", "blazeface"]
    assert result["detector"] == "yunet@1" and result["detectors"][0]["cameras_vs_first"] in (1.0, None)
    assert {figure["decode_only_cameras"] for figure in result["detectors"]} == {result["decode_only_cameras"]}
    assert result["decode_only_cameras"] in (0, 1)
    assert all(figure["people_vs_shown"] is not None for figure in result["detectors"])
    assert captured.err.count("decode only: 1 cameras") == 1 and captured.err.count("pipeline: 1 cameras") == 2


def test_bench_pipeline_runs_the_server_in_one_process_and_with_a_helper(capsys):
    """``bench pipeline --processes 1 --processes 2``: two real loopback cameras through the whole server, alone in
    the bench's process and then with a helper ingester process beside it (as ``serve`` runs by default on two
    cores); the helper's frames and people count in the figures (both cameras processed, none dropped)."""
    import json

    from binarycop.cli import main

    argv = ["-q", "bench", "pipeline", "--cameras", "2", "--seconds", "2", "--no-decode", "--json"]
    assert main([*argv, "--processes", "1", "--processes", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    figures = result["detectors"]
    assert [(f["processes"], f["processes_run"]) for f in figures] == [(1, 1), (2, 2)]
    for figure in figures:
        assert figure["cameras_sustained"] == 2, figure
        assert figure["people_vs_shown"] is not None and figure["people_vs_shown"] > 0.5, figure
    with pytest.raises(SystemExit) as refused:
        main([*argv, "--processes", "0"])
    assert refused.value.code == 2
    assert "expected 'auto' or a count from 1 to 64, not '0'" in capsys.readouterr().err


def test_scale_plan_keeps_the_smallest_face_in_view_large_enough():
    """Full resolution every ``full_every`` frames and while a small face is in view; otherwise the lowest step
    keeping the smallest recent face at >= 36 px (80 px faces: half; 60 px: three quarters; 40 px: full)."""
    from detector.yunet import ScalePlan

    def face(side: float) -> np.ndarray:
        return np.array([[0, 0, side, side]], np.float32)

    plan = ScalePlan(full_every=5, phase=5)
    factors = []
    for side in (80, 80, 80, 80, 80, 60, 60, 40):
        factors.append(plan.next_factor())
        plan.record(face(side))
    assert factors == [1.0, 0.5, 0.5, 0.5, 0.5, 1.0, 0.75, 0.75]
    assert plan.next_factor() == 1.0  # the 40 px face of the frame before
    plan.record(np.empty((0, 4), np.float32))
    for _ in range(5):
        plan.record(np.empty((0, 4), np.float32))  # nobody in the last five frames: the lowest step
    assert plan.next_factor() == 0.5
    assert [ScalePlan(full_every=1).next_factor() for _ in range(3)] == [1.0, 1.0, 1.0]
    staggered = ScalePlan(full_every=5, phase=2)
    assert [staggered.next_factor() for _ in range(8)] == [1.0, 0.5, 1.0, 0.5, 0.5, 0.5, 0.5, 1.0]


def test_full_resolution_frames_back_off_while_they_find_no_small_face():
    """Among large faces only, each full frame that finds nothing the half-scale pass misses doubles the interval to
    the next (5, 10, 20, then at most 25 frames); one that finds a small face brings it back to 5. Without back-off,
    every 5th frame stays full whatever it finds."""
    from detector.yunet import ScalePlan

    def run(plan: ScalePlan, frames: int, side_of) -> list[int]:
        full = []
        for frame in range(frames):
            if plan.next_factor() == 1.0:
                full.append(frame)
            side = side_of(frame)
            plan.record(np.array([[0, 0, side, side]], np.float32) if side else np.empty((0, 4), np.float32))
        return full

    assert run(ScalePlan(5, phase=5), 110, lambda frame: 140) == [0, 5, 15, 35, 60, 85]
    assert run(ScalePlan(5, phase=5, longest=5), 31, lambda frame: 140) == [0, 5, 10, 15, 20, 25, 30]
    # a small face (30 px) is in view from frame 35 to 40: found by the full frame at 35, every frame is full while
    # it is among the recent five, and the schedule starts backing off again from the first full frame without it
    assert run(ScalePlan(5, phase=5), 80, lambda frame: 30 if 35 <= frame <= 40 else 140) == [
        0, 5, 15, *range(35, 46), 55, 75
    ]  # fmt: skip
    # 60 px faces are sized by the three-quarter scale: full frames that find only those back off as well
    assert run(ScalePlan(5, phase=5), 40, lambda frame: 60)[:3] == [0, 5, 15]
    # nobody in view: the interval backs off too (a newcomer's large face is found at the reduced scale)
    assert run(ScalePlan(5, phase=5), 60, lambda frame: 0) == [0, 5, 15, 35]


def test_yunet_on_a_camera_finds_the_same_faces_for_a_fraction_of_the_pixels():
    """The bundled clip's frames (face boxes of ~78 px) as a camera sees them, with the server's default settings:
    every face the full-resolution detector finds is found, and what is found matches, for under half the pixels."""
    from binarycop.config import DetectorConfig
    from binarycop.democlip import clip_frames
    from detector import make_detector

    frames = clip_frames()[::2]
    camera = make_detector(DetectorConfig())
    full = make_detector(DetectorConfig(full_frame_every=1))
    assert camera.full_every == 5 and camera.full_longest == 25  # backing off to every 25th frame
    assert make_detector(DetectorConfig(full_frame_backoff=False)).full_longest == 5
    for frame in frames:
        seen, expected = camera.detect(frame, with_crops=False), full.detect(frame, with_crops=False)
        assert len(seen) == len(expected)
        if len(expected):
            assert _matched_ious(expected.boxes, seen.boxes).min() > 0.7
    assert sum(len(full.detect(frame, with_crops=False)) for frame in frames) >= 100
    assert camera.pixels < 0.45 * full.pixels


def test_bench_soak_samples_the_resident_memory_of_the_server_and_redis(capsys):
    """``bench soak`` for a few seconds: two real loopback MJPEG cameras through the whole server; the memory of
    every serving process (the server, its helper ingester where there are two cores, Redis) sampled from /proc,
    and the frames processed meanwhile."""
    import json

    from binarycop.cli import main
    from binarycop.config import usable_cores

    argv = ["-q", "bench", "soak", "--cameras", "2", "--minutes", "0.05", "--every", "1", "--warm-up", "0", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["detector"] == "yunet@1" and result["cameras"] == 2
    assert result["frames_processed"] > 0
    helpers = {"helper-1"} if usable_cores() >= 2 else set()
    assert set(result["processes"]) == {"server", "redis", *helpers}
    for figure in result["processes"].values():
        assert 0 < figure["start_mb"] <= figure["peak_mb"] and figure["end_mb"] <= figure["peak_mb"]
    assert len(result["samples"]) >= 3
    assert main(["-q", "bench", "soak", "--minutes", "0"]) == 2


def test_live_crops_are_cut_as_the_classifier_was_trained(tmp_path, shared_data):
    """A model file records its framing; the server's detector, made with the classifier's framing, cuts exactly
    those crops (here a square +40 % moved down by 20 %, as for a mask worn on the chin)."""
    from accel import load_model, make_classifier, save_model
    from binarycop.config import DetectorConfig
    from detector import make_detector

    model = load_model("n-cnv")
    model.meta["framing"] = {"margin": 0.4, "drop": 0.2}
    classifier = make_classifier("cpu", str(save_model(model, tmp_path / "chin.npz")))
    assert classifier.framing == Framing(0.4, 0.2)
    image = cv2.imread(str(next(shared_data.glob("scenes/misc/*masks_chin*"))))
    detector = make_detector(DetectorConfig(), classifier.framing)
    faces = detector.detect(image)
    assert len(faces) >= 2
    np.testing.assert_array_equal(faces.crops, crop_faces(image, faces.boxes, Framing(0.4, 0.2)))
    assert (faces.crops != crop_faces(image, faces.boxes)).any()  # not today's crops
    detector.close()


def test_bench_pipeline_runs_the_twin_beside_the_binary_engine(capsys):
    """``bench pipeline --classifier`` runs each classifier through the whole server on the same cameras: the FP32
    twin on onnxruntime beside the binary engine, both classifying real crops; a wrong pair is named."""
    import json

    from binarycop.cli import main

    argv = ["-q", "bench", "pipeline", "--cameras", "1", "--seconds", "1", "--json"]
    assert main([*argv, "--classifier", "cpu:n-cnv", "--classifier", "onnx:n-cnv-fp32"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [figure["classifier"] for figure in result["detectors"]] == ["cpu:n-cnv", "onnx:n-cnv-fp32"]
    assert [figure["classified_by"] for figure in result["detectors"]] == [["cpu"], ["onnx"]]
    assert main([*argv, "--classifier", "onnx:n-cnv"]) == 2
    assert "--classifier onnx:n-cnv: backend onnx runs a network's FP32 twin" in capsys.readouterr().err
