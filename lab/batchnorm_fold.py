"""Fold a trained brevitas network into a :class:`BinaryModel` (needs the ``train`` extra).

Batch-norm followed by sign becomes one integer threshold per channel. Rather
than re-deriving the float arithmetic, each threshold is read off the torch
modules themselves: batch-norm and sign are evaluated on every accumulator value
the layer can produce, so the engine reproduces the reference bit for bit. A
channel whose output falls as the accumulator rises gets its weights negated.
"""

from __future__ import annotations

import numpy as np
import torch

from accel.arch import INPUT_CHANNELS
from accel.model_file import BinaryModel
from accel.nets import INPUT_OFFSET, INPUT_SCALE, BinaryCoP, binary_weights

ALWAYS_ON = np.iinfo(np.int32).min // 2
NEVER_ON = np.iinfo(np.int32).max // 2


def pack_bits(signs: np.ndarray) -> np.ndarray:
    """{-1, +1} along the last axis -> uint64 words, bit ``c % 64`` of word ``c // 64`` set for +1."""
    channels = signs.shape[-1]
    n_words = (channels + 63) // 64
    bits = np.zeros((*signs.shape[:-1], n_words * 64), np.uint64)
    bits[..., :channels] = signs > 0
    bits = bits.reshape(*signs.shape[:-1], n_words, 64)
    shifts = np.arange(64, dtype=np.uint64)
    return np.bitwise_or.reduce(bits << shifts, axis=-1)


def _thresholds(norm: torch.nn.Module, sign: torch.nn.Module, grid: np.ndarray, scale: float):
    """Per channel: (threshold, flip) such that the sign is +1 iff (-acc if flip else acc) >= threshold."""
    channels = norm.num_features
    values = torch.from_numpy(grid.astype(np.float32) / np.float32(scale))
    if isinstance(norm, torch.nn.BatchNorm2d):
        batch = values.reshape(1, 1, -1, 1).expand(1, channels, -1, 1).contiguous()
        bits = sign(norm(batch))[0, :, :, 0]
    else:
        batch = values.reshape(-1, 1).expand(-1, channels).contiguous()
        bits = sign(norm(batch)).T
    bits = (bits.detach().numpy() > 0).astype(np.int8)
    thresholds = np.empty(channels, np.int32)
    flips = np.zeros(channels, bool)
    for channel, row in enumerate(bits):
        thresholds[channel], flips[channel] = _threshold_of(row, grid, channel)
    return thresholds, flips


def _threshold_of(row: np.ndarray, grid: np.ndarray, channel: int) -> tuple[int, bool]:
    if row.all():
        return ALWAYS_ON, False
    if not row.any():
        return NEVER_ON, False
    steps = np.diff(row)
    if (steps >= 0).all():
        return int(grid[np.argmax(row)]), False
    if (steps <= 0).all():
        last_on = grid[len(row) - 1 - np.argmax(row[::-1])]
        return int(-last_on), True
    raise ValueError(f"channel {channel}: batch-norm + sign is not monotone in the accumulator")


def _parity_grid(fan_in: int) -> np.ndarray:
    return np.arange(-fan_in, fan_in + 1, 2)


@torch.no_grad()
def fold(network: BinaryCoP, classes: tuple[str, ...], meta: dict | None = None) -> BinaryModel:
    network = network.eval()
    arch = network.arch
    conv_weights, conv_thresholds = [], []
    for index, (conv, norm, sign) in enumerate(zip(network.convs, network.conv_norms, network.conv_signs)):
        signs = binary_weights(conv).transpose(0, 2, 3, 1)  # (Cout, ky, kx, Cin)
        if index == 0:
            reach = 9 * INPUT_CHANNELS * INPUT_OFFSET
            grid = np.arange(-reach, reach + 1)
            thresholds, flips = _thresholds(norm, sign, grid, INPUT_SCALE)
            signs = np.where(flips[:, None, None, None], -signs, signs)
            conv_weights.append(signs.reshape(len(signs), -1).astype(np.int32))
        else:
            thresholds, flips = _thresholds(norm, sign, _parity_grid(signs[0].size), 1.0)
            signs = np.where(flips[:, None, None, None], -signs, signs)
            conv_weights.append(pack_bits(signs))
        conv_thresholds.append(thresholds)

    last_channels = arch.conv_channels[-1]
    side = int(round((arch.flat_features() // last_channels) ** 0.5))
    fc_weights, fc_thresholds = [], []
    layers = list(zip(network.fcs, network.fc_norms, network.fc_signs)) + [(network.classifier, None, None)]
    for index, (fc, norm, sign) in enumerate(layers):
        signs = binary_weights(fc)
        if norm is not None:
            thresholds, flips = _thresholds(norm, sign, _parity_grid(signs.shape[1]), 1.0)
            signs = np.where(flips[:, None], -signs, signs)
            fc_thresholds.append(thresholds)
        if index == 0:  # torch flattens (C, H, W); the engine flattens (H, W, packed C)
            signs = signs.reshape(len(signs), last_channels, side, side).transpose(0, 2, 3, 1)
            fc_weights.append(pack_bits(signs).reshape(len(signs), -1))
        else:
            fc_weights.append(pack_bits(signs))
    return BinaryModel(arch, tuple(classes), conv_weights, conv_thresholds, fc_weights, fc_thresholds, dict(meta or {}))
