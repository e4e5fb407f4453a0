"""The ``onnx`` backend: a network's FP32 twin (``models/<name>-fp32.onnx``) on onnxruntime.

Not binary and not what the FPGA runs, but on a CPU the classifier is a small share of a camera's cost and the twin
is the more accurate network on real faces (docs/models.md); the binary ``cpu`` engine stays the default.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from accel.onnx_model import read_onnx_model
from names import Framing

THREADS = 1  # one intra-op thread: the server runs one classifier call at a time beside the cameras' detectors


class OnnxClassifier:
    """Classifies uint8 (N, 32, 32, 3) RGB crops with an FP32 twin on onnxruntime; same interface as ``cpu``."""

    backend = "onnx"

    def __init__(self, model: str | Path, threads: int = THREADS):
        import onnxruntime

        data, meta = read_onnx_model(model)
        self.meta = meta  # the sealed header: name, arch, classes, framing, the split its training held out
        self.model_name = str(meta["name"])
        self.classes = tuple(meta["classes"])
        self.framing = Framing.from_meta(meta.get("framing"))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def scores(self, crops: np.ndarray) -> np.ndarray:
        """Float logits (N, classes)."""
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (32, 32, 3) or crops.dtype != np.uint8:
            raise ValueError(f"crops must be uint8 (N, 32, 32, 3); got {crops.dtype} {crops.shape}")
        if not len(crops):
            return np.empty((0, len(self.classes)), np.float32)
        return self.session.run(None, {self.input_name: crops.astype(np.float32)})[0]

    def classify(self, crops: np.ndarray) -> np.ndarray:
        return np.argmax(self.scores(crops), axis=1)
