"""Bit-packed XNOR-popcount kernels (numba): the CPU backend's inner loops.

Activations are packed along channels into 64-bit words, one bit per channel, bit
set for +1. A binary layer's accumulator is ``fan_in - 2 * popcount(x ^ w)``
(padding bits are zero in both, so they never count as mismatches). Batch-norm and
sign are folded into one integer threshold per channel: the output bit is
``accumulator >= threshold``. Max-pool over {-1, +1} maps is a bitwise OR.

Weights are laid out with output channels last, so the innermost loop runs over
output channels on contiguous memory and LLVM vectorises it (AVX-512 ``vpopcntq``
where the CPU has it, a portable SWAR popcount elsewhere). The whole network runs
per chunk of crops inside one parallel region: activations of a chunk stay in
cache and there is one thread hand-off per call, not one per layer.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)
_ONE = np.uint64(1)


@njit(inline="always", cache=True)
def popcount64(x):
    """SWAR popcount; LLVM lowers this pattern to the popcnt instruction."""
    x = x - ((x >> _ONE) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return np.int64((x * _H01) >> np.uint64(56))


@njit(cache=True)
def conv_first(pixels, start, combo_index, combo_sign, thresholds, out):
    """3x3 valid conv of uint8 RGB pixels (offset by -128) with {-1,+1} weights, then threshold.

    With three input channels, a tap's contribution ``wr*r + wg*g + wb*b`` is ``wr`` times one of
    four per-pixel sums (r+g+b, r+g-b, r-g+b, r-g-b). Those four planes are built once per crop;
    each output channel then needs 9 signed adds of contiguous runs (one per spatial tap) over
    the flattened plane (the two columns past the right edge are computed and ignored).
    ``combo_index``/``combo_sign``: (Cout, 9) from :func:`first_layer_combos`. Sums fit int16.

    out: zeroed packed uint64 (B, words, S-2, S-2), filled for crops start..start+B.
    """
    size = pixels.shape[1]
    out_size = size - 2
    span = out_size * size
    combos = np.zeros((4, size * size + size), np.int16)
    acc = np.empty(span, np.int16)
    bits = np.zeros(span, np.uint16)  # 16 channels' output bits at a time, in 16-bit lanes
    n_out = combo_index.shape[0]
    for i in range(out.shape[0]):
        crop = pixels[start + i].reshape(size * size * 3)
        for p in range(size * size):
            r = np.int16(crop[3 * p]) - 128
            g = np.int16(crop[3 * p + 1]) - 128
            b = np.int16(crop[3 * p + 2]) - 128
            combos[0, p] = r + g + b
            combos[1, p] = r + g - b
            combos[2, p] = r - g + b
            combos[3, p] = r - g - b
        for co in range(combo_index.shape[0]):
            acc[:] = 0
            for tap in range(9):
                offset = (tap // 3) * size + tap % 3
                row = combos[combo_index[co, tap], offset : offset + span]
                if combo_sign[co, tap] > 0:
                    for j in range(span):
                        acc[j] += row[j]
                else:
                    for j in range(span):
                        acc[j] -= row[j]
            threshold = np.int16(min(max(thresholds[co], -32000), 32000))  # |acc| <= 27 * 128 fits
            shift = np.uint16(co & 15)
            for j in range(span):
                bits[j] |= np.uint16(acc[j] >= threshold) << shift
            if (co & 15) == 15 or co == n_out - 1:
                _merge_bits(bits, size, np.uint64(co & 48), out[i, co >> 6])
                bits[:] = 0


@njit(inline="always", cache=True)
def _merge_bits(bits, stride, shift, out_plane):
    """OR 16-bit lanes of output bits into the packed plane at bit offset ``shift``."""
    width = out_plane.shape[1]
    for y in range(out_plane.shape[0]):
        row = bits[y * stride : y * stride + width]
        out_row = out_plane[y]
        for x in range(width):
            out_row[x] |= np.uint64(row[x]) << shift


def first_layer_combos(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Cout, 27) ±1 weights in (ky, kx, c) order -> per spatial tap: which RGB sum, and its sign."""
    taps = weights.reshape(len(weights), 9, 3).astype(np.int64)
    red, green, blue = taps[..., 0], taps[..., 1], taps[..., 2]
    index = 2 * (green * red < 0) + (blue * red < 0)  # 0: r+g+b, 1: r+g-b, 2: r-g+b, 3: r-g-b
    return np.ascontiguousarray(index, np.int64), np.ascontiguousarray(red, np.int8)


