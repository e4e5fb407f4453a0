"""Scoring on real scenes with Pascal VOC face boxes (``with_mask``, ``without_mask``, ``mask_weared_incorrect``).

Only images on the held-out side of the split training uses (``lab.dataset.split_of`` on
``image:<name>``) are scored, so a model is never measured on scenes it was trained on.

- detection: share of labelled faces a detected box overlaps with IoU >= 0.4 (one detection per
  face, greedy by IoU), for all faces and for faces whose smaller side is >= ``min_face_px`` (also
  per VOC group: a detector that misses masked faces skews every compliance figure);
- end to end: on the matched faces >= ``min_face_px``, the classes from the detector's crops, as
  recall of each VOC group and their mean (balanced 3-way accuracy);
- ground-truth boxes: the same recalls with crops of the labelled boxes (the classifier alone);
- operator: the compliance the server would report (faces called ``correct`` / every face it counts, false
  detections and faces missing a label included) against the truth (``with_mask`` / labelled faces >= ``min_face_px``),
  overall and as the mean absolute error over fixed groups of ``GROUP_PHOTOS`` photos (grouped by a hash of the file
  name, so the groups do not depend on the detector), and the share of non-compliant faces flagged non-compliant;
- positions (with ``positions.csv`` beside ``annotations/``, or another such file): for the incorrectly worn faces
  labelled by hand with their exact position (``nose``, ``nose_mouth``, ``chin``), the recall of that exact position
  with its support and 95 % interval, the position x class confusion (a mask on the chin called ``no_mask`` is a wrong
  position), and the macro mean over ``nose`` and ``nose_mouth`` (``chin`` is 7 of 296 real faces: too few to weigh
  equally), end to end and with ground-truth boxes. Faces labelled ``other`` (none of the paper's positions),
  ``unsure`` or ``correct`` (the VOC label was wrong) are reported apart, as counts of what they were called, and left
  out of every position figure.
"""

from __future__ import annotations

import csv
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detector import crop_faces, iou_matrix
from lab.dataset import HELD_OUT_PERCENT, describe_held_out, read_voc, split_of

GROUPS = ("with_mask", "mask_weared_incorrect", "without_mask")
GROUP_OF_CLASS = {
    "correct": "with_mask",
    "nose": "mask_weared_incorrect",
    "nose_mouth": "mask_weared_incorrect",
    "chin": "mask_weared_incorrect",
    "no_mask": "without_mask",
}
MATCH_IOU = 0.4
GROUP_PHOTOS = 25
POSITIONS_FILE = "positions.csv"
POSITIONS = ("nose", "nose_mouth", "chin")  # the paper's incorrect positions: the position figures
MACRO_POSITIONS = ("nose", "nose_mouth")
APART = ("correct", "other", "unsure")  # labelled, but not one of POSITIONS: reported apart
POSITION_COLUMNS = ("image", "xmin", "ymin", "xmax", "ymax", "position")


@dataclass
class Scene:
    name: str
    image_path: Path
    boxes: np.ndarray  # float32 (N, 4) xyxy
    groups: list[str]  # one of GROUPS per box

    def read(self) -> np.ndarray:
        """The scene's image (BGR)."""
        image = cv2.imread(str(self.image_path))
        if image is None:
            raise ValueError(f"{self.image_path}: not a readable image")
        return image

    def large(self, min_face_px: int) -> np.ndarray:
        """True for the boxes whose smaller side is ``min_face_px`` or more: the faces that are scored."""
        return np.minimum(self.boxes[:, 2] - self.boxes[:, 0], self.boxes[:, 3] - self.boxes[:, 1]) >= min_face_px


