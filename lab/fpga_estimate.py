"""``binarycop fpga estimate``: throughput of a FINN folding, and the smallest folding for a target.

FINN builds one pipeline stage per layer; every stage works on a different crop at the same
time, so the accelerator finishes one crop per *bottleneck* interval: the largest per-stage cycle
count. Per stage (FINN's own expected-cycle formulas, simplified to these networks):

- MVAU: output pixels x (MW / SIMD) x (MH / PE), with MW = K^2 * Cin, MH = Cout
- convolution window generator: output pixels x K^2 x Cin / SIMD
- max-pool window generator + pool unit: pooled pixels x 2^2 x C / PE

Crops/s = clock / bottleneck cycles. FIFO stalls and DMA are not modelled.

Resources, a rough model for sizing only (synthesis decides): per MVAU, LUTs follow the shape
of FINN's MVAU estimate: 300 control + 1.1 x PE x (SIMD-wide multiply and adder tree of (W+A)-bit
operands, an accumulator and one threshold comparator); weights (MW x MH bits) sit in
LUTRAM when the memory is shallow (< 128 words), else in the fewest BRAM18 of one aspect ratio
(16Kx1 ... 512x36); window generators buffer K rows of their input (LUTRAM under 4 Kbit, else
BRAM18); pool and label-select units count a few dozen LUTs. A fixed 4,000 LUTs and 4 BRAM18 stand
for the DMA/AXI shell (an assumption). Totals are compared with the Z7020 (53,200 LUTs, 140 BRAM36).
The search minimises, per layer, the share of the Z7020 the unit takes (LUTs/53,200 + BRAM18/280):
shallow weight memories move to LUTRAM, so a wider unit can come out cheaper than a narrower one.
A convolution's SIMD is kept to divisors of its input channels (FINN's window generator without its
parallel-window mode), so the 3-channel first layer caps every network at 100 MHz / 8,100 cycles,
about 12,300 crops/s; a higher target is refused naming that layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from accel.arch import CLASSES, KERNEL, get_arch
from accel.finn.folding import Fold, FoldingError, Layer, PoolUnit, check_config, finn_config, folds_of, layers, pools

PAPER_CROPS_PER_S = {"cnv": 3049.0, "n-cnv": 6460.0, "u-cnv": 1646.0}  # Z7020 at 100 MHz, measured
Z7020_LUTS = 53_200
Z7020_BRAM36 = 140
SHELL_LUTS = 4_000
SHELL_BRAM18 = 4
BRAM18_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
LUTRAM_MAX_DEPTH = 128
LUTRAM_MAX_BUFFER_BITS = 4096


@dataclass(frozen=True)
class Unit:
    name: str
    kind: str  # MVAU, SWG, Pool, LabelSelect
    pe: int
    simd: int
    cycles: int
    luts: int
    bram18: int


def mvau_cycles(layer: Layer, fold: Fold) -> int:
    return layer.out_pixels * (layer.matrix_width // fold.simd) * (layer.out_channels // fold.pe)


def mvau_luts(layer: Layer, fold: Fold) -> int:
    operand_bits = 1 + layer.input_bits  # binary weight + activation bits
    multiply = fold.simd * (2 * math.ceil(operand_bits / 6) - 1) * operand_bits
    adder_tree = operand_bits * (2 * fold.simd - 1)
    accumulator = operand_bits + math.ceil(math.log2(layer.matrix_width))
    comparator = accumulator if layer.thresholded else 0
    compute = 300 + 1.1 * fold.pe * (multiply + adder_tree + accumulator + comparator)
    depth, width = _weight_memory(layer, fold)
    lutram = width * math.ceil(depth / 64) if depth < LUTRAM_MAX_DEPTH else 0
    return int(compute + lutram)


def mvau_bram18(layer: Layer, fold: Fold) -> int:
    depth, width = _weight_memory(layer, fold)
    if depth < LUTRAM_MAX_DEPTH:
        return 0
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in BRAM18_SHAPES)


def _weight_memory(layer: Layer, fold: Fold) -> tuple[int, int]:
    """(depth in words, word width in bits) of the MVAU's weight memory."""
    return layer.matrix_width * layer.out_channels // (fold.pe * fold.simd), fold.pe * fold.simd


