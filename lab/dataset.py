"""Labelled 32x32 crops for training and evaluation, framed exactly as the server frames them.

A data source is one of:
- ``DIR`` with class folders (``correct``, ``nose``, ``nose_mouth``, ``chin``, ``no_mask``) or
  MaskedFace-Net's original file names (``_Mask``, ``_Mask_Mouth_Chin``, ``_Mask_Chin``,
  ``_Mask_Nose_Mouth``), searched recursively;
- ``DIR`` holding ``annotations/`` and ``images/`` (Pascal VOC scenes: ``with_mask`` and
  ``without_mask`` boxes; ``mask_weared_incorrect`` has no position label: it is left out, or
  for training kept with the label ``INCORRECT``, "one of the three wrong positions");
- ``CLASS=DIR``: every image under DIR has that class.

A folder named ``incorrect`` (or ``incorrect=DIR``) holds faces wearing a mask wrongly, position unknown: ``INCORRECT``.
With ``exact_positions``, a VOC source's ``positions.csv`` (beside its annotations; ``lab.scenes.read_positions``)
labels its incorrectly worn faces at one of the three positions with that position; the rest keep ``INCORRECT``.

Each image is run through the face detector and cropped like a live frame; where the
detector misses (or for VOC boxes it does not match), the labelled box (or the whole image) is used.
"""

from __future__ import annotations

import hashlib
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from accel.arch import CLASSES
from detector import FRAMING, Framing, crop_faces, iou_matrix

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MFN_SUFFIXES = {  # longest first: "_Mask" is a suffix of nothing else, but check the others before it
    "_Mask_Mouth_Chin": "nose",
    "_Mask_Nose_Mouth": "chin",
    "_Mask_Chin": "nose_mouth",
    "_Mask": "correct",
}
HELD_OUT_PERCENT = 15  # share of FFHQ ids / scene images kept from training, shared by train and eval
VOC_LABELS = {"with_mask": "correct", "without_mask": "no_mask"}
# A label outside CLASSES for real faces known to wear a mask wrongly, position unknown
# (``mask_weared_incorrect``): training treats it as "one of nose, nose_mouth, chin".
INCORRECT = len(CLASSES)
INCORRECT_CLASSES = ("nose", "nose_mouth", "chin")


@dataclass
class CropSet:
    crops: np.ndarray  # uint8 (N, 32, 32, 3) RGB
    labels: np.ndarray  # int64 (N,) into CLASSES
    groups: np.ndarray  # str (N,): what must stay on one side of a split (FFHQ id, image)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> CropSet:
        return CropSet(self.crops[mask], self.labels[mask], self.groups[mask])

    @staticmethod
    def concat(sets: list[CropSet]) -> CropSet:
        return CropSet(
            np.concatenate([s.crops for s in sets]),
            np.concatenate([s.labels for s in sets]),
            np.concatenate([s.groups for s in sets]),
        )


INCORRECT_FOLDER = "incorrect"  # a folder (or ``incorrect=DIR``) of faces wearing a mask wrongly, position unknown


def class_of_path(path: Path) -> str | None:
    """The class a file's folder or MaskedFace-Net suffix names (``incorrect``: position unknown), or None."""
    for part in reversed(path.parent.parts):
        if part in CLASSES or part == INCORRECT_FOLDER:
            return part
    for suffix, name in MFN_SUFFIXES.items():
        if path.stem.endswith(suffix):
            return name
    return None


def split_of(group: str, held_out_percent: int = HELD_OUT_PERCENT, fold: tuple[int, int] | None = None) -> bool:
    """True for the held-out side: a stable hash of the group, so splits never mix one face.

    With ``fold=(k, n)`` the held-out side is the k-th (from 0) of n equal slices of the hash range instead:
    the n folds of a cross-validation, each group held out by exactly one of them.
    """
    bucket = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) % 100
    if fold is None:
        return bucket < held_out_percent
    k, n = fold
    if not 2 <= n <= 100 or not 0 <= k < n:
        raise ValueError(f"fold {k + 1} of {n}: expected 2 to 100 folds and a fold among them")
    return 100 * k // n <= bucket < 100 * (k + 1) // n