def scene_split(
    root: Path, split: str = "held-out", held_out_percent: int = HELD_OUT_PERCENT, fold: tuple[int, int] | None = None
) -> list[Scene]:
    """Labelled scenes under ``root`` (``annotations/*.xml`` + ``images/``): 'held-out', 'train' or 'all'
    (held out by the usual split, or by cross-validation ``fold`` (k, n): see ``lab.dataset.split_of``)."""
    if split not in ("held-out", "train", "all"):
        raise ValueError(f"split {split!r}: expected 'held-out', 'train' or 'all'")
    annotations = Path(root) / "annotations"
    if not annotations.is_dir() or not (Path(root) / "images").is_dir():
        raise FileNotFoundError(f"{root}: expected Pascal VOC scenes (annotations/ and images/)")
    scenes = []
    for annotation in sorted(annotations.glob("*.xml")):
        held_out = split_of(f"image:{annotation.stem}", held_out_percent, fold)
        if (split == "held-out" and not held_out) or (split == "train" and held_out):
            continue
        image_path = next((p for p in (Path(root) / "images").glob(f"{annotation.stem}.*")), None)
        boxes, names = read_voc(annotation)
        keep = [i for i, name in enumerate(names) if name in GROUPS]
        if image_path is None or not keep:
            continue
        scenes.append(Scene(annotation.stem, image_path, boxes[keep], [names[i] for i in keep]))
    return scenes


def positions_file(root: Path, path: Path | None = None) -> Path | None:
    """``path`` (which must exist), else ``root/positions.csv`` when present, else None (no position figures)."""
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--positions {path}: no such file")
        return Path(path)
    default = Path(root) / POSITIONS_FILE
    return default if default.is_file() else None


PositionTable = dict[tuple[str, tuple[float, float, float, float]], str]


