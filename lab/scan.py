"""Detect and classify every face in still images: what ``binarycop scan`` prints."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SCORE_TEMPERATURE = 8.0  # the integer scores over this are the logits the network was trained on


def class_confidence(scores: np.ndarray) -> np.ndarray:
    """Softmax probability of the winning class for integer scores (N, classes)."""
    logits = np.asarray(scores, np.float64) / SCORE_TEMPERATURE
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    return probabilities.max(axis=1) / probabilities.sum(axis=1)


def read_image(path: str | Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return image


def offline_detector(config=None, framing=None):
    """The server's default detector settings (or ``config``, a ``DetectorConfig``) for still images: each image
    examined on its own, as a camera's first frame is (nothing kept from the image before); crops cut with
    ``framing`` (a classifier's; the default when None)."""
    from binarycop.config import DetectorConfig
    from detector import make_detector

    config = (config or DetectorConfig()).model_copy(update={"keep_still": False})
    return StillImageDetector(make_detector(config, framing))


class StillImageDetector:
    """A frame detector used on unrelated images: its region schedule starts afresh for every image."""

    def __init__(self, detector):
        self.detector = detector

    def detect(self, image_bgr: np.ndarray, with_crops: bool = True):
        self.detector.reset()
        return self.detector.detect(image_bgr, with_crops)

    def close(self) -> None:
        self.detector.close()


class Scanner:
    """A detector (:func:`offline_detector` by default) and a classifier over whole images (BGR)."""

    def __init__(self, classifier, detector=None):
        self.detector = detector if detector is not None else offline_detector(framing=classifier.framing)
        self.classifier = classifier

    def scan(self, image_bgr: np.ndarray) -> list[dict]:
        """``[{"box": [x1, y1, x2, y2], "class": str, "score": float}]`` in the image's pixels."""
        faces = self.detector.detect(image_bgr)
        if not len(faces):
            return []
        scores = self.classifier.scores(faces.crops)
        predicted = scores.argmax(axis=1)
        confidence = class_confidence(scores)
        height, width = image_bgr.shape[:2]
        boxes = np.clip(faces.boxes, 0, [width, height, width, height])
        return [
            {
                "box": [round(float(v), 1) for v in box],
                "class": self.classifier.classes[int(label)],
                "score": round(float(score), 4),
            }
            for box, label, score in zip(boxes, predicted, confidence)
        ]

    def scan_files(self, paths: list[str]) -> list[dict]:
        return [{"image": str(path), "faces": self.scan(read_image(path))} for path in paths]
