"""FINN folding of the BinaryCoP networks: the hardware units FINN builds, their PE/SIMD, FINN's rules.

FINN turns each convolution into a sliding-window generator (``ConvolutionInputGenerator``, SWG)
feeding a matrix-vector unit (``MVAU``), each 2x2 max-pool into an SWG feeding a ``Pool`` unit,
each dense layer into an MVAU, and the top-k head into ``LabelSelect``. Node names follow FINN's
own ``cnv-w1a1_folding_config.json`` (tests/benchmark/bnn-pynq in the FINN repository), which
builds the same CNV topology: ``MVAU_hls_<i>``, ``ConvolutionInputGenerator_rtl_<i>``,
``Pool_hls_<i>``, ``LabelSelect_hls_0``, numbered in graph order per kind.

An MVAU multiplies an MH x MW matrix (MH output channels, MW = K^2 * Cin inputs) with PE rows and
SIMD columns in parallel: PE must divide MH and SIMD must divide MW. A convolution's SWG streams
SIMD channels at a time, so its SIMD must divide the input channels; FINN's CNV configs give an
SWG the SIMD of the MVAU it feeds, which is what :func:`finn_config` writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from accel.arch import CLASSES, KERNEL, Arch, get_arch

FOLDING_DIR = Path(__file__).resolve().parents[2] / "finn" / "folding"
POOL = 2


class FoldingError(ValueError):
    """A folding FINN would refuse; the message names the unit and the rule."""


@dataclass(frozen=True)
class Layer:
    """One matrix-vector unit: a conv (``kernel`` 3) or a dense layer (``kernel`` 1, one pixel)."""

    name: str  # "conv0", "fc1", ...
    in_channels: int
    out_channels: int  # MH
    kernel: int
    out_pixels: int  # output pixels per crop
    input_bits: int  # 8 for the first layer (pixels), 1 elsewhere
    thresholded: bool = True  # batch-norm + sign as thresholds; the last layer returns raw scores

    @property
    def is_conv(self) -> bool:
        return self.kernel > 1

    @property
    def index(self) -> int:
        """Position among the layers of its kind: conv2 -> 2."""
        return int(self.name.removeprefix("conv").removeprefix("fc"))

    @property
    def matrix_width(self) -> int:  # MW
        return self.kernel * self.kernel * self.in_channels


@dataclass(frozen=True)
class PoolUnit:
    name: str  # "pool0", ...
    channels: int
    out_pixels: int


@dataclass(frozen=True)
class Fold:
    pe: int
    simd: int


def layers(arch: Arch | str, classes: int = len(CLASSES)) -> list[Layer]:
    """The network's MVAUs in order."""
    arch = get_arch(arch) if isinstance(arch, str) else arch
    units = []
    for index, (cin, cout, _, out_size) in enumerate(arch.conv_shapes()):
        units.append(Layer(f"conv{index}", cin, cout, KERNEL, out_size * out_size, 8 if index == 0 else 1))
    features = arch.flat_features()
    for index, out_features in enumerate((*arch.fc_features, classes)):
        units.append(Layer(f"fc{index}", features, out_features, 1, 1, 1, index < len(arch.fc_features)))
        features = out_features
    return units


