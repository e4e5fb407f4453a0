"""The ``cpu`` backend: the bit-exact XNOR-popcount engine over a folded model."""

from __future__ import annotations

import numpy as np
from numba import typed

from accel import engine
from accel.model_file import BinaryModel, load_model

SERIAL_BELOW = 16  # smaller batches run on the calling thread: no hand-off to the thread pool
SMALL_MAP = 4  # conv outputs this small run as dense layers over their 3x3 patches
CHUNK = 16  # crops per work item: small enough to spread a batch over the cores, large enough to amortise


class CpuClassifier:
    """Classifies uint8 (N, 32, 32, 3) RGB crops with the folded binary network."""

    backend = "cpu"

    def __init__(self, model: BinaryModel | str):
        self.model = load_model(model) if isinstance(model, str) else model
        self.classes = self.model.classes
        self.framing = self.model.framing
        arch = self.model.arch
        model = self.model
        n_conv = len(model.conv_weights)
        self._first_index, self._first_sign = engine.first_layer_combos(model.conv_weights[0])
        self._first_t = model.conv_thresholds[0]
        shapes = arch.conv_shapes()[1:]
        # per layer: 0 small map (vectorised over output channels), 1 plain, >1 taps sharing a word
        self._conv_group = np.array(
            [0 if out_size <= SMALL_MAP else min(3, 64 // cin) if cin <= 32 else 1 for cin, _, _, out_size in shapes],
            np.int64,
        )
        self._conv_w = typed.List(
            [_layout(w, cin, g) for w, (cin, _, _, _), g in zip(model.conv_weights[1:], shapes, self._conv_group)]
        )
        self._conv_t = typed.List(model.conv_thresholds[1:])
        self._conv_fan = np.array([9 * cin for cin, _, _, _ in arch.conv_shapes()[1:]], np.int64)
        self._pool_after = np.array([i in arch.pool_after for i in range(n_conv)], np.bool_)
        fc_weights = [_planar_flatten(model.fc_weights[0], arch), *model.fc_weights[1:]]
        self._fc_w = typed.List([np.ascontiguousarray(w.T) for w in fc_weights])  # (Win, Cout)
        self._fc_t = typed.List(model.fc_thresholds)
        self._fc_fan = np.array([arch.flat_features(), *arch.fc_features], np.int64)

    @property
    def model_name(self) -> str:
        return self.model.name

    def scores(self, crops: np.ndarray) -> np.ndarray:
        """Integer class scores (N, classes), equal to the torch reference's outputs."""
        crops = _check_crops(crops)
        scores = np.empty((len(crops), len(self.classes)), np.int32)
        if not len(crops):
            return scores
        arguments = (
            self._first_index,
            self._first_sign,
            self._first_t,
            self._conv_w,
            self._conv_t,
            self._conv_fan,
            self._conv_group,
            self._pool_after,
            self._fc_w,
            self._fc_t,
            self._fc_fan,
            scores,
        )
        if len(crops) < SERIAL_BELOW:
            engine.forward_chunk(crops, 0, len(crops), *arguments)
        else:
            engine.forward(crops, CHUNK, *arguments)
        return scores

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """Class indices (N,) into ``self.classes``; ties go to the first class, as in torch."""
        return np.argmax(self.scores(crops), axis=1)


def _layout(weights: np.ndarray, channels: int, group: int) -> np.ndarray:
    """Packed (Cout, 3, 3, Win) weights in the layout the layer's kernel reads."""
    if group == 0:  # (1, 1, 9 * Win, Cout)
        return np.ascontiguousarray(weights.reshape(len(weights), -1).T)[None, None]
    if group == 1:
        return weights
    return _group_taps(weights, channels, group)


def _group_taps(weights: np.ndarray, channels: int, group: int) -> np.ndarray:
    """(Cout, 3, 3, 1) packed weights -> (Cout, 3, n_groups, 1): ``group`` kx taps per word."""
    n_groups = -(-3 // group)
    grouped = np.zeros((len(weights), 3, n_groups, 1), np.uint64)
    for kx in range(3):
        shift = np.uint64(channels * (kx % group))
        grouped[:, :, kx // group, 0] |= weights[:, :, kx, 0] << shift
    return grouped


def _planar_flatten(weights: np.ndarray, arch) -> np.ndarray:
    """First FC weights from the model file's (y, x, word) order to the engine's (word, y, x) order."""
    side = int(round((arch.flat_features() // arch.conv_channels[-1]) ** 0.5))
    words = weights.shape[1] // (side * side)
    planar = weights.reshape(len(weights), side, side, words).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(planar.reshape(len(weights), -1))


def _check_crops(crops: np.ndarray) -> np.ndarray:
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[1:] != (32, 32, 3) or crops.dtype != np.uint8:
        raise ValueError(f"crops must be uint8 (N, 32, 32, 3); got {crops.dtype} {crops.shape}")
    return np.ascontiguousarray(crops)