def held_out_mask(
    groups: np.ndarray, held_out_percent: int = HELD_OUT_PERCENT, fold: tuple[int, int] | None = None
) -> np.ndarray:
    """True where a crop's group is on the held-out side: training never sees these."""
    return np.array([split_of(str(group), held_out_percent, fold) for group in groups], bool)


def describe_held_out(held_out_percent: int = HELD_OUT_PERCENT, fold: tuple[int, int] | None = None) -> str:
    """How a model file records what its training held out ("15 %", "fold 2 of 6"): read by :func:`held_out_of`."""
    return f"fold {fold[0] + 1} of {fold[1]}" if fold else f"{held_out_percent} %"


def held_out_of(meta: dict) -> tuple[int, tuple[int, int] | None]:
    """``(held_out_percent, fold)`` a model was trained with, from its meta: evaluation holds out the same.
    Models from before the record held out the usual split."""
    text = meta.get("held_out")
    if text is None:
        return HELD_OUT_PERCENT, None
    fold = re.fullmatch(r"fold (\d+) of (\d+)", text)
    if fold:
        return HELD_OUT_PERCENT, (int(fold[1]) - 1, int(fold[2]))
    percent = re.fullmatch(r"(\d+) %", text)
    if percent:
        return int(percent[1]), None
    raise ValueError(f"model file: held_out {text!r}: expected 'P %' or 'fold K of N'")


def _group_of(path: Path) -> str:
    match = re.match(r"(\d{5})_Mask", path.stem)
    if match:
        return f"ffhq:{match.group(1)}"
    synthetic = re.fullmatch(r"(.+)__(.+)__(correct|nose|nose_mouth|chin)", path.stem)
    if synthetic:  # a masked copy (``binarycop synth``) stays on the side of the face it was made from
        return f"file:{synthetic.group(1)}/{synthetic.group(2)}"
    return f"file:{path.parent.name}/{path.stem}"


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


class CropMaker:
    """Detect-and-crop with the server's framing: the server's default detector (YuNet, boxes in BlazeFace's
    framing) on each image, down to 8 px faces. A miss leaves the whole image (aligned face crops) or the labelled
    box (scenes) as the crop."""

    def __init__(self, framing: Framing = FRAMING, exact_positions: bool = False, near_duplicates: bool = False):
        from binarycop.config import DetectorConfig
        from lab.scan import offline_detector

        self.detector = offline_detector(DetectorConfig(min_face_px=8))
        self.framing = framing
        self.exact_positions = exact_positions
        self.near_duplicates = near_duplicates  # folder sources: near-duplicate pictures share a group

    def largest_face(self, image: np.ndarray) -> np.ndarray:
        faces = self.detector.detect(image, with_crops=False)
        if not len(faces):
            return np.array([0, 0, image.shape[1], image.shape[0]], np.float32)  # aligned face crops
        areas = (faces.boxes[:, 2] - faces.boxes[:, 0]) * (faces.boxes[:, 3] - faces.boxes[:, 1])
        return faces.boxes[np.argmax(areas)]

    def matched_boxes(self, image: np.ndarray, truth: np.ndarray) -> np.ndarray:
        faces = self.detector.detect(image, with_crops=False)
        boxes = truth.copy()
        if len(faces) and len(truth):
            overlaps = iou_matrix(truth, faces.boxes)
            best = overlaps.argmax(axis=1)
            matched = overlaps.max(axis=1) >= 0.4
            boxes[matched] = faces.boxes[best[matched]]
        return boxes


