"""The ``finn`` backend: a FINN-built BinaryCoP accelerator on a PYNQ board (extra ``fpga``).

``pynq`` is imported only here, when the backend starts. The bitfile (``finn-accel.bit``, with its
``.hwh`` hardware handoff beside it) is loaded with ``pynq.Overlay``; crops are packed into the
accelerator's input layout (:mod:`accel.finn.io`), moved by DMA the way FINN's generated driver
does on Zynq (the ``idma0``/``odma0`` engines started through their control registers) and the
top-1 class indices unpacked. The layout comes from FINN's ``driver.py`` when the build's
``driver/`` folder sits beside the bitfile (as in FINN's ``deploy/`` package), else from the
network's folding file.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from accel.arch import ARCHS, CLASSES
from accel.finn.io import AcceleratorIO, io_from_driver, io_from_folding, pack_crops, unpack_output
from names import Framing

CLOCK_MHZ = 100.0
# FINN's IODMA control registers (Vitis HLS AXI-lite block): control, buffer address low/high, count
AP_CTRL, ADDR_LOW, ADDR_HIGH, COUNT = 0x00, 0x10, 0x14, 0x1C
AP_START, AP_DONE, AP_IDLE = 0x1, 0x2, 0x4
DMA_TIMEOUT_S = 10.0


class FpgaUnavailable(RuntimeError):
    """No accelerator can be reached from this machine."""


def _no_fpga(reason: str) -> FpgaUnavailable:
    return FpgaUnavailable(
        f"no FPGA found ({reason}): the finn backend runs on a PYNQ board (Pynq-Z1/Z2) with the accelerator's "
        "bitfile; on this machine use the cpu backend (classifier.backend: cpu)"
    )


def _load_overlay(bitfile: Path):
    try:
        import pynq
    except ImportError as error:
        raise _no_fpga(f"pynq is not importable: {error}; install the `fpga` extra on the board") from None
    try:
        overlay = pynq.Overlay(str(bitfile))
        pynq.ps.Clocks.fclk0_mhz = CLOCK_MHZ  # after the download, as FINN's driver sets it
    except (RuntimeError, OSError, AttributeError) as error:
        raise _no_fpga(f"pynq: {error}") from None
    return overlay, pynq.allocate


def accelerator_io(bitfile: Path, arch: str) -> AcceleratorIO:
    """FINN's own driver description beside the bitfile when present, else the folding's."""
    for driver in (bitfile.parent / "driver.py", bitfile.parent.parent / "driver" / "driver.py"):
        if driver.is_file():
            return io_from_driver(driver)
    from accel.finn.folding import default_config_path, read_config

    config = read_config(arch, default_config_path(arch))
    return io_from_folding(config["ConvolutionInputGenerator_rtl_0"]["SIMD"])


class FinnClassifier:
    """Classifies uint8 (N, 32, 32, 3) RGB crops on the FPGA; same interface as the cpu backend."""

    backend = "finn"

    def __init__(self, model: str, bitfile: str | Path | None, max_batch: int = 256, overlay=None, allocate=None):
        """``overlay``/``allocate`` replace pynq's (tests only: no board runs here)."""
        if not bitfile:
            raise ValueError("the finn backend needs the accelerator's bitfile (classifier.bitfile)")
        self.bitfile = Path(bitfile)
        self.model_name = model
        self.arch = model if model in ARCHS else _arch_of_model_file(model)
        self.classes = CLASSES
        self.framing = _framing_of_model(model)
        if overlay is None:
            if not self.bitfile.is_file():
                raise FileNotFoundError(f"bitfile not found: {self.bitfile}")
            if not self.bitfile.with_suffix(".hwh").is_file():
                raise FileNotFoundError(
                    f"hardware handoff not found beside the bitfile: {self.bitfile.with_suffix('.hwh')}"
                )
            overlay, allocate = _load_overlay(self.bitfile)
        self.io = accelerator_io(self.bitfile, self.arch)
        self.overlay = overlay
        self.idma = getattr(overlay, self.io.input_dma)
        self.odma = getattr(overlay, self.io.output_dma)
        self.max_batch = max_batch
        self.in_buffer = allocate(shape=(max_batch, *self.io.input.packed[1:]), dtype=np.uint8, cacheable=True)
        self.out_buffer = allocate(shape=(max_batch, *self.io.output.packed[1:]), dtype=np.uint8, cacheable=True)

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """Class indices (N,) into ``self.classes``, computed by the accelerator."""
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (32, 32, 3) or crops.dtype != np.uint8:
            raise ValueError(f"crops must be uint8 (N, 32, 32, 3); got {crops.dtype} {crops.shape}")
        classes = np.empty(len(crops), np.int64)
        for start in range(0, len(crops), self.max_batch):
            chunk = crops[start : start + self.max_batch]
            classes[start : start + len(chunk)] = self._run(chunk).reshape(len(chunk))
        return classes

    def scores(self, crops: np.ndarray) -> np.ndarray:
        raise NotImplementedError("the FINN accelerator ends in top-1 (LabelSelect): it returns classes, not scores")

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        count = len(chunk)
        self.in_buffer[:count] = pack_crops(chunk, self.io)
        self.in_buffer.flush()
        if not self.odma.read(AP_CTRL) & AP_IDLE:
            raise RuntimeError("output DMA is not idle: a previous transfer did not finish")
        self._start(self.odma, self.out_buffer, count)
        self._start(self.idma, self.in_buffer, count)
        deadline = time.monotonic() + DMA_TIMEOUT_S
        while not self.odma.read(AP_CTRL) & AP_DONE:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the accelerator did not finish {count} crops in {DMA_TIMEOUT_S} s")
        self.out_buffer.invalidate()
        return unpack_output(np.array(self.out_buffer[:count]), self.io)

    @staticmethod
    def _start(dma, buffer, count: int) -> None:
        address = buffer.device_address
        dma.write(ADDR_LOW, address & 0xFFFFFFFF)
        dma.write(ADDR_HIGH, (address >> 32) & 0xFFFFFFFF)
        dma.write(COUNT, count)
        dma.write(AP_CTRL, AP_START)


def _framing_of_model(model: str) -> Framing:
    """The framing the network on the board was trained with: its model file's (the default without one)."""
    from accel.model_file import load_model, resolve_model_path

    return load_model(model).framing if resolve_model_path(model).is_file() else Framing()


def _arch_of_model_file(model: str) -> str:
    from accel.model_file import load_model

    return load_model(model).arch.name
