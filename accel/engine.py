"""Bit-packed XNOR-popcount kernels (numba): the CPU backend's inner loops.

Activations are packed along channels into 64-bit words, one bit per channel,
bit set for +1. A binary layer's accumulator is ``fan_in - 2 * popcount(x ^ w)``
(padding bits are zero in both, so they never count as mismatches). Batch-norm
and sign are folded into one integer threshold per channel: the output bit is
``accumulator >= threshold``. Max-pool over {-1, +1} maps is a bitwise OR.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)
_ONE = np.uint64(1)
_SHIFT56 = np.uint64(56)


@njit(inline="always", cache=True)
def popcount64(x):
    """SWAR popcount; LLVM lowers this pattern to the popcnt instruction."""
    x = x - ((x >> _ONE) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return np.int64((x * _H01) >> _SHIFT56)


@njit(parallel=True, cache=True)
def conv_first(pixels, weights, thresholds, out_words):
    """3x3 valid conv of uint8 pixels (offset by -128) with {-1,+1} weights, then threshold.

    pixels: uint8 (N, S, S, C); weights: int32 (Cout, 9*C) in (ky, kx, c) order;
    returns packed uint64 (N, S-2, S-2, out_words).
    """
    n_items, size, _, channels = pixels.shape
    out_size = size - 2
    n_out, fan_in = weights.shape
    out = np.zeros((n_items, out_size, out_size, out_words), np.uint64)
    for n in prange(n_items):
        patch = np.empty(fan_in, np.int32)
        for y in range(out_size):
            for x in range(out_size):
                k = 0
                for ky in range(3):
                    for kx in range(3):
                        for c in range(channels):
                            patch[k] = np.int32(pixels[n, y + ky, x + kx, c]) - 128
                            k += 1
                for co in range(n_out):
                    acc = 0
                    for k in range(fan_in):
                        acc += patch[k] * weights[co, k]
                    if acc >= thresholds[co]:
                        out[n, y, x, co >> 6] |= _ONE << np.uint64(co & 63)
    return out


@njit(parallel=True, cache=True)
def conv_binary(inputs, weights, thresholds, fan_in):
    """3x3 valid binary conv: packed (N, S, S, Win) x packed (Cout, 3, 3, Win) -> packed bits."""
    n_items, size, _, in_words = inputs.shape
    n_out = weights.shape[0]
    out_size = size - 2
    out_words = (n_out + 63) // 64
    out = np.zeros((n_items, out_size, out_size, out_words), np.uint64)
    for n in prange(n_items):
        for y in range(out_size):
            for x in range(out_size):
                for co in range(n_out):
                    mismatches = 0
                    for ky in range(3):
                        for kx in range(3):
                            for w in range(in_words):
                                mismatches += popcount64(inputs[n, y + ky, x + kx, w] ^ weights[co, ky, kx, w])
                    if fan_in - 2 * mismatches >= thresholds[co]:
                        out[n, y, x, co >> 6] |= _ONE << np.uint64(co & 63)
    return out


@njit(parallel=True, cache=True)
def max_pool2(inputs):
    """2x2 stride-2 max-pool of packed {-1,+1} maps: OR of the four words."""
    n_items, size, _, words = inputs.shape
    half = size // 2
    out = np.empty((n_items, half, half, words), np.uint64)
    for n in prange(n_items):
        for y in range(half):
            for x in range(half):
                for w in range(words):
                    out[n, y, x, w] = (
                        inputs[n, 2 * y, 2 * x, w]
                        | inputs[n, 2 * y, 2 * x + 1, w]
                        | inputs[n, 2 * y + 1, 2 * x, w]
                        | inputs[n, 2 * y + 1, 2 * x + 1, w]
                    )
    return out


@njit(cache=True, inline="always")
def _dot_binary(inputs, weights, n, co, fan_in):
    mismatches = 0
    for w in range(inputs.shape[1]):
        mismatches += popcount64(inputs[n, w] ^ weights[co, w])
    return fan_in - 2 * mismatches


@njit(parallel=True, cache=True)
def dense_binary(inputs, weights, thresholds, fan_in):
    """Binary fully connected layer with thresholds: packed (N, Win) -> packed (N, Wout)."""
    n_items = inputs.shape[0]
    n_out = weights.shape[0]
    out = np.zeros((n_items, (n_out + 63) // 64), np.uint64)
    for n in prange(n_items):
        for co in range(n_out):
            if _dot_binary(inputs, weights, n, co, fan_in) >= thresholds[co]:
                out[n, co >> 6] |= _ONE << np.uint64(co & 63)
    return out


@njit(parallel=True, cache=True)
def dense_scores(inputs, weights, fan_in):
    """The last layer: integer scores, no threshold."""
    n_items = inputs.shape[0]
    n_out = weights.shape[0]
    out = np.empty((n_items, n_out), np.int32)
    for n in prange(n_items):
        for co in range(n_out):
            out[n, co] = _dot_binary(inputs, weights, n, co, fan_in)
    return out
