"""``binarycop bench faces``: share of small faces found in generated crowd frames, per tiling setting.

A crowd frame is a textured background with real faces pasted on a jittered grid, every face
scaled so that its detector box (BlazeFace on the full-resolution source picture) has the asked
side in pixels. The pasted boxes are the truth: a face counts as found when a detection overlaps
its box by IoU >= 0.4. Sources are MaskedFace-Net faces (masked, the four classes) and real
unmasked face crops from ``../shared/data``; nothing of them is stored in the project.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detector import iou_matrix

FOUND_IOU = 0.4
CONTEXT = 1.8  # side of the pasted patch, as a multiple of the face box's side
SOURCE_FOLDERS = (
    "maskedface/correct",
    "maskedface/nose",
    "maskedface/nose_mouth",
    "maskedface/chin",
    "unmasked/chandrikadeb7_without_mask",
)


@dataclass
class CrowdFrame:
    """A generated frame (BGR) and the true face boxes (N, 4) xyxy in it."""

    pixels: np.ndarray
    boxes: np.ndarray


def face_patches(data: Path, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` square patches centred on one real face each, the face box's side 1/CONTEXT of the patch's.

    The face box comes from BlazeFace (whole picture, no tiles) on the source picture; pictures where it
    finds not exactly one face are skipped."""
    from detector.blazeface import BlazeFaceDetector

    rng = np.random.default_rng(seed)
    paths = [p for folder in SOURCE_FOLDERS for p in sorted((data / folder).glob("*.jpg"))]
    if not paths:
        raise FileNotFoundError(f"no face pictures under {data} ({', '.join(SOURCE_FOLDERS)})")
    detector = BlazeFaceDetector(min_face_px=0, tile=0, keep_still=False)
    patches: list[np.ndarray] = []
    try:
        for path in rng.permutation(paths):
            image = cv2.imread(str(path))
            if image is None:
                continue
            faces = detector.detect(image, with_crops=False)
            if len(faces) != 1:
                continue
            patch = _square_patch(image, faces.boxes[0])
            if patch is not None:
                patches.append(patch)
            if len(patches) == count:
                break
    finally:
        detector.close()
    return patches


def _square_patch(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    centre = (box[:2] + box[2:]) / 2
    half = (box[2:] - box[:2]).max() * CONTEXT / 2
    x0, y0 = np.round(centre - half).astype(int)
    x1, y1 = np.round(centre + half).astype(int)
    pad = max(0, -x0, -y0, x1 - image.shape[1], y1 - image.shape[0])
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    patch = padded[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
    return patch if patch.size and patch.shape[0] == patch.shape[1] else None


def crowd_frame(patches: list[np.ndarray], width: int, height: int, face_px: int, seed: int = 0) -> CrowdFrame:
    """Every patch pasted once, face boxes of ``face_px`` pixels, on a grid of cells with random offsets."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    background = np.stack([80 + 70 * x / width, 100 + 50 * y / height, 150 - 60 * x / width], axis=-1)
    background += rng.normal(0, 8, (height, width, 1))
    frame = np.clip(background, 0, 255).astype(np.uint8)
    side = int(round(face_px * CONTEXT))
    columns = int(np.ceil(np.sqrt(len(patches) * width / height)))
    rows = int(np.ceil(len(patches) / columns))
    cell_w, cell_h = width // columns, height // rows
    if min(cell_w, cell_h) < side:
        raise ValueError(f"{len(patches)} faces of {face_px} px do not fit in {width}x{height}")
    boxes = []
    for index, patch in enumerate(patches):
        row, column = divmod(index, columns)
        left = column * cell_w + int(rng.integers(0, cell_w - side + 1))
        top = row * cell_h + int(rng.integers(0, cell_h - side + 1))
        frame[top : top + side, left : left + side] = cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA)
        margin = (side - face_px) / 2
        boxes.append([left + margin, top + margin, left + margin + face_px, top + margin + face_px])
    return CrowdFrame(frame, np.array(boxes, np.float32))


def found(truth: np.ndarray, detections: np.ndarray) -> int:
    """True faces matched one to one by a detection with IoU >= FOUND_IOU."""
    if not len(truth) or not len(detections):
        return 0
    overlaps = iou_matrix(truth, detections)
    matched = 0
    used: set[int] = set()
    for row in overlaps:
        for column in np.argsort(-row):
            if row[column] < FOUND_IOU:
                break
            if column not in used:
                used.add(int(column))
                matched += 1
                break
    return matched


def tile_of(name: str) -> int | None:
    """A tiling by name: 'off' (0), 'auto' (None) or a side in pixels (128 or more)."""
    if name in ("off", "auto"):
        return 0 if name == "off" else None
    if not name.isdigit() or int(name) < 128:
        raise ValueError(f"tiling {name!r}: use off, auto or a tile side of at least 128 pixels")
    return int(name)


def bench_faces(
    data: Path,
    sizes: tuple[int, ...] = (24, 32, 48),
    frames: tuple[tuple[int, int], ...] = ((1280, 720), (1920, 1080)),
    faces: int = 40,
    tilings: tuple[str, ...] = ("off", "auto", "320", "256", "192", "160"),
) -> dict:
    """Recall per frame size, face size and tiling, with inferences per frame (the cost)."""
    from detector.blazeface import BlazeFaceDetector

    patches = face_patches(data, faces)
    results = []
    for width, height in frames:
        for face_px in sizes:
            frame = crowd_frame(patches, width, height, face_px)
            for name in tilings:
                detector = BlazeFaceDetector(min_face_px=0, tile=tile_of(name), keep_still=False)
                try:
                    detected = detector.detect(frame.pixels, with_crops=False)
                finally:
                    detector.close()
                hits = found(frame.boxes, detected.boxes)
                results.append(
                    {
                        "frame": f"{width}x{height}",
                        "face_px": face_px,
                        "tile": name,
                        "faces": len(frame.boxes),
                        "found": hits,
                        "recall": hits / len(frame.boxes),
                        "inferences": detector.inferences,
                    }
                )
                print(
                    f"{width}x{height} faces {face_px} px, tile {name:>4}: {hits}/{len(frame.boxes)} found, "
                    f"{detector.inferences} inferences",
                    file=sys.stderr,
                )
    return {"faces_per_frame": len(patches), "found_iou": FOUND_IOU, "results": results}
