"""Classes from crops, the classifier the server loads: one ``Classifier`` interface, backends chosen by name and
imported lazily (``cpu``: the numba engine; ``onnx``: a network's FP32 twin on onnxruntime; ``torch``: the brevitas
reference; ``finn``: the FPGA, under
``accel/finn/``). Training, evaluation and export live in the ``lab`` package, which this one never imports."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from accel.arch import ARCHS, CLASSES, Arch, get_arch
from accel.model_file import BinaryModel, ModelFileError, load_model, resolve_model_path, save_model
from names import Framing

__all__ = [
    "ARCHS",
    "CLASSES",
    "Arch",
    "BinaryModel",
    "Classifier",
    "ModelFileError",
    "get_arch",
    "load_model",
    "make_classifier",
    "resolve_model_path",
    "save_model",
]
BACKENDS = ("cpu", "onnx", "torch", "finn")


class Classifier(Protocol):
    backend: str
    classes: tuple[str, ...]
    model_name: str
    framing: Framing  # how its crops must be cut (the detector cuts live crops so)

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """uint8 RGB (N, 32, 32, 3) -> class indices (N,)."""

    def scores(self, crops: np.ndarray) -> np.ndarray:
        """uint8 RGB (N, 32, 32, 3) -> integer scores (N, classes)."""


def make_classifier(backend: str, model: str, bitfile: str | None = None) -> Classifier:
    """``bitfile``: the FINN accelerator's bitstream, for the ``finn`` backend only."""
    if backend == "cpu":
        from accel.cpu import CpuClassifier

        return CpuClassifier(model)
    if backend == "onnx":
        from accel.onnx_backend import OnnxClassifier

        return OnnxClassifier(model)
    if backend == "torch":
        from accel.torch_backend import TorchClassifier

        return TorchClassifier(model)
    if backend == "finn":
        from accel.finn import FinnClassifier

        return FinnClassifier(model, bitfile)
    raise ValueError(f"unknown classifier backend {backend!r}; expected one of {BACKENDS}")
