"""The FPGA path: the FINN-ready export, the folding configs against FINN's rules, the throughput
estimator and folding search, and the PYNQ backend's packing and error handling."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from accel import ARCHS, CLASSES, make_classifier
from accel.arch import get_arch
from accel.cpu import CpuClassifier
from accel.folding import Fold, FoldingError, check_config, default_config_path, finn_config, read_config
from accel.fpga_estimate import PAPER_CROPS_PER_S, estimate, search

needs_train = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("qonnx") is None,
    reason="the export needs the train extra (torch, brevitas, qonnx)",
)


def _export_tools():
    import torch

    from accel import export
    from accel.fold import fold

    torch.set_num_threads(1)
    return export, fold


def _real_crops(shared_data, limit: int) -> np.ndarray:
    from accel.dataset import load_source

    crops = load_source(str(shared_data / "maskedface")).crops
    return crops[np.random.default_rng(0).permutation(len(crops))[:limit]]


@needs_train
def test_export_gives_the_engine_classes_on_real_crops(tmp_path, shared_data):
    """qonnx's executor runs the FINN export (uint8 pixels in, TopK class out) on real MaskedFace-Net
    crops and returns exactly the CPU engine's classes."""
    export, _ = _export_tools()
    crops = _real_crops(shared_data, 600)
    path = export.export_qonnx("n-cnv", tmp_path / "n-cnv.onnx", batch=200)
    classes = export.run_qonnx(path, crops)
    assert classes.shape == (600, 1)
    expected = make_classifier("cpu", "n-cnv").classify(crops)
    np.testing.assert_array_equal(classes[:, 0], expected)
    assert len(np.unique(expected)) >= 3  # real crops reach several classes, not one


