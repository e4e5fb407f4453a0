"""Real face crops without a label, for distillation only: the student learns the teacher's soft outputs on them.

A source is one of:
- a Pascal VOC scenes folder: every face the detector finds that matches no labelled box (background faces the
  annotators left out, profiles, blurred ones), grouped by image like the labelled ones, so a fold that holds
  out an image holds out its unlabelled faces too;
- a video file: the faces in every ``VIDEO_STRIDE``-th frame, the whole clip one group;
- a folder of images: every face found, each image its own group.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from detector import FRAMING, Framing, crop_faces, iou_matrix
from lab.dataset import IMAGE_SUFFIXES, CropMaker, CropSet, _load_cache, _source_keys, read_voc, save_crops

UNLABELLED = -1  # the label of every unlabelled crop
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov"}
VIDEO_STRIDE = 5
MIN_FACE_PX = 16  # smaller detections are too blurred at 32x32 to teach anything
UNMATCHED_IOU = 0.4  # a detection overlapping a labelled box this much is that (labelled) face


def load_unlabelled(sources: list[str], framing: Framing = FRAMING, cache: Path | None = None) -> CropSet:
    """Every source's unlabelled face crops (labels ``UNLABELLED``), cut with ``framing``; kept in ``cache`` (an
    .npz) when given and reused while the sources and the cut match."""
    if cache is not None and Path(cache).exists():
        return _load_cache(Path(cache), _source_keys(sources, framing))
    maker = CropMaker(framing)
    sets = [_load_one(Path(source), maker) for source in sources]
    if not sets:
        return CropSet(np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64), np.zeros(0, str))
    data = CropSet.concat(sets)
    if cache is not None:
        save_crops(Path(cache), data, sources, framing)
    return data


def _load_one(path: Path, maker: CropMaker) -> CropSet:
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        found = _video_faces(path, maker)
    elif (path / "annotations").is_dir() and (path / "images").is_dir():
        found = _unmatched_scene_faces(path, maker)
    elif path.is_dir():
        found = _folder_faces(path, maker)
    else:
        raise FileNotFoundError(f"unlabelled source {str(path)!r}: not a video, a VOC scenes folder or an image folder")
    crops = [crop for crops, _ in found for crop in crops]
    groups = [group for crops, group in found for _ in range(len(crops))]
    print(f"{path}: {len(crops)} unlabelled face crops", file=sys.stderr)
    labels = np.full(len(crops), UNLABELLED, np.int64)
    return CropSet(np.array(crops, np.uint8).reshape(-1, 32, 32, 3), labels, np.array(groups, str))


def _faces(image: np.ndarray, maker: CropMaker) -> np.ndarray:
    faces = maker.detector.detect(image, with_crops=False)
    sides = np.minimum(faces.boxes[:, 2] - faces.boxes[:, 0], faces.boxes[:, 3] - faces.boxes[:, 1])
    return faces.boxes[sides >= MIN_FACE_PX]


def _unmatched_scene_faces(root: Path, maker: CropMaker) -> list[tuple[np.ndarray, str]]:
    found = []
    for annotation in sorted((root / "annotations").glob("*.xml")):
        image_path = next((root / "images").glob(f"{annotation.stem}.*"), None)
        image = cv2.imread(str(image_path)) if image_path is not None else None
        if image is None:
            continue
        boxes = _faces(image, maker)
        truth, _ = read_voc(annotation)
        if len(boxes) and len(truth):
            boxes = boxes[iou_matrix(boxes, truth).max(axis=1) < UNMATCHED_IOU]
        if len(boxes):
            found.append((crop_faces(image, boxes, maker.framing), f"image:{annotation.stem}"))
    return found


def _video_faces(path: Path, maker: CropMaker) -> list[tuple[np.ndarray, str]]:
    capture = cv2.VideoCapture(str(path))
    found, index = [], 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % VIDEO_STRIDE == 0:
                boxes = _faces(frame, maker)
                if len(boxes):
                    found.append((crop_faces(frame, boxes, maker.framing), f"video:{path.stem}"))
            index += 1
    finally:
        capture.release()
    return found


def _folder_faces(root: Path, maker: CropMaker) -> list[tuple[np.ndarray, str]]:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        image = cv2.imread(str(path))
        boxes = _faces(image, maker) if image is not None else np.zeros((0, 4))
        if len(boxes):
            found.append((crop_faces(image, boxes, maker.framing), f"file:{path.parent.name}/{path.stem}"))
    return found