@njit(inline="always", cache=True)
def _collect_at_most(mismatches, limit, channel, bits):
    """Set bit ``channel % 64`` of ``bits`` wherever the mismatch count is at most ``limit``."""
    shift = np.uint64(channel & 63)
    for p in range(bits.shape[0]):
        bits[p] |= np.uint64(mismatches[p] <= limit) << shift


@njit(cache=True)
def conv_binary(inputs, weights, thresholds, fan_in, out):
    """3x3 valid binary conv: packed (B, Win, S, S) x packed (Cout, 3, 3, Win) -> zeroed packed ``out``.

    As in :func:`conv_first`, each tap is one contiguous run over the flattened word plane.
    """
    in_words, size = inputs.shape[1], inputs.shape[2]
    out_size = size - 2
    span = (out_size - 1) * size + out_size
    acc = np.empty(span, np.int64)
    bits = np.zeros(span, np.uint64)
    for i in range(out.shape[0]):
        flat = inputs[i].reshape(in_words, size * size)
        for co in range(weights.shape[0]):
            acc[:] = 0
            for ky in range(3):
                for kx in range(3):
                    offset = ky * size + kx
                    for w in range(in_words):
                        weight = weights[co, ky, kx, w]
                        row = flat[w, offset : offset + span]  # a slice: no index wraparound checks
                        for j in range(span):
                            acc[j] += popcount64(row[j] ^ weight)
            # fan_in - 2 * mismatches >= threshold  <=>  mismatches <= (fan_in - threshold) // 2
            _collect_at_most(acc, (fan_in - thresholds[co]) // 2, co, bits)
            if (co & 63) == 63 or co == weights.shape[0] - 1:
                _merge_bits(bits, size, np.uint64(0), out[i, co >> 6])
                bits[:] = 0


@njit(inline="always", cache=True)
def _three_taps_at_most(plane, size, span, weights, limit, channel, bits):
    """bits |= (mismatches over rows y, y+1, y+2 <= limit) << channel, in one pass."""
    top = plane[0:span]
    middle = plane[size : size + span]
    bottom = plane[2 * size : 2 * size + span]
    w0, w1, w2 = weights[0], weights[1], weights[2]
    shift = np.uint64(channel & 63)
    for p in range(span):
        mismatches = popcount64(top[p] ^ w0) + popcount64(middle[p] ^ w1) + popcount64(bottom[p] ^ w2)
        bits[p] |= np.uint64(mismatches <= limit) << shift


@njit(inline="always", cache=True)
def _six_taps_at_most(planes, size, span, weights, limit, channel, bits):
    """As :func:`_three_taps_at_most` for two words per row (taps kx 0-1 and kx 2)."""
    a0, a1, a2 = planes[0, 0:span], planes[0, size : size + span], planes[0, 2 * size : 2 * size + span]
    b0, b1, b2 = planes[1, 0:span], planes[1, size : size + span], planes[1, 2 * size : 2 * size + span]
    wa0, wa1, wa2 = weights[0, 0], weights[1, 0], weights[2, 0]
    wb0, wb1, wb2 = weights[0, 1], weights[1, 1], weights[2, 1]
    shift = np.uint64(channel & 63)
    for p in range(span):
        mismatches = (
            popcount64(a0[p] ^ wa0)
            + popcount64(a1[p] ^ wa1)
            + popcount64(a2[p] ^ wa2)
            + popcount64(b0[p] ^ wb0)
            + popcount64(b1[p] ^ wb1)
            + popcount64(b2[p] ^ wb2)
        )
        bits[p] |= np.uint64(mismatches <= limit) << shift


@njit(cache=True)
def conv_binary_grouped(inputs, weights, thresholds, fan_in, channels, group, out):
    """3x3 binary conv for narrow inputs (``channels`` <= 32): ``group`` (2 or 3) horizontal taps share a word,
    so each row of the kernel is one or two words.

    inputs: packed (B, 1, S, S); weights: (Cout, 3, n_groups) with tap ``kx`` of group ``j`` in bits
    ``channels * (kx - j * group)``. Per output: 3 * n_groups popcounts instead of 9.
    """
    size = inputs.shape[2]
    out_size = size - 2
    n_groups = weights.shape[2]
    span = (out_size - 1) * size + out_size
    grouped = np.zeros((n_groups, size * size), np.uint64)
    bits = np.zeros(span, np.uint64)
    for i in range(out.shape[0]):
        flat = inputs[i, 0].reshape(size * size)
        for j in range(n_groups):
            for t in range(group):
                kx = j * group + t
                if kx >= 3:
                    break
                shift = np.uint64(channels * t)
                target = grouped[j, : size * size - kx]
                source = flat[kx:]
                if t == 0:
                    target[:] = source
                else:
                    for p in range(target.shape[0]):
                        target[p] |= source[p] << shift
        for co in range(weights.shape[0]):
            limit = (fan_in - thresholds[co]) // 2
            if n_groups == 1:  # all 9 taps in 3 words: one fused pass, no accumulator array
                _three_taps_at_most(grouped[0], size, span, weights[co, :, 0, 0], limit, co, bits)
            else:
                _six_taps_at_most(grouped, size, span, weights[co, :, :, 0], limit, co, bits)
            if (co & 63) == 63 or co == weights.shape[0] - 1:
                _merge_bits(bits, size, np.uint64(0), out[i, co >> 6])
                bits[:] = 0


@njit(cache=True)
def conv_binary_small(inputs, weights_t, thresholds, fan_in, out):
    """3x3 valid binary conv for small maps: per output pixel, its 9*Win input words against
    weights laid out (1, 1, 9*Win, Cout), vectorised over output channels (as a dense layer)."""
    in_words, size = inputs.shape[1], inputs.shape[2]
    out_size = size - 2
    n_out = weights_t.shape[3]
    patch = np.empty(9 * in_words, np.uint64)
    acc = np.empty(n_out, np.int64)
    for i in range(out.shape[0]):
        for y in range(out_size):
            for x in range(out_size):
                k = 0
                for ky in range(3):
                    for kx in range(3):
                        for w in range(in_words):
                            patch[k] = inputs[i, w, y + ky, x + kx]
                            k += 1
                acc[:] = 0
                for k in range(patch.shape[0]):
                    word = patch[k]
                    row = weights_t[0, 0, k]
                    for co in range(n_out):
                        acc[co] += popcount64(word ^ row[co])
                for co in range(n_out):
                    out[i, co >> 6, y, x] |= np.uint64(fan_in - 2 * acc[co] >= thresholds[co]) << np.uint64(co & 63)


@njit(cache=True)
def max_pool2(inputs):
    """2x2 stride-2 max-pool of packed {-1,+1} maps (B, words, S, S): OR of the four words."""
    n_items, words, size, _ = inputs.shape
    half = size // 2
    out = np.empty((n_items, words, half, half), np.uint64)
    for n in range(n_items):
        for w in range(words):
            for y in range(half):
                for x in range(half):
                    out[n, w, y, x] = (
                        inputs[n, w, 2 * y, 2 * x]
                        | inputs[n, w, 2 * y, 2 * x + 1]
                        | inputs[n, w, 2 * y + 1, 2 * x]
                        | inputs[n, w, 2 * y + 1, 2 * x + 1]
                    )
    return out


@njit(inline="always", cache=True)
def _pack_thresholded(acc, thresholds, fan_in, out_row):
    for co in range(acc.shape[0]):
        out_row[co >> 6] |= np.uint64(fan_in - 2 * acc[co] >= thresholds[co]) << np.uint64(co & 63)


@njit(cache=True)
def dense(inputs, weights_t, thresholds, fan_in, out):
    """Binary fully connected layer: packed (B, Win) x (Win, Cout) -> thresholded packed ``out``."""
    n_out = weights_t.shape[1]
    acc = np.empty(n_out, np.int64)
    for i in range(inputs.shape[0]):
        acc[:] = 0
        for w in range(inputs.shape[1]):
            word = inputs[i, w]
            for co in range(n_out):
                acc[co] += popcount64(word ^ weights_t[w, co])
        _pack_thresholded(acc, thresholds, fan_in, out[i])


@njit(cache=True)
def dense_scores(inputs, weights_t, fan_in, scores):
    """The last layer: integer scores ``fan_in - 2 * mismatches``, no threshold."""
    n_out = weights_t.shape[1]
    acc = np.empty(n_out, np.int64)
    for i in range(inputs.shape[0]):
        acc[:] = 0
        for w in range(inputs.shape[1]):
            word = inputs[i, w]
            for co in range(n_out):
                acc[co] += popcount64(word ^ weights_t[w, co])
        for co in range(n_out):
            scores[i, co] = fan_in - 2 * acc[co]


@njit(cache=True)
def forward_chunk(
    crops,
    start,
    stop,
    first_index,
    first_sign,
    first_t,
    conv_w,
    conv_t,
    conv_fan,
    conv_group,
    pool_after,
    fc_w,
    fc_t,
    fc_fan,
    scores,
):
    """The whole network for crops ``start..stop``, writing ``scores[start:stop]``."""
    count = stop - start
    size = crops.shape[1] - 2
    x = np.zeros((count, (first_index.shape[0] + 63) // 64, size, size), np.uint64)
    conv_first(crops, start, first_index, first_sign, first_t, x)
    if pool_after[0]:
        x = max_pool2(x)
    for layer in range(len(conv_w)):
        weights = conv_w[layer]
        y = np.zeros((count, (conv_t[layer].shape[0] + 63) // 64, x.shape[2] - 2, x.shape[3] - 2), np.uint64)
        if conv_group[layer] > 1:
            conv_binary_grouped(x, weights, conv_t[layer], conv_fan[layer], conv_fan[layer] // 9, conv_group[layer], y)
        elif conv_group[layer] == 0:
            conv_binary_small(x, weights, conv_t[layer], conv_fan[layer], y)
        else:
            conv_binary(x, weights, conv_t[layer], conv_fan[layer], y)
        x = max_pool2(y) if pool_after[layer + 1] else y
    flat = x.reshape(count, -1)
    for layer in range(len(fc_t)):
        weights = fc_w[layer]
        out = np.zeros((count, (weights.shape[1] + 63) // 64), np.uint64)
        dense(flat, weights, fc_t[layer], fc_fan[layer], out)
        flat = out
    dense_scores(flat, fc_w[len(fc_w) - 1], fc_fan[len(fc_w) - 1], scores[start:stop])


@njit(parallel=True, cache=True)
def forward(
    crops,
    chunk,
    first_index,
    first_sign,
    first_t,
    conv_w,
    conv_t,
    conv_fan,
    conv_group,
    pool_after,
    fc_w,
    fc_t,
    fc_fan,
    scores,
):
    """Chunks of ``chunk`` crops spread over all cores."""
    n_chunks = (crops.shape[0] + chunk - 1) // chunk
    for index in prange(n_chunks):
        start = index * chunk
        stop = min(crops.shape[0], start + chunk)
        forward_chunk(
            crops,
            start,
            stop,
            first_index,
            first_sign,
            first_t,
            conv_w,
            conv_t,
            conv_fan,
            conv_group,
            pool_after,
            fc_w,
            fc_t,
            fc_fan,
            scores,
        )
