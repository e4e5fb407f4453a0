"""Accuracy, per-class recall and confusion of a classifier on labelled crops; the confusion as a picture."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from accel.arch import CLASSES

CELL = 86  # pixels per confusion-matrix cell in the plot
LABEL_WIDTH = 170


def evaluate_crops(classifier, data) -> dict:
    """``{"accuracy", "per_class_recall", "confusion", "classes", "n"}``; rows are true classes.

    Predictions are the argmax over all of the model's classes, so a 4-class set scored by a
    5-class model counts a ``no_mask`` answer as an error (the paper's figures stay comparable).
    """
    classes = list(classifier.classes)
    names = np.array(CLASSES)[data.labels]
    missing = sorted(set(names) - set(classes))
    if missing:
        raise ValueError(f"the data holds classes {missing} that model {classifier.model_name!r} does not know")
    truth = np.array([classes.index(name) for name in names], np.int64)
    predicted = classifier.classify(data.crops) if len(data) else np.empty(0, np.int64)
    return confusion_report(truth, predicted, classes)


def confusion_report(truth: np.ndarray, predicted: np.ndarray, classes: list[str]) -> dict:
    """The evaluation document for integer labels ``truth`` and ``predicted`` into ``classes``."""
    confusion = np.zeros((len(classes), len(classes)), np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    support = confusion.sum(axis=1)
    recall = {name: float(confusion[i, i] / support[i]) for i, name in enumerate(classes) if support[i]}
    accuracy = float((predicted == truth).mean()) if len(truth) else 0.0
    return {
        "accuracy": accuracy,
        "per_class_recall": recall,
        "confusion": confusion.tolist(),
        "classes": list(classes),
        "n": int(len(truth)),
    }


def draw_confusion(result: dict, title: str = "", rows: list[str] | None = None) -> np.ndarray:
    """A BGR picture of ``result["confusion"]``: rows true (``rows``, default the classes), columns
    predicted, shaded by row share; a cell is 'right' where row and column name the same thing."""
    confusion = np.asarray(result["confusion"], np.int64)
    classes = result["classes"]
    row_names = rows or classes
    size = len(classes)
    top = 60 + (24 if title else 0)
    image = np.full((top + len(row_names) * CELL + 10, LABEL_WIDTH + size * CELL + 10, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    if title:
        cv2.putText(image, title, (8, 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, "predicted ->", (LABEL_WIDTH, top - 40), font, 0.45, (80, 80, 80), 1, cv2.LINE_AA)
    rows = np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    for j, name in enumerate(classes):
        cv2.putText(image, name[:10], (LABEL_WIDTH + j * CELL + 4, top - 8), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for i, name in enumerate(row_names):
        y = top + i * CELL
        cv2.putText(image, name[:21], (6, y + CELL // 2 + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for j in range(size):
            x = LABEL_WIDTH + j * CELL
            share = confusion[i, j] / rows[i, 0]
            shade = int(255 - 200 * share)
            right = _same(name, classes[j])
            colour = (255, shade, shade) if right else (shade, shade, 255)
            cv2.rectangle(image, (x, y), (x + CELL - 2, y + CELL - 2), colour, -1)
            text_colour = (255, 255, 255) if share > 0.6 else (0, 0, 0)
            cv2.putText(image, str(confusion[i, j]), (x + 6, y + 30), font, 0.55, text_colour, 1, cv2.LINE_AA)
            cv2.putText(image, f"{share:.0%}", (x + 6, y + 54), font, 0.45, text_colour, 1, cv2.LINE_AA)
    return image


def _same(row: str, column: str) -> bool:
    from lab.scenes import GROUP_OF_CLASS

    return row == column or GROUP_OF_CLASS.get(column) == row


def save_confusion_plot(
    result: dict, path: str | Path, title: str = "", rows: list[str] | None = None, option: str = "--plot"
) -> Path:
    return save_confusion_panels([(result, title, rows)], path, option)


def save_confusion_panels(panels: list[tuple[dict, str, list[str] | None]], path: str | Path, option: str) -> Path:
    """``draw_confusion`` of each ``(result, title, rows)``, one under the other, into the PNG ``path``."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{option} {path}: the confusion picture is written as PNG; give a .png file name")
    images = [draw_confusion(result, title, rows) for result, title, rows in panels]
    width = max(image.shape[1] for image in images)
    image = np.concatenate([np.pad(i, ((0, 0), (0, width - i.shape[1]), (0, 0)), constant_values=255) for i in images])
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")
    return path