def _buffer_cost(bits: int) -> tuple[int, int]:
    """(LUTs, BRAM18) for a window generator's line buffer."""
    if bits <= LUTRAM_MAX_BUFFER_BITS:
        return math.ceil(bits / 64), 0
    return 0, math.ceil(bits / 18432)


def units(arch: str, config: dict) -> list[Unit]:
    """Every hardware unit of a checked folding config with its cycles and resources, in graph order."""
    arch_spec = get_arch(arch)
    folds = folds_of(arch, config)
    pool_units = pools(arch)
    shapes = arch_spec.conv_shapes()
    result, swg = [], 0
    for index, (layer, fold) in enumerate(zip(layers(arch), folds)):
        if layer.is_conv:
            conv = layer.index
            simd = config[f"ConvolutionInputGenerator_rtl_{swg}"]["SIMD"]
            in_size = shapes[conv][2]
            luts, bram = _buffer_cost(KERNEL * in_size * layer.in_channels * layer.input_bits)
            cycles = layer.out_pixels * KERNEL * KERNEL * layer.in_channels // simd
            result.append(Unit(f"ConvolutionInputGenerator_rtl_{swg}", "SWG", 1, simd, cycles, luts, bram))
            swg += 1
        unit = f"MVAU_hls_{index}"
        result.append(
            Unit(
                unit,
                "MVAU",
                fold.pe,
                fold.simd,
                mvau_cycles(layer, fold),
                mvau_luts(layer, fold),
                mvau_bram18(layer, fold),
            )
        )
        if layer.is_conv and layer.index in arch_spec.pool_after:
            pool_index = sorted(arch_spec.pool_after).index(layer.index)
            result.extend(_pool_units(config, pool_units[pool_index], pool_index, swg, shapes[conv][3]))
            swg += 1
    result.append(Unit("LabelSelect_hls_0", "LabelSelect", config["LabelSelect_hls_0"]["PE"], 1, len(CLASSES), 100, 0))
    return result