def read_voc(path: Path) -> tuple[np.ndarray, list[str]]:
    root = ET.parse(path).getroot()
    boxes, names = [], []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        boxes.append([float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")])
        names.append(obj.find("name").text.strip())
    return np.array(boxes, np.float32).reshape(-1, 4), names


def load_source(
    source: str, maker: CropMaker | None = None, limit: int | None = None, with_incorrect: bool = False
) -> CropSet:
    maker = maker or CropMaker()
    forced, _, folder = source.rpartition("=") if "=" in source else ("", "", source)
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"data source {source!r}: no such directory")
    if forced and forced not in (*CLASSES, INCORRECT_FOLDER):
        raise ValueError(
            f"data source {source!r}: unknown class {forced!r}; expected one of {CLASSES} or {INCORRECT_FOLDER!r}"
        )
    if (root / "annotations").is_dir() and (root / "images").is_dir():
        return _load_voc(root, maker, limit, with_incorrect)
    crops, labels, groups, hashes = [], [], [], []
    for path in _images(root)[:limit]:
        name = forced or class_of_path(path)
        image = cv2.imread(str(path))
        if name is None or image is None:
            continue
        crops.append(crop_faces(image, maker.largest_face(image)[None], maker.framing)[0])
        labels.append(INCORRECT if name == INCORRECT_FOLDER else CLASSES.index(name))
        groups.append(_group_of(path))
        hashes.append(average_hash(image))
    if maker.near_duplicates:
        groups = near_duplicate_groups(np.array(hashes, np.uint64), groups)
    print(f"{source}: {len(labels)} crops, {len(set(groups))} groups", file=sys.stderr)
    return _cropset(crops, labels, groups)


NEAR_DUPLICATE_BITS = 6  # average hashes this close are one picture (a frame of the same video, a re-encoded copy)
_POPCOUNT = np.array([bin(byte).count("1") for byte in range(256)], np.uint8)


def average_hash(image: np.ndarray) -> int:
    """64-bit average hash: the 8x8 greyscale thumbnail's pixels above its mean."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (8, 8), interpolation=cv2.INTER_AREA).astype(np.float32)
    bits = (small > small.mean()).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def near_duplicate_groups(hashes: np.ndarray, groups: list[str]) -> list[str]:
    """``groups`` with every near-duplicate picture joined to the group of the first picture it resembles (leader
    clustering: a picture joins the earliest leader within ``NEAR_DUPLICATE_BITS``, else leads a group of its own;
    never chained, as 8x8 hashes of tightly cropped faces would chain thousands), so a split never puts one picture
    on both sides (frames of one webcam video, say)."""
    merged = list(groups)
    as_bytes = hashes.astype(">u8").view(np.uint8).reshape(-1, 8)
    leaders: list[int] = []
    for i in range(len(hashes)):
        if leaders:
            distances = _POPCOUNT[as_bytes[leaders] ^ as_bytes[i]].sum(axis=1)
            close = np.flatnonzero(distances <= NEAR_DUPLICATE_BITS)
            if len(close):
                merged[i] = merged[leaders[close[0]]]
                continue
        leaders.append(i)
    return merged


def _label_of_voc(name: str, with_incorrect: bool) -> int | None:
    if name in VOC_LABELS:
        return CLASSES.index(VOC_LABELS[name])
    return INCORRECT if with_incorrect and name == "mask_weared_incorrect" else None


def _exact_positions(root: Path) -> dict:
    """``(image file name, VOC box) -> class`` for the faces ``root``'s positions.csv puts at one of the positions."""
    from lab.scenes import POSITIONS, positions_file, read_positions

    path = positions_file(root)
    if path is None:
        return {}
    return {key: position for key, position in read_positions(path, root).items() if position in POSITIONS}


def _load_voc(root: Path, maker: CropMaker, limit: int | None, with_incorrect: bool = False) -> CropSet:
    crops, labels, groups = [], [], []
    exact = _exact_positions(root) if maker.exact_positions else {}
    for annotation in sorted((root / "annotations").glob("*.xml"))[:limit]:
        image = cv2.imread(str(root / "images" / f"{annotation.stem}.jpg"))
        if image is None:
            image = cv2.imread(str(root / "images" / f"{annotation.stem}.png"))
        if image is None:
            continue
        truth, names = read_voc(annotation)
        image_name = next((root / "images").glob(f"{annotation.stem}.*")).name
        face_labels = [
            CLASSES.index(exact[(image_name, tuple(box))])
            if (image_name, tuple(box)) in exact
            else _label_of_voc(name, with_incorrect)
            for box, name in zip(truth.tolist(), names)
        ]
        keep = np.array([label is not None for label in face_labels], bool)
        if not keep.any():
            continue
        boxes = maker.matched_boxes(image, truth[keep])
        crops.extend(crop_faces(image, boxes, maker.framing))
        labels.extend(label for label in face_labels if label is not None)
        groups.extend([f"image:{annotation.stem}"] * len(boxes))
    print(f"{root}: {len(labels)} crops from VOC boxes", file=sys.stderr)
    return _cropset(crops, labels, groups)


def _cropset(crops: list, labels: list, groups: list) -> CropSet:
    return CropSet(
        np.array(crops, np.uint8).reshape(-1, 32, 32, 3),
        np.array(labels, np.int64),
        np.array(groups, dtype=str),
    )


def _source_keys(
    sources: list[str], framing: Framing = FRAMING, exact_positions: bool = False, near_duplicates: bool = False
) -> list[str]:
    """Sources with their folders made absolute, and how they were cut, so a cache records what it was made from."""
    keys = []
    for source in sources:
        forced, _, folder = source.rpartition("=") if "=" in source else ("", "", source)
        keys.append(f"{forced}={Path(folder).resolve()}" if forced else str(Path(folder).resolve()))
    if framing != FRAMING:
        keys.append(f"framing: margin {framing.margin:g}, drop {framing.drop:g}")
    if exact_positions:
        keys.append("exact positions")
    if near_duplicates:
        keys.append("near-duplicates grouped")
    return keys


def save_crops(
    cache: Path,
    data: CropSet,
    sources: list[str],
    framing: Framing = FRAMING,
    exact_positions: bool = False,
    near_duplicates: bool = False,
) -> None:
    """Keep ``data`` (made from ``sources``, cut as the other arguments say, incorrectly worn included) in ``cache``."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    keys = np.array(_source_keys(sources, framing, exact_positions, near_duplicates))
    np.savez(cache, crops=data.crops, labels=data.labels, groups=data.groups, sources=keys)


def _load_cache(cache: Path, keys: list[str]) -> CropSet | None:
    with np.load(cache) as saved:
        if "sources" not in saved:
            print(f"{cache}: a crop cache that does not record its sources; making it again", file=sys.stderr)
            return None
        recorded = saved["sources"].tolist()
        if recorded != keys:
            raise ValueError(
                f"crop cache {cache} was made from {recorded}, not from {keys}: give another --cache path or delete it"
            )
        return CropSet(saved["crops"], saved["labels"], saved["groups"])


def load_sources(
    sources: list[str],
    cache: Path | None = None,
    with_incorrect: bool = False,
    framing: Framing = FRAMING,
    exact_positions: bool = False,
    near_duplicates: bool = False,
) -> CropSet:
    """All sources' crops cut with ``framing``, kept in ``cache`` (an .npz) when given and reused while the sources
    and the cut match. ``near_duplicates``: near-duplicate pictures of a folder source share a group (a split keeps
    them on one side), for sources such as ``extra/improper_mask`` where one webcam video gives hundreds."""
    keys = _source_keys(sources, framing, exact_positions, near_duplicates)
    data = _load_cache(cache, keys) if cache is not None and cache.exists() else None
    if data is None:
        maker = CropMaker(framing, exact_positions, near_duplicates)
        data = CropSet.concat([load_source(source, maker, with_incorrect=True) for source in sources])
        if cache is not None:
            save_crops(cache, data, sources, framing, exact_positions, near_duplicates)
    return data if with_incorrect else data.subset(data.labels < INCORRECT)
