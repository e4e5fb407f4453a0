"""Accuracy, per-class recall and confusion of a classifier on labelled crops."""

from __future__ import annotations

import numpy as np

from accel.arch import CLASSES


def evaluate_crops(classifier, data) -> dict:
    """``{"accuracy", "per_class_recall", "confusion", "classes", "n"}``; rows are true classes."""
    classes = list(classifier.classes)
    names = np.array(CLASSES)[data.labels]
    truth = np.array([classes.index(name) for name in names], np.int64)
    predicted = classifier.classify(data.crops) if len(data) else np.empty(0, np.int64)
    confusion = np.zeros((len(classes), len(classes)), np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    support = confusion.sum(axis=1)
    recall = {name: float(confusion[i, i] / support[i]) for i, name in enumerate(classes) if support[i]}
    accuracy = float((predicted == truth).mean()) if len(truth) else 0.0
    return {
        "accuracy": accuracy,
        "per_class_recall": recall,
        "confusion": confusion.tolist(),
        "classes": classes,
        "n": int(len(truth)),
    }
