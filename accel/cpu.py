"""The ``cpu`` backend: the bit-exact XNOR-popcount engine over a folded model."""

from __future__ import annotations

import numpy as np

from accel import engine
from accel.model_file import BinaryModel, load_model


class CpuClassifier:
    """Classifies uint8 (N, 32, 32, 3) RGB crops with the folded binary network."""

    backend = "cpu"

    def __init__(self, model: BinaryModel | str):
        self.model = load_model(model) if isinstance(model, str) else model
        self.classes = self.model.classes
        arch = self.model.arch
        self._conv_fan_in = [9 * cin for cin, _, _, _ in arch.conv_shapes()]
        self._fc_fan_in = [arch.flat_features(), *arch.fc_features]
        self._pool_after = set(arch.pool_after)

    @property
    def model_name(self) -> str:
        return self.model.name

    def scores(self, crops: np.ndarray) -> np.ndarray:
        """Integer class scores (N, classes), equal to the torch reference's outputs."""
        crops = _check_crops(crops)
        model = self.model
        first_out = (model.arch.conv_channels[0] + 63) // 64
        x = engine.conv_first(crops, model.conv_weights[0], model.conv_thresholds[0], first_out)
        if 0 in self._pool_after:
            x = engine.max_pool2(x)
        for index in range(1, len(model.conv_weights)):
            weights, thresholds = model.conv_weights[index], model.conv_thresholds[index]
            x = engine.conv_binary(x, weights, thresholds, self._conv_fan_in[index])
            if index in self._pool_after:
                x = engine.max_pool2(x)
        x = np.ascontiguousarray(x.reshape(len(x), -1))
        for index, thresholds in enumerate(model.fc_thresholds):
            x = engine.dense_binary(x, model.fc_weights[index], thresholds, self._fc_fan_in[index])
        return engine.dense_scores(x, model.fc_weights[-1], self._fc_fan_in[-1])

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """Class indices (N,) into ``self.classes``; ties go to the first class, as in torch."""
        return np.argmax(self.scores(crops), axis=1)


def _check_crops(crops: np.ndarray) -> np.ndarray:
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[1:] != (32, 32, 3) or crops.dtype != np.uint8:
        raise ValueError(f"crops must be uint8 (N, 32, 32, 3); got {crops.dtype} {crops.shape}")
    return np.ascontiguousarray(crops)