def pools(arch: Arch | str) -> list[PoolUnit]:
    arch = get_arch(arch) if isinstance(arch, str) else arch
    shapes = arch.conv_shapes()
    return [
        PoolUnit(f"pool{n}", shapes[i][1], (shapes[i][3] // POOL) ** 2) for n, i in enumerate(sorted(arch.pool_after))
    ]


def finn_config(arch: Arch | str, folds: list[Fold], pool_pe: list[int] | None = None) -> dict:
    """FINN's folding JSON (``folding_config_file`` of its build) for ``folds`` (one per MVAU)."""
    arch = get_arch(arch) if isinstance(arch, str) else arch
    units = layers(arch)
    if len(folds) != len(units):
        raise FoldingError(f"{arch.name} has {len(units)} matrix-vector units; got {len(folds)} PE/SIMD pairs")
    pool_units = pools(arch)
    pool_pe = pool_pe or [1] * len(pool_units)
    config: dict = {"Defaults": {}}
    swg = 0
    for index, (layer, fold) in enumerate(zip(units, folds)):
        if layer.is_conv:
            config[f"ConvolutionInputGenerator_rtl_{swg}"] = {"SIMD": fold.simd, "ram_style": "distributed"}
            swg += 1
        config[f"MVAU_hls_{index}"] = {"PE": fold.pe, "SIMD": fold.simd, "ram_style": "auto", "resType": "lut"}
        conv_index = layer.index if layer.is_conv else -1
        if conv_index in arch.pool_after:
            pool = sorted(arch.pool_after).index(conv_index)
            config[f"ConvolutionInputGenerator_rtl_{swg}"] = {"SIMD": pool_pe[pool], "ram_style": "distributed"}
            config[f"Pool_hls_{pool}"] = {"PE": pool_pe[pool]}
            swg += 1
    config["LabelSelect_hls_0"] = {"PE": 1}
    return config


def read_config(arch: Arch | str, source: str | Path | dict) -> dict:
    """A folding JSON (path, or already loaded), checked against ``arch``; keys starting with ``_``
    (provenance notes) are dropped, as the FINN build script drops them."""
    if isinstance(source, dict):
        config = dict(source)
    else:
        path = Path(source)
        try:
            config = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise FoldingError(f"cannot read folding file {path}: {error}") from None
    config = {key: value for key, value in config.items() if not key.startswith("_")}
    check_config(arch, config)
    return config


def default_config_path(arch: str) -> Path:
    return FOLDING_DIR / f"{get_arch(arch).name}.json"


def folds_of(arch: Arch | str, config: dict) -> list[Fold]:
    """The MVAU PE/SIMD pairs of a checked config, in layer order."""
    return [Fold(config[f"MVAU_hls_{i}"]["PE"], config[f"MVAU_hls_{i}"]["SIMD"]) for i in range(len(layers(arch)))]


def check_config(arch: Arch | str, config: dict) -> None:
    """Raise :class:`FoldingError` naming the first unit whose folding breaks one of FINN's rules."""
    arch = get_arch(arch) if isinstance(arch, str) else arch
    expected = finn_config(arch, [Fold(1, 1)] * len(layers(arch)))
    missing = [name for name in expected if name not in config]
    if missing:
        raise FoldingError(f"{arch.name} folding lacks units {missing}")
    unknown = [name for name in config if name not in expected]
    if unknown:
        raise FoldingError(f"{arch.name} folding names units the network does not have: {unknown}")
    swg = 0
    for index, layer in enumerate(layers(arch)):
        unit = f"MVAU_hls_{index}"
        pe, simd = _positive(config, unit, "PE"), _positive(config, unit, "SIMD")
        what = f"{unit} ({layer.name}: MW {layer.matrix_width} = {layer.kernel}x{layer.kernel}x{layer.in_channels}, "
        what += f"MH {layer.out_channels})"
        if layer.out_channels % pe:
            raise FoldingError(f"{what}: PE {pe} does not divide the {layer.out_channels} output channels (MH)")
        if layer.matrix_width % simd:
            raise FoldingError(f"{what}: SIMD {simd} does not divide MW {layer.matrix_width}")
        if layer.is_conv:
            name = f"ConvolutionInputGenerator_rtl_{swg}"
            swg_simd = _positive(config, name, "SIMD")
            if layer.in_channels % swg_simd:
                problem = f"SIMD {swg_simd} does not divide its {layer.in_channels} channels"
                raise FoldingError(f"{name} (feeds {layer.name}): {problem}")
            if layer.in_channels % simd:
                raise FoldingError(
                    f"{what}: SIMD {simd} does not divide the {layer.in_channels} input channels its window streams"
                )
            swg += 1
            if layer.index in arch.pool_after:
                swg = _check_pool(config, arch, layer.index, layer.out_channels, swg)
    labels = _positive(config, "LabelSelect_hls_0", "PE")
    if len(CLASSES) % labels:
        raise FoldingError(f"LabelSelect_hls_0: PE {labels} does not divide the {len(CLASSES)} classes")


def _check_pool(config: dict, arch: Arch, conv_index: int, channels: int, swg: int) -> int:
    pool = sorted(arch.pool_after).index(conv_index)
    name = f"ConvolutionInputGenerator_rtl_{swg}"
    simd = _positive(config, name, "SIMD")
    if channels % simd:
        raise FoldingError(f"{name} (feeds pool{pool}): SIMD {simd} does not divide its {channels} channels")
    pe = _positive(config, f"Pool_hls_{pool}", "PE")
    if channels % pe:
        raise FoldingError(f"Pool_hls_{pool}: PE {pe} does not divide its {channels} channels")
    return swg + 1


def _positive(config: dict, unit: str, key: str) -> int:
    value = config[unit].get(key) if isinstance(config[unit], dict) else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise FoldingError(f"{unit}: {key} must be a positive integer; got {value!r}")
    return value