@needs_train
@pytest.mark.parametrize("arch", ["u-cnv", "cnv"])
def test_export_of_random_weight_networks_equals_the_engine(tmp_path, arch):
    """CNV and u-CNV ship no trained weights: seeded random ones check the export of their
    layouts (u-CNV flattens a 3x3 map into its first dense layer) against the folded engine."""
    export, fold = _export_tools()
    network = export.random_network(arch, seed=3)
    path = export.export_network(network, tmp_path / f"{arch}.onnx", batch=50, head="scores")
    crops = np.random.default_rng(4).integers(0, 256, (100, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(export.run_qonnx(path, crops), CpuClassifier(fold(network, CLASSES)).scores(crops))


@needs_train
def test_export_graph_is_what_finn_expects(tmp_path):
    """UINT8 input with the normalisation as scalar Add/Mul in front, bipolar weights and activations,
    batch-norm left for FINN to fold, TopK at the end, every shape inferred."""
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper

    export, _ = _export_tools()
    wrapper = ModelWrapper(str(export.export_qonnx("n-cnv", tmp_path / "m.onnx")))
    graph_in = wrapper.graph.input[0].name
    assert wrapper.get_tensor_datatype(graph_in) == DataType["UINT8"]
    assert wrapper.get_tensor_shape(graph_in) == [1, 3, 32, 32]
    first = wrapper.find_consumer(graph_in)
    second = wrapper.find_consumer(first.output[0])
    assert (first.op_type, second.op_type) == ("Add", "Mul")
    assert wrapper.find_consumer(second.output[0]).op_type == "Conv"
    assert float(wrapper.get_initializer(first.input[1])) == -128.0
    assert float(wrapper.get_initializer(second.input[1])) == 1 / 128
    ops = [node.op_type for node in wrapper.graph.node]
    assert ops.count("Conv") == 6 and ops.count("Gemm") == 3 and ops.count("MaxPool") == 2
    assert ops.count("BipolarQuant") == 6 + 3 + 6 + 2  # weights of every layer, every sign activation
    assert ops[-1] == "TopK"
    assert wrapper.get_tensor_shape(wrapper.graph.output[0].name) == [1, 1]
    assert wrapper.check_all_tensor_shapes_specified()


@needs_train
def test_export_refuses_unknown_head(tmp_path):
    export, _ = _export_tools()
    with pytest.raises(ValueError, match="unknown export head 'softmax'"):
        export.export_qonnx("n-cnv", tmp_path / "m.onnx", head="softmax")


# --- folding configs against FINN's rules -------------------------------------------------------


def _matrix_units(arch_name: str) -> list[tuple[int, int, int | None]]:
    """(MH, MW, channels the window streams or None) per MVAU, straight from accel/arch.py."""
    arch = get_arch(arch_name)
    units = [(cout, 9 * cin, cin) for cin, cout, _, _ in arch.conv_shapes()]
    features = arch.flat_features()
    for out_features in (*arch.fc_features, len(CLASSES)):
        units.append((out_features, features, None))
        features = out_features
    return units


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_shipped_folding_obeys_finn_rules(arch):
    """Each shipped folding (finn/folding/ARCH.json): PE divides MH, SIMD divides MW = K^2 * Cin, a
    conv's window generator SIMD divides its input channels, pool PE divides the pooled channels."""
    config = read_config(arch, default_config_path(arch))
    windows = iter(config[k]["SIMD"] for k in config if k.startswith("ConvolutionInputGenerator"))
    pool_pe = [config[k]["PE"] for k in config if k.startswith("Pool_hls")]
    pooled = [get_arch(arch).conv_shapes()[i][1] for i in sorted(get_arch(arch).pool_after)]
    for index, (mh, mw, channels) in enumerate(_matrix_units(arch)):
        unit = config[f"MVAU_hls_{index}"]
        assert mh % unit["PE"] == 0 and mw % unit["SIMD"] == 0, (arch, index, unit)
        if channels is not None:
            window_simd = next(windows)
            assert channels % window_simd == 0 and channels % unit["SIMD"] == 0, (arch, index)
            if index in get_arch(arch).pool_after:
                assert mh % next(windows) == 0  # the pool's window generator streams this conv's output
    assert len(pool_pe) == len(pooled) and all(c % pe == 0 for c, pe in zip(pooled, pool_pe))


@pytest.mark.parametrize(
    ("unit", "change", "message"),
    [
        ("MVAU_hls_2", {"PE": 12}, r"MVAU_hls_2 \(conv2: .*MH 32\): PE 12 does not divide the 32 output channels"),
        ("MVAU_hls_6", {"SIMD": 5}, r"MVAU_hls_6 \(fc0: MW 64 .*\): SIMD 5 does not divide MW 64"),
        ("MVAU_hls_1", {"SIMD": 48}, r"MVAU_hls_1 \(conv1: .*\): SIMD 48 does not divide the 16 input channels"),
        ("ConvolutionInputGenerator_rtl_3", {"SIMD": 3}, r"ConvolutionInputGenerator_rtl_3 \(feeds conv2\): SIMD 3"),
        ("Pool_hls_1", {"PE": 3}, r"Pool_hls_1: PE 3 does not divide its 32 channels"),
        ("MVAU_hls_0", {"PE": 0}, r"MVAU_hls_0: PE must be a positive integer; got 0"),
        ("MVAU_hls_4", {"PE": "4"}, r"MVAU_hls_4: PE must be a positive integer; got '4'"),
    ],
)
def test_broken_folding_rejected_naming_the_unit(unit, change, message):
    config = json.loads(default_config_path("n-cnv").read_text())
    config[unit] = {**config[unit], **change}
    with pytest.raises(FoldingError, match=message):
        read_config("n-cnv", config)


def test_folding_missing_a_unit_rejected():
    config = read_config("u-cnv", default_config_path("u-cnv"))
    del config["MVAU_hls_3"]
    with pytest.raises(FoldingError, match=r"u-cnv folding lacks units \['MVAU_hls_3'\]"):
        check_config("u-cnv", config)


def test_folding_of_another_network_rejected():
    """n-CNV has six convolutions, u-CNV five: n-CNV's config names units u-CNV lacks."""
    with pytest.raises(FoldingError, match="names units the network does not have"):
        read_config("u-cnv", default_config_path("n-cnv"))


@pytest.mark.parametrize(("arch", "fps"), [("n-cnv", 6460), ("u-cnv", 1646)])
def test_derived_foldings_are_reproduced_by_the_search(arch, fps):
    """The n-CNV and u-CNV files say they come from the search at the paper's measured figure: check."""
    assert search(arch, fps)["folding"] == read_config(arch, default_config_path(arch))


# --- estimator ------------------------------------------------------------------------------------

HAND_FOLDS = [
    Fold(4, 3),
    Fold(8, 16),
    Fold(4, 16),
    Fold(2, 32),
    Fold(1, 16),
    Fold(1, 4),
    Fold(1, 1),
    Fold(1, 2),
    Fold(5, 1),
]
# n-CNV, output pixels x (9 * Cin / SIMD) x (Cout / PE), by hand:
HAND_CYCLES = {
    "MVAU_hls_0": 32_400,  # 30x30 out, 3 -> 16 channels: 900 x 27/3 x 16/4
    "MVAU_hls_1": 14_112,  # 28x28, 16 -> 16: 784 x 144/16 x 16/8
    "MVAU_hls_2": 10_368,  # 12x12 after the pool, 16 -> 32: 144 x 144/16 x 32/4
    "MVAU_hls_3": 14_400,  # 10x10, 32 -> 32: 100 x 288/32 x 32/2
    "MVAU_hls_4": 10_368,  # 3x3 after the pool, 32 -> 64: 9 x 288/16 x 64/1
    "MVAU_hls_5": 9_216,  # 1x1, 64 -> 64: 1 x 576/4 x 64/1
    "MVAU_hls_6": 8_192,  # dense 64 -> 128: 64/1 x 128/1
    "MVAU_hls_7": 8_192,  # dense 128 -> 128: 128/2 x 128/1
    "MVAU_hls_8": 128,  # 128 -> 5 classes: 128/1 x 5/5
}


@pytest.mark.parametrize("clock_mhz", [100.0, 50.0])
def test_estimate_cycle_arithmetic_by_hand(clock_mhz):
    result = estimate("n-cnv", finn_config("n-cnv", HAND_FOLDS), clock_mhz)
    cycles = {unit["name"]: unit["cycles"] for unit in result["units"] if unit["kind"] == "MVAU"}
    assert cycles == HAND_CYCLES
    assert result["bottleneck"] == "MVAU_hls_0" and result["bottleneck_cycles"] == 32_400
    assert result["crops_per_s"] == pytest.approx(clock_mhz * 1e6 / 32_400)
    assert result["paper_crops_per_s"] == 6460


def test_cnv_with_finn_folding_lands_on_the_paper_figure():
    """FINN's CNV folding gives a 32,768-cycle bottleneck: 3,052 crops/s at 100 MHz; the paper measured 3,049."""
    result = estimate("cnv", read_config("cnv", default_config_path("cnv")))
    assert result["bottleneck_cycles"] == 32_768
    assert result["crops_per_s"] == pytest.approx(PAPER_CROPS_PER_S["cnv"], rel=0.002)


@pytest.mark.parametrize(("arch", "target"), [("n-cnv", 6460), ("n-cnv", 11000), ("cnv", 3049), ("u-cnv", 400)])
def test_search_meets_the_target_within_the_rules(arch, target):
    result = search(arch, target)
    assert result["crops_per_s"] >= target
    assert all(unit["cycles"] <= result["budget_cycles"] for unit in result["units"])
    check_config(arch, result["folding"])  # raises on any broken rule


def test_search_lower_target_never_costs_more():
    luts = [search("cnv", target)["luts"] for target in (500, 1500, 3049, 6000)]
    assert luts == sorted(luts) and luts[0] < luts[-1]


def test_search_for_an_unreachable_target_names_the_limiting_layer():
    with pytest.raises(FoldingError, match=r"conv0 needs at least 8100 cycles per crop at full parallelism"):
        search("n-cnv", 50_000)
