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

from accel.nets import BinaryCoP, FloatCoP, crops_to_tensor

CELL = 128  # pixels per picture in the overlay sheet
GRADCAM_AFTER_CONV = 3  # conv2_2 (0-based conv index 3), taken after its 2x2 max-pool: 5x5


def _features_and_scores(network: BinaryCoP | FloatCoP, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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


def gradcam(
    network: BinaryCoP | FloatCoP, crops: np.ndarray, targets: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
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


def load_float_twin(model: str, classes: tuple[str, ...]) -> FloatCoP | None:
    """The FP32 twin ``<model>-fp32.pt`` beside the model file, or None where there is none."""
    from accel.model_file import load_model, resolve_model_path

    path = resolve_model_path(model)
    twin_path = path.with_name(f"{path.stem}-fp32.pt")
    if not twin_path.is_file():
        return None
    twin = FloatCoP(load_model(model).arch, len(classes))
    twin.load_state_dict(torch.load(twin_path, weights_only=True))
    return twin.eval()


def overlay(crop_rgb: np.ndarray, heat: np.ndarray, side: int = CELL) -> np.ndarray:
    """BGR picture: the crop with the heat map (jet) blended over it."""
    face = cv2.resize(cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2BGR), (side, side), interpolation=cv2.INTER_NEAREST)
    heat_image = cv2.resize((heat * 255).astype(np.uint8), (side, side), interpolation=cv2.INTER_CUBIC)
    return cv2.addWeighted(face, 0.5, cv2.applyColorMap(heat_image, cv2.COLORMAP_JET), 0.5, 0)


def sheet(crops: np.ndarray, maps: list[np.ndarray], columns: list[str], labels: list[str]) -> np.ndarray:
    """One row per face, like the paper's figures: label, raw crop, then one Grad-CAM per network."""
    rows = []
    for index, (crop, label) in enumerate(zip(crops, labels)):
        text = np.full((CELL, CELL, 3), 255, np.uint8)
        for line, words in enumerate(label.split("\n")):
            cv2.putText(text, words, (4, 40 + 22 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1, cv2.LINE_AA)
        raw = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), (CELL, CELL), interpolation=cv2.INTER_NEAREST)
        rows.append(np.concatenate([text, raw, *(overlay(crop, m[index]) for m in maps)], axis=1))
    names = ["label", "raw", *columns]
    header = np.full((24, len(names) * CELL, 3), 255, np.uint8)
    for index, name in enumerate(names):
        cv2.putText(header, name, (index * CELL + 4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1, cv2.LINE_AA)
    return np.concatenate([header, *rows])


def gradcam_images(model: str, images: list[str], out: Path) -> list[str]:
    """A sheet per image (every detected face; the whole image when none is found) under ``out``."""
    from accel import load_model
    from detector import crop_faces
    from lab.scan import Scanner, offline_detector, read_image

    network, classes = load_network(model)
    twin = load_float_twin(model, classes)
    framing = load_model(model).framing
    scanner = Scanner(classifier=None, detector=offline_detector(framing=framing))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in images:
        image = read_image(path)
        faces = scanner.detector.detect(image)
        whole = np.array([[0, 0, image.shape[1], image.shape[0]]])
        crops = faces.crops if len(faces) else crop_faces(image, whole, framing)
        maps, predicted = gradcam(network, crops)
        all_maps, columns = [maps], ["BNN Grad-CAM"]
        labels = [f"BNN:\n{classes[int(p)]}" for p in predicted]
        if twin is not None:
            twin_maps, twin_predicted = gradcam(twin, crops, predicted)  # same class, so maps compare
            all_maps.append(twin_maps)
            columns.append("FP32 Grad-CAM")
            labels = [f"{label}\nFP32:\n{classes[int(p)]}" for label, p in zip(labels, twin_predicted)]
        target = out / f"{Path(path).stem}_gradcam.png"
        cv2.imwrite(str(target), sheet(crops, all_maps, columns, labels))
        written.append(str(target))
    return written
