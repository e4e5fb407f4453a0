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