def read_positions(path: Path, root: Path) -> PositionTable:
    """The hand-labelled position of incorrectly worn faces: ``(image file name, VOC box) -> position``.

    Every row must name a box of that image's VOC annotation under ``root`` exactly (the CSV's boxes are the VOC
    boxes) labelled ``mask_weared_incorrect``, once; anything else is an error naming the row."""
    boxes = {
        (scene.image_path.name, tuple(box)): group
        for scene in scene_split(root, "all")
        for box, group in zip(scene.boxes.tolist(), scene.groups)
    }
    try:
        return _read_positions(path, root, boxes)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def _read_positions(path: Path, root: Path, boxes: dict) -> PositionTable:
    """The table, strictly: a quote left open or a field over the csv module's limit (128 KiB) is an error naming its
    line, and what the file holds is shown with control characters escaped (a terminal must not obey them)."""

    def shown(value) -> str:
        return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(value))

    images = {image for image, _ in boxes}
    table: PositionTable = {}
    lines: dict = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:  # a spreadsheet may write a BOM
        reader = csv.DictReader(handle, strict=True)
        rows, start = [], 1
        try:
            missing = [column for column in POSITION_COLUMNS if column not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(
                    f"{path}: no column {', '.join(missing)}; expected the header {','.join(POSITION_COLUMNS)}[,note]"
                )
            while (start := reader.line_num + 1) and (row := next(reader, None)) is not None:
                rows.append((reader.line_num, row))
        except csv.Error as error:  # an unclosed quote (it swallowed the rest of the file), a field too large
            raise ValueError(f"{path} line {start}: not a readable CSV row ({error})") from None
    for line, row in rows:
        where = f"{path} line {line} ({shown(','.join(str(row.get(c)) for c in POSITION_COLUMNS))})"
        position = (row["position"] or "").strip()
        if position not in POSITIONS + APART:
            raise ValueError(
                f"{where}: position {shown(repr(position))}: expected one of {', '.join(POSITIONS + APART)}"
            )
        try:
            box = tuple(float(row[column]) for column in POSITION_COLUMNS[1:5])
        except (TypeError, ValueError):
            raise ValueError(f"{where}: xmin, ymin, xmax, ymax must be numbers") from None
        image = (row["image"] or "").strip()
        key = (image, box)
        if image not in images:
            raise ValueError(f"{where}: no labelled scene image {shown(repr(image))} under {root}")
        if key not in boxes:
            raise ValueError(f"{where}: {shown(image)} has no VOC box at {','.join(f'{v:g}' for v in box)}")
        if boxes[key] != "mask_weared_incorrect":
            raise ValueError(f"{where}: that VOC box is labelled {boxes[key]}, not mask_weared_incorrect")
        if key in table:
            raise ValueError(f"{where}: the same box as line {lines[key]}")
        table[key] = position
        lines[key] = line
    return table


def positions_of(scene: Scene, table: PositionTable) -> list[str | None]:
    """Per box of ``scene``: its labelled position, None for an unlabelled incorrectly worn face, "" for the rest."""
    return [
        table.get((scene.image_path.name, tuple(box))) if group == "mask_weared_incorrect" else ""
        for box, group in zip(scene.boxes.tolist(), scene.groups)
    ]


def position_recalls(true_positions: list[str | None], predicted_classes: list[str], classes: tuple[str, ...]) -> dict:
    """For incorrectly worn faces (``true_positions``: labelled position or None): exact-position recall per position
    with support and 95 % interval, the share called any incorrect position, the position x class confusion, the
    macro mean over ``MACRO_POSITIONS``; faces labelled ``APART`` as counts of what they were called."""
    confusion = np.zeros((len(POSITIONS), len(classes)), np.int64)
    apart = {name: dict.fromkeys(classes, 0) for name in APART}
    unlabelled = 0
    for position, name in zip(true_positions, predicted_classes, strict=True):
        if position is None:
            unlabelled += 1
        elif position in POSITIONS:
            confusion[POSITIONS.index(position), classes.index(name)] += 1
        else:
            apart[position][name] += 1
    incorrect = [j for j, c in enumerate(classes) if GROUP_OF_CLASS.get(c) == "mask_weared_incorrect"]
    recall, support, interval, group, group_interval = {}, {}, {}, {}, {}
    for row, position in enumerate(POSITIONS):
        n = support[position] = int(confusion[row].sum())
        hits = int(confusion[row, classes.index(position)]) if position in classes else 0
        recall[position] = hits / n if n else None
        interval[position] = wilson_interval(hits, n)
        some = int(confusion[row, incorrect].sum())
        group[position] = some / n if n else None
        group_interval[position] = wilson_interval(some, n)
    macro = [recall[p] for p in MACRO_POSITIONS]
    n = int(confusion.sum())
    exact = sum(int(confusion[r, classes.index(p)]) for r, p in enumerate(POSITIONS) if p in classes)
    some = int(confusion[:, incorrect].sum())
    return {
        "n": n,
        "positions": list(POSITIONS),
        "recall": recall,
        "support": support,
        "recall_interval_95": interval,
        "macro_mean": float(np.mean(macro)) if all(r is not None for r in macro) else None,
        "macro_positions": list(MACRO_POSITIONS),
        "exact": exact / n if n else None,
        "exact_interval_95": wilson_interval(exact, n),
        "some_incorrect": group,
        "some_incorrect_interval_95": group_interval,
        "some_incorrect_all": some / n if n else None,
        "some_incorrect_all_interval_95": wilson_interval(some, n),
        "confusion": confusion.tolist(),
        "classes": list(classes),
        "apart": {name: {"n": sum(called.values()), "called": called} for name, called in apart.items()},
        "unlabelled": unlabelled,
    }


def match_boxes(truth: np.ndarray, found: np.ndarray, threshold: float = MATCH_IOU) -> np.ndarray:
    """For each true box the index of its detection, or -1; each detection matches one box at most."""
    matched = np.full(len(truth), -1, np.int64)
    if not len(truth) or not len(found):
        return matched
    overlaps = iou_matrix(truth, found)
    pairs = np.argwhere(overlaps >= threshold)
    taken: set[int] = set()
    for t, f in sorted(pairs.tolist(), key=lambda pair: -overlaps[pair[0], pair[1]]):
        if matched[t] < 0 and f not in taken:
            matched[t] = f
            taken.add(f)
    return matched


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The 95 % Wilson score interval of a proportion ``hits / n`` (sound for small ``n`` and for 0 or n hits)."""
    if n == 0:
        return None
    share = hits / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def group_recalls(true_groups: list[str], predicted_classes: list[str], classes: tuple[str, ...]) -> dict:
    """Recall per VOC group with its support and 95 % interval (the held-out groups are small: 25
    incorrectly worn faces move that recall 4 points each), their mean, and the group x class confusion."""
    confusion = np.zeros((len(GROUPS), len(classes)), np.int64)
    for group, name in zip(true_groups, predicted_classes):
        confusion[GROUPS.index(group), classes.index(name)] += 1
    recall, support, interval = {}, {}, {}
    for row, group in enumerate(GROUPS):
        support[group] = int(confusion[row].sum())
        hits = int(sum(confusion[row, classes.index(c)] for c in classes if GROUP_OF_CLASS.get(c) == group))
        recall[group] = hits / support[group] if support[group] else None
        interval[group] = wilson_interval(hits, support[group])
    present = [value for value in recall.values() if value is not None]
    return {
        "n": int(len(true_groups)),
        "recall": recall,
        "support": support,
        "recall_interval_95": interval,
        "mean": float(np.mean(present)) if present else None,
        "confusion": confusion.tolist(),
    }


def photo_groups(names: list[str], size: int = GROUP_PHOTOS) -> list[list[int]]:
    """Indices of ``names`` in fixed groups of ``size`` photos: ordered by a hash of the name and cut in runs (a
    remainder under half a group joins the last group)."""
    order = sorted(range(len(names)), key=lambda i: hashlib.sha256(names[i].encode()).hexdigest())
    groups = [order[start : start + size] for start in range(0, len(order), size)]
    if len(groups) > 1 and len(groups[-1]) < size / 2:
        groups[-2] += groups.pop()
    return groups


def operator_compliance(photos: list[dict], names: list[str]) -> dict:
    """What a venue reads against the truth. ``photos``: per photo ``counted`` (faces the server counts), ``called``
    (of them called ``correct``), ``truth`` (labelled faces >= min px), ``truth_correct`` (``with_mask`` among them),
    ``noncompliant`` (labelled non-compliant faces) and ``flagged`` (of them found and called anything but correct)."""

    def rates(chosen: list[dict]) -> tuple[float | None, float | None]:
        counted, called = sum(p["counted"] for p in chosen), sum(p["called"] for p in chosen)
        truth, truth_correct = sum(p["truth"] for p in chosen), sum(p["truth_correct"] for p in chosen)
        return (called / counted if counted else None), (truth_correct / truth if truth else None)

    read, truth = rates(photos)
    errors = []
    for group in photo_groups(names):
        group_read, group_truth = rates([photos[i] for i in group])
        if group_truth is not None:
            errors.append((group_read if group_read is not None else 0.0) - group_truth)  # nothing counted reads 0
    noncompliant, flagged = sum(p["noncompliant"] for p in photos), sum(p["flagged"] for p in photos)
    return {
        "compliance_read": read,
        "compliance_true": truth,
        "faces_counted": int(sum(p["counted"] for p in photos)),
        "faces_true": int(sum(p["truth"] for p in photos)),
        "groups": len(errors),
        "group_photos": GROUP_PHOTOS,
        "mean_abs_error": float(np.mean(np.abs(errors))) if errors else None,
        "mean_error": float(np.mean(errors)) if errors else None,
        "noncompliant_flagged": flagged / noncompliant if noncompliant else None,
        "noncompliant_flagged_interval_95": wilson_interval(flagged, noncompliant),
        "noncompliant": int(noncompliant),
    }


def evaluate_scenes(
    classifiers: list,
    root: Path,
    detector=None,
    min_face_px: int = 24,
    split: str = "held-out",
    held_out_percent: int = HELD_OUT_PERCENT,
    fold: tuple[int, int] | None = None,
    positions: Path | None = None,
) -> list[dict]:
    """One result per classifier; the detector runs once per image for all of them (its boxes do not depend
    on the classifier, and detection is most of an evaluation's time); each classifier's crops are cut with its own
    framing, from the detector's boxes and from the labelled ones. ``held_out_percent`` and ``fold``: the
    split the classifiers' training held out (``lab.dataset.held_out_of``). ``positions``: a positions CSV
    (``read_positions``; checked whole before any image is scored), for the position figures."""
    table = read_positions(positions, root) if positions is not None else None
    if detector is None:
        from lab.scan import offline_detector

        detector = offline_detector()
    scenes = scene_split(root, split, held_out_percent, fold)
    found_all = found_large = total_large = total = 0
    group_found = dict.fromkeys(GROUPS, 0)
    group_total = dict.fromkeys(GROUPS, 0)
    e2e_truth, gt_truth = [], []
    e2e_positions: list[str | None] = []  # per scored face: as ``positions_of``
    gt_positions: list[str | None] = []
    e2e_pred: list[list[str]] = [[] for _ in classifiers]
    gt_pred: list[list[str]] = [[] for _ in classifiers]
    photos: list[list[dict]] = [[] for _ in classifiers]
    for index, scene in enumerate(scenes):
        image = scene.read()
        faces = detector.detect(image, with_crops=False)  # each classifier's own crops are cut below
        matched = match_boxes(scene.boxes, faces.boxes)
        large = scene.large(min_face_px)
        total += len(scene.boxes)
        total_large += int(large.sum())
        found_all += int((matched >= 0).sum())
        found_large += int(((matched >= 0) & large).sum())
        for t in np.flatnonzero(large):
            group_total[scene.groups[t]] += 1
            group_found[scene.groups[t]] += int(matched[t] >= 0)
        found_here = np.flatnonzero((matched >= 0) & large)
        e2e_truth.extend(scene.groups[t] for t in found_here)
        gt_truth.extend(scene.groups[t] for t in np.flatnonzero(large))
        if table is not None:
            labelled = positions_of(scene, table)
            e2e_positions.extend(labelled[t] for t in found_here)
            gt_positions.extend(labelled[t] for t in np.flatnonzero(large))
        groups_large = [scene.groups[t] for t in np.flatnonzero(large)]
        noncompliant = [t for t in np.flatnonzero(large) if scene.groups[t] != "with_mask"]
        for classifier, e2e, gt, counts in zip(classifiers, e2e_pred, gt_pred, photos):
            framing = classifier.framing
            detected = crop_faces(image, faces.boxes, framing) if len(faces) else None
            detected_classes = classifier.classify(detected) if len(faces) else np.empty(0, np.int64)
            truth_crops = crop_faces(image, scene.boxes[large], framing) if large.any() else None
            named = [classifier.classes[c] for c in detected_classes]
            e2e.extend(named[matched[t]] for t in found_here)
            counts.append(
                {
                    "counted": len(named),
                    "called": named.count("correct"),
                    "truth": len(groups_large),
                    "truth_correct": groups_large.count("with_mask"),
                    "noncompliant": len(noncompliant),
                    "flagged": sum(matched[t] >= 0 and named[matched[t]] != "correct" for t in noncompliant),
                }
            )
            if truth_crops is not None:
                gt.extend(classifier.classes[c] for c in classifier.classify(truth_crops))
        if (index + 1) % 50 == 0:
            print(f"scenes: {index + 1}/{len(scenes)} images", file=sys.stderr)
    detection = {
        "recall_all": found_all / total if total else None,
        "recall_min_px": found_large / total_large if total_large else None,
        "recall_min_px_by_group": {g: group_found[g] / group_total[g] if group_total[g] else None for g in GROUPS},
        "match_iou": MATCH_IOU,
    }
    results = []
    names = [scene.name for scene in scenes]
    for classifier, e2e, gt, counts in zip(classifiers, e2e_pred, gt_pred, photos):
        classes = tuple(classifier.classes)
        results.append(
            {
                "model": classifier.model_name,
                "split": split,
                "held_out": describe_held_out(held_out_percent, fold),
                "images": len(scenes),
                "faces": total,
                "faces_min_px": total_large,
                "min_face_px": min_face_px,
                "detection": detection,
                "end_to_end": group_recalls(e2e_truth, e2e, classes),
                "ground_truth_boxes": group_recalls(gt_truth, gt, classes),
                "operator": operator_compliance(counts, names),
                "positions": None
                if table is None
                else {
                    "file": str(positions),
                    "rows": len(table),
                    "end_to_end": _position_part(e2e_positions, e2e, classes),
                    "ground_truth_boxes": _position_part(gt_positions, gt, classes),
                },
                "classes": list(classes),
                "groups": list(GROUPS),
            }
        )
    return results


def _position_part(positions: list[str | None], predicted: list[str], classes: tuple[str, ...]) -> dict:
    """``position_recalls`` over the incorrectly worn faces among scored faces (``positions``: as ``positions_of``)."""
    mine = [i for i, position in enumerate(positions) if position != ""]
    return position_recalls([positions[i] for i in mine], [predicted[i] for i in mine], classes)