def _pool_units(config: dict, pool: PoolUnit, index: int, swg: int, in_size: int) -> list[Unit]:
    swg_name = f"ConvolutionInputGenerator_rtl_{swg}"
    simd, pe = config[swg_name]["SIMD"], config[f"Pool_hls_{index}"]["PE"]
    luts, bram = _buffer_cost(2 * in_size * pool.channels)
    return [
        Unit(swg_name, "SWG", 1, simd, pool.out_pixels * 4 * pool.channels // simd, luts, bram),
        Unit(f"Pool_hls_{index}", "Pool", pe, 1, pool.out_pixels * 4 * pool.channels // pe, 50 + 10 * pe, 0),
    ]


def estimate(arch: str, config: dict, clock_mhz: float = 100.0) -> dict:
    """Cycles per unit, the bottleneck, crops/s at ``clock_mhz`` beside the paper's figure, resources."""
    arch = get_arch(arch).name
    check_config(arch, config)
    if clock_mhz <= 0:
        raise ValueError(f"clock must be positive; got {clock_mhz} MHz")
    rows = units(arch, config)
    bottleneck = max(rows, key=lambda unit: unit.cycles)
    crops_per_s = clock_mhz * 1e6 / bottleneck.cycles
    luts = SHELL_LUTS + sum(unit.luts for unit in rows)
    bram36 = (SHELL_BRAM18 + sum(unit.bram18 for unit in rows)) / 2
    return {
        "arch": arch,
        "clock_mhz": clock_mhz,
        "units": [unit.__dict__ for unit in rows],
        "bottleneck": bottleneck.name,
        "bottleneck_cycles": bottleneck.cycles,
        "crops_per_s": crops_per_s,
        "latency_us": sum(unit.cycles for unit in rows) / clock_mhz,
        "paper_crops_per_s": PAPER_CROPS_PER_S[arch],
        "ratio_to_paper": crops_per_s / PAPER_CROPS_PER_S[arch],
        "luts": luts,
        "bram36": bram36,
        "device": {"name": "xc7z020", "luts": Z7020_LUTS, "bram36": Z7020_BRAM36},
        "fits": luts <= Z7020_LUTS and bram36 <= Z7020_BRAM36,
    }


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _cost(luts: int, bram18: int) -> float:
    """One number to minimise: the share of the Z7020 a unit uses, LUTs and BRAM together."""
    return luts / Z7020_LUTS + bram18 / (2 * Z7020_BRAM36)


def smallest_fold(layer: Layer, budget_cycles: int) -> Fold:
    """The cheapest (model cost) PE/SIMD pair of ``layer`` that finishes within ``budget_cycles``."""
    simd_choices = _divisors(layer.in_channels) if layer.is_conv else _divisors(layer.matrix_width)
    candidates = [
        Fold(pe, simd)
        for pe in _divisors(layer.out_channels)
        for simd in simd_choices
        if mvau_cycles(layer, Fold(pe, simd)) <= budget_cycles
    ]
    if not candidates:
        fastest = Fold(layer.out_channels, max(simd_choices))
        raise FoldingError(
            f"{layer.name} needs at least {mvau_cycles(layer, fastest)} cycles per crop at full parallelism "
            f"(PE {fastest.pe}, SIMD {fastest.simd}); the target allows {budget_cycles}"
        )
    return min(
        candidates,
        key=lambda f: (_cost(mvau_luts(layer, f), mvau_bram18(layer, f)), f.pe * f.simd, f.pe),
    )


def search(arch: str, target_fps: float, clock_mhz: float = 100.0) -> dict:
    """The smallest folding (per layer, the cheapest PE/SIMD meeting the cycle budget) for ``target_fps``;
    returns the FINN folding config and its estimate."""
    if target_fps <= 0:
        raise ValueError(f"target must be positive; got {target_fps} crops/s")
    arch = get_arch(arch).name
    budget = math.floor(clock_mhz * 1e6 / target_fps)
    folds = [smallest_fold(layer, budget) for layer in layers(arch)]
    pool_pe = []
    for pool in pools(arch):
        fitting = [pe for pe in _divisors(pool.channels) if pool.out_pixels * 4 * pool.channels // pe <= budget]
        if not fitting:
            raise FoldingError(f"{pool.name} cannot finish within {budget} cycles")
        pool_pe.append(fitting[0])
    config = finn_config(arch, folds, pool_pe)
    result = estimate(arch, config, clock_mhz)
    result.update({"target_fps": target_fps, "budget_cycles": budget, "folding": config})
    return result


def run_estimate(arch: str, folding=None, clock_mhz: float = 100.0, target_fps: float | None = None, out=None) -> dict:
    """What ``binarycop fpga estimate`` prints: a folding file's estimate, or a search for ``target_fps``
    (written to ``out`` as FINN folding JSON when given)."""
    import json
    from pathlib import Path

    from accel.finn.folding import default_config_path, read_config

    if target_fps is not None:
        result = search(arch, target_fps, clock_mhz)
        if out is not None:
            Path(out).write_text(json.dumps(result["folding"], indent=2) + "\n")
            result["written"] = str(out)
        return result
    if out is not None:
        raise ValueError("--out writes a searched folding: give --target-fps too")
    path = Path(folding) if folding is not None else default_config_path(arch)
    result = estimate(arch, read_config(arch, path), clock_mhz)
    result["folding_file"] = str(path)
    return result


def print_estimate(result: dict) -> None:
    print(f"{result['arch']} at {result['clock_mhz']:g} MHz ({result.get('folding_file', 'searched folding')}):")
    print(f"  {'unit':<34}{'PE':>5}{'SIMD':>6}{'cycles':>9}{'LUTs':>8}{'BRAM18':>8}")
    for unit in result["units"]:
        mark = "  <- bottleneck" if unit["name"] == result["bottleneck"] else ""
        print(
            f"  {unit['name']:<34}{unit['pe']:>5}{unit['simd']:>6}{unit['cycles']:>9,}{unit['luts']:>8,}"
            f"{unit['bram18']:>8}{mark}"
        )
    print(
        f"  expected {result['crops_per_s']:,.0f} crops/s (bottleneck {result['bottleneck']}, "
        f"{result['bottleneck_cycles']:,} cycles); paper, measured on the Z7020: {result['paper_crops_per_s']:,.0f} "
        f"(ratio {result['ratio_to_paper']:.3f})"
    )
    print(
        f"  rough resources: {result['luts']:,} LUTs of {Z7020_LUTS:,}, {result['bram36']:g} BRAM36 of "
        f"{Z7020_BRAM36} -> {'fits' if result['fits'] else 'does NOT fit'} the Z7020"
    )
    if "target_fps" in result:
        print(f"  target {result['target_fps']:,.0f} crops/s = at most {result['budget_cycles']:,} cycles per unit")
    if "written" in result:
        print(f"  folding written to {result['written']}")
