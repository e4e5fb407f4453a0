"""The FINN accelerator's input and output layout: shapes, folding and bit packing (no pynq needed).

FINN's generated PYNQ driver describes the accelerator's streams in an ``io_shape_dict``: the
normal (NHWC) shape, the folded shape (innermost dimension = the first unit's SIMD, or the last
unit's PE) and the packed shape (the innermost dimension packed into bytes), with one FINN
datatype per stream. Packing follows FINN's driver (``finnpy_to_packed_bytearray`` with
``reverse_inner=True, reverse_endian=True``): element ``i`` of the innermost dimension occupies
bits ``[i*w, (i+1)*w)`` of a little-endian word padded to whole bytes; BIPOLAR packs -1 as 0.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from accel.arch import CLASSES, INPUT_CHANNELS, INPUT_SIZE


@dataclass(frozen=True)
class StreamType:
    """A FINN integer datatype: ``UINT8``, ``INT9``, ``BIPOLAR``, ``BINARY``."""

    name: str

    @property
    def bits(self) -> int:
        if self.name in ("BIPOLAR", "BINARY"):
            return 1
        match = re.fullmatch(r"U?INT(\d+)", self.name)
        if not match:
            raise ValueError(f"unsupported FINN datatype {self.name!r} (integer types only)")
        return int(match.group(1))

    @property
    def signed(self) -> bool:
        return self.name.startswith("INT")


@dataclass(frozen=True)
class StreamSpec:
    dtype: StreamType
    normal: tuple[int, ...]  # batch 1
    folded: tuple[int, ...]

    @property
    def packed(self) -> tuple[int, ...]:
        return (*self.folded[:-1], math.ceil(self.folded[-1] * self.dtype.bits / 8))


@dataclass(frozen=True)
class AcceleratorIO:
    input: StreamSpec
    output: StreamSpec
    input_dma: str = "idma0"
    output_dma: str = "odma0"


def io_from_folding(input_simd: int, classes: int = len(CLASSES)) -> AcceleratorIO:
    """The layout of this project's accelerators: UINT8 NHWC crops folded by the first window
    generator's SIMD in, one top-1 class index out (FINN's LabelSelect: the smallest UINT for
    ``classes - 1``)."""
    if INPUT_CHANNELS % input_simd:
        raise ValueError(f"first-layer SIMD {input_simd} does not divide the {INPUT_CHANNELS} input channels")
    normal = (1, INPUT_SIZE, INPUT_SIZE, INPUT_CHANNELS)
    folded = (1, INPUT_SIZE, INPUT_SIZE, INPUT_CHANNELS // input_simd, input_simd)
    label_bits = max(1, math.ceil(math.log2(classes)))
    return AcceleratorIO(
        StreamSpec(StreamType("UINT8"), normal, folded),
        StreamSpec(StreamType(f"UINT{label_bits}"), (1, 1), (1, 1, 1)),
    )


def io_from_driver(driver_py: str | Path) -> AcceleratorIO:
    """Read the ``io_shape_dict`` of a FINN-generated ``driver.py`` (single input, single output)."""
    text = Path(driver_py).read_text()
    match = re.search(r"io_shape_dict\s*=\s*(\{.*?\n\})", text, re.S)
    if not match:
        raise ValueError(f"{driver_py}: no io_shape_dict found (not a FINN-generated driver?)")
    literal = re.sub(r"DataType\[['\"](\w+)['\"]\]|DataType\.(\w+)", lambda m: repr(m.group(1) or m.group(2)), match[1])
    try:
        spec = ast.literal_eval(literal)
    except (ValueError, SyntaxError) as error:
        raise ValueError(f"{driver_py}: io_shape_dict is not a plain literal: {error}") from None

    def first(key: str):
        value = spec[key]
        return value[0] if isinstance(value, list) else value

    try:
        return AcceleratorIO(
            StreamSpec(StreamType(first("idt")), tuple(first("ishape_normal")), tuple(first("ishape_folded"))),
            StreamSpec(StreamType(first("odt")), tuple(first("oshape_normal")), tuple(first("oshape_folded"))),
            first("input_dma_name") if "input_dma_name" in spec else "idma0",
            first("output_dma_name") if "output_dma_name" in spec else "odma0",
        )
    except KeyError as error:
        raise ValueError(f"{driver_py}: io_shape_dict lacks {error}") from None


def pack(values: np.ndarray, dtype: StreamType) -> np.ndarray:
    """Integers (..., n) -> uint8 (..., ceil(n * bits / 8)), packed as FINN's driver packs them."""
    values = np.asarray(values)
    bits = dtype.bits
    if dtype.name == "BIPOLAR":
        values = (values > 0).astype(np.int64)
    values = values.astype(np.int64)
    if bits == 8 and not dtype.signed:
        return np.ascontiguousarray(values.astype(np.uint8))
    low, high = _range(dtype)
    if values.size and (values.min() < low or values.max() > high):
        raise ValueError(f"values outside {dtype.name} [{low}, {high}]")
    words = values & ((1 << bits) - 1)
    bit_planes = (words[..., None] >> np.arange(bits)) & 1  # (..., n, bits), LSB first
    flat = bit_planes.reshape(*values.shape[:-1], -1).astype(np.uint8)
    return np.packbits(flat, axis=-1, bitorder="little")


def unpack(packed: np.ndarray, dtype: StreamType, count: int) -> np.ndarray:
    """uint8 (..., bytes) -> int64 (..., count): the inverse of :func:`pack`."""
    packed = np.asarray(packed, np.uint8)
    bits = dtype.bits
    if bits == 8 and not dtype.signed:
        return packed[..., :count].astype(np.int64)
    flat = np.unpackbits(packed, axis=-1, bitorder="little")[..., : count * bits]
    planes = flat.reshape(*packed.shape[:-1], count, bits).astype(np.int64)
    values = (planes << np.arange(bits)).sum(axis=-1)
    if dtype.signed:
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
    if dtype.name == "BIPOLAR":
        values = 2 * values - 1
    return values


def _range(dtype: StreamType) -> tuple[int, int]:
    if dtype.name == "BIPOLAR":
        return 0, 1  # after mapping -1 -> 0
    if dtype.signed:
        return -(1 << (dtype.bits - 1)), (1 << (dtype.bits - 1)) - 1
    return 0, (1 << dtype.bits) - 1


def pack_crops(crops: np.ndarray, io: AcceleratorIO) -> np.ndarray:
    """uint8 (N, 32, 32, 3) RGB crops -> the packed input buffer (N, *packed[1:])."""
    folded = crops.reshape(len(crops), *io.input.folded[1:])
    return pack(folded, io.input.dtype)


def unpack_output(buffer: np.ndarray, io: AcceleratorIO) -> np.ndarray:
    """The packed output buffer (N, *packed[1:]) -> (N, *normal[1:]) integers."""
    values = unpack(buffer, io.output.dtype, io.output.folded[-1])
    return values.reshape(len(buffer), *io.output.normal[1:])
