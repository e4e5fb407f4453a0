"""Grad-CAM heat maps of a BinaryCoP network, at the paper's layer: the 5x5 output of conv group 2.

The binary network is differentiated through its straight-through estimators (brevitas),
exactly as in training. Each map is ReLU(sum_k w_k A_k) where A_k are the channels of the
pooled conv2_2 output and w_k the mean gradient of the class score over A_k.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from accel.nets import BinaryCoP, crops_to_tensor

CELL = 128  # pixels per picture in the overlay sheet
GRADCAM_AFTER_CONV = 3  # conv2_2 (0-based conv index 3), taken after its 2x2 max-pool: 5x5


def _features_and_scores(network: BinaryCoP, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The pooled conv2_2 activations (kept for gradients) and the class scores."""
    x, features = inputs, None
    for index, (conv, norm, sign) in enumerate(zip(network.convs, network.conv_norms, network.conv_signs)):
        x = sign(norm(conv(x)))
        if index in network.arch.pool_after:
            x = nn.functional.max_pool2d(x, 2)
        if index == GRADCAM_AFTER_CONV:
            features = x
            features.retain_grad()
    x = torch.flatten(x, 1)
    for fc, norm, sign in zip(network.fcs, network.fc_norms, network.fc_signs):
        x = sign(norm(fc(x)))
    return features, network.classifier(x)


def gradcam(network: BinaryCoP, crops: np.ndarray, targets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Maps (N, 5, 5) in [0, 1] for ``targets`` (default: the predicted classes), and the predictions."""
    network.eval()
    features, scores = _features_and_scores(network, crops_to_tensor(crops))
    predicted = scores.argmax(1).detach().numpy()
    chosen = torch.from_numpy(np.asarray(predicted if targets is None else targets, np.int64))
    network.zero_grad()
    scores.gather(1, chosen[:, None]).sum().backward()
    weights = features.grad.mean(dim=(2, 3), keepdim=True)
    maps = torch.relu((weights * features).sum(1)).detach().numpy()
    peak = maps.reshape(len(maps), -1).max(axis=1)[:, None, None]
    return np.where(peak > 0, maps / np.maximum(peak, 1e-12), 0.0), predicted


def load_network(model: str) -> tuple[BinaryCoP, tuple[str, ...]]:
    """The brevitas network beside a shipped model name or .npz path (its .pt checkpoint)."""
    from accel.torch_backend import TorchClassifier

    reference = TorchClassifier(model)
    return reference.network, reference.classes


def overlay(crop_rgb: np.ndarray, heat: np.ndarray, side: int = CELL) -> np.ndarray:
    """BGR picture: the crop with the heat map (jet) blended over it."""
    face = cv2.resize(cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2BGR), (side, side), interpolation=cv2.INTER_NEAREST)
    heat_image = cv2.resize((heat * 255).astype(np.uint8), (side, side), interpolation=cv2.INTER_CUBIC)
    return cv2.addWeighted(face, 0.5, cv2.applyColorMap(heat_image, cv2.COLORMAP_JET), 0.5, 0)


def sheet(crops: np.ndarray, maps: np.ndarray, labels: list[str]) -> np.ndarray:
    """One row per face, like the paper's figures: label, raw crop, BNN Grad-CAM."""
    rows = []
    for crop, heat, label in zip(crops, maps, labels):
        text = np.full((CELL, CELL, 3), 255, np.uint8)
        for line, words in enumerate(label.split("\n")):
            cv2.putText(text, words, (4, 40 + 22 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1, cv2.LINE_AA)
        raw = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), (CELL, CELL), interpolation=cv2.INTER_NEAREST)
        rows.append(np.concatenate([text, raw, overlay(crop, heat)], axis=1))
    header = np.full((24, 3 * CELL, 3), 255, np.uint8)
    for index, name in enumerate(("label", "raw", "BNN Grad-CAM")):
        cv2.putText(header, name, (index * CELL + 4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1, cv2.LINE_AA)
    return np.concatenate([header, *rows])


def gradcam_images(model: str, images: list[str], out: Path) -> list[str]:
    """A sheet per image (every detected face; the whole image when none is found) under ``out``."""
    from accel.scan import Scanner, read_image
    from detector.faces import crop_faces

    network, classes = load_network(model)
    scanner = Scanner(classifier=None)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in images:
        image = read_image(path)
        faces = scanner.detector.detect(image)
        crops = faces.crops if len(faces) else crop_faces(image, np.array([[0, 0, image.shape[1], image.shape[0]]]))
        maps, predicted = gradcam(network, crops)
        labels = [f"predicted\n{classes[int(p)]}" for p in predicted]
        target = out / f"{Path(path).stem}_gradcam.png"
        cv2.imwrite(str(target), sheet(crops, maps, labels))
        written.append(str(target))
    return written
