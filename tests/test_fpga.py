"""The FPGA path: the FINN-ready export, the folding configs against FINN's rules, the throughput
estimator and folding search, and the PYNQ backend's packing and error handling."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest

from accel import ARCHS, CLASSES, make_classifier
from accel.arch import get_arch
from accel.cpu import CpuClassifier
from accel.finn import FinnClassifier, FpgaUnavailable
from accel.finn.folding import Fold, FoldingError, check_config, default_config_path, finn_config, read_config
from accel.finn.io import StreamType, io_from_driver, io_from_folding, pack, pack_crops, unpack
from lab.fpga_estimate import PAPER_CROPS_PER_S, estimate, search

needs_train = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("qonnx") is None,
    reason="the export needs the train extra (torch, brevitas, qonnx)",
)


def _export_tools():
    import torch

    from lab import qonnx_export as export
    from lab.batchnorm_fold import fold

    torch.set_num_threads(1)
    return export, fold


def _real_crops(shared_data, per_class: int) -> np.ndarray:
    """Face crops framed by the detector from MaskedFace-Net pictures, ``per_class`` of each class."""
    from lab.dataset import CropMaker, load_source

    maker = CropMaker()
    folders = ("correct", "nose", "nose_mouth", "chin")
    sets = [load_source(f"{name}={shared_data / 'maskedface' / name}", maker, per_class) for name in folders]
    return np.concatenate([crop_set.crops for crop_set in sets])


@needs_train
def test_export_gives_the_engine_classes_on_real_crops(tmp_path, shared_data):
    """qonnx's executor runs the FINN export (uint8 pixels in, TopK class out) on real MaskedFace-Net
    crops and returns exactly the CPU engine's classes."""
    export, _ = _export_tools()
    crops = _real_crops(shared_data, per_class=60)
    path = export.export_qonnx("n-cnv", tmp_path / "n-cnv.onnx", batch=80)
    classes = export.run_qonnx(path, crops)
    assert classes.shape == (240, 1)
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


# --- the PYNQ backend: layout, packing, DMA flow, errors without a board -------------------------


BITFILE_ENV = "BINARYCOP_FINN_BITFILE"


def _finn_reference_pack(vector, dtype) -> bytes:
    """FINN's driver packing, spelled out with qonnx's DataType: the innermost vector reversed, each
    value as a ``bitwidth``-bit two's-complement field, most significant first, left-padded to whole
    bytes (``pack_innermost_dim_as_hex_string`` with ``reverse_inner``), then the bytes reversed
    (``reverse_endian``)."""
    bits = dtype.bitwidth()
    fields = []
    for value in reversed(list(vector)):
        assert dtype.allowed(value)
        if dtype.name == "BIPOLAR":
            value = (value + 1) / 2
        fields.append(format(int(value) & ((1 << bits) - 1), f"0{bits}b"))
    word = "".join(fields)
    word = word.zfill(-(-len(word) // 8) * 8)
    return int(word, 2).to_bytes(len(word) // 8, "big")[::-1]


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("UINT8", (4, 2, 3)),
        ("UINT3", (7, 1)),
        ("INT9", (5, 5)),
        ("INT4", (3, 6)),
        ("BINARY", (4, 13)),
        ("BIPOLAR", (6, 8)),
    ],
)
def test_packing_matches_finn_layout_and_round_trips(name, shape):
    """Against the qonnx DataType definitions (qonnx 1.0.0 ships no packing helpers of its own)."""
    pytest.importorskip("qonnx", reason="the reference datatypes come from qonnx (train extra)")
    from qonnx.core.datatype import DataType
    from qonnx.util.basic import gen_finn_dt_tensor

    dtype = DataType[name]
    np.random.seed(len(name) + shape[-1])
    values = gen_finn_dt_tensor(dtype, shape).astype(np.int64)
    packed = pack(values, StreamType(name))
    reference = np.array([list(_finn_reference_pack(row, dtype)) for row in values.reshape(-1, shape[-1])], np.uint8)
    np.testing.assert_array_equal(packed.reshape(-1, packed.shape[-1]), reference)
    np.testing.assert_array_equal(unpack(packed, StreamType(name), shape[-1]), values)


def test_packing_hand_example():
    """[1, 1, 1, 0] as BINARY: FINN's docstring packs it to 0x0e MSB-first; reversed inner -> 0b0111."""
    assert pack(np.array([1, 1, 1, 0]), StreamType("BINARY")).tolist() == [0x07]
    assert pack(np.array([-3, 2]), StreamType("INT4")).tolist() == [0x2D]  # -3 = 0b1101 low, 2 high


def test_packing_refuses_values_outside_the_type():
    with pytest.raises(ValueError, match=r"outside UINT3 \[0, 7\]"):
        pack(np.array([8]), StreamType("UINT3"))


@pytest.mark.parametrize(("simd", "folded"), [(3, (1, 32, 32, 1, 3)), (1, (1, 32, 32, 3, 1))])
def test_input_layout_from_the_first_layer_simd(simd, folded):
    io = io_from_folding(simd)
    assert io.input.folded == folded and io.input.packed == folded  # UINT8: one byte per value
    assert (io.output.dtype.name, io.output.folded, io.output.packed) == ("UINT3", (1, 1, 1), (1, 1, 1))
    crops = np.random.default_rng(simd).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(pack_crops(crops, io).reshape(5, 32, 32, 3), crops)  # RGB bytes in order


def test_input_simd_must_divide_the_channels():
    with pytest.raises(ValueError, match="first-layer SIMD 2 does not divide the 3 input channels"):
        io_from_folding(2)


FINN_DRIVER = """
from qonnx.core.datatype import DataType
from driver_base import FINNExampleOverlay

io_shape_dict = {
    # FINN DataType for input and output tensors
    "idt" : [DataType['UINT8']],
    "odt" : [DataType['UINT3']],
    # shapes for input and output tensors (NHWC layout)
    "ishape_normal" : [(1, 32, 32, 3)],
    "oshape_normal" : [(1, 1)],
    "ishape_folded" : [(1, 32, 32, 1, 3)],
    "oshape_folded" : [(1, 1, 1)],
    "ishape_packed" : [(1, 32, 32, 1, 3)],
    "oshape_packed" : [(1, 1, 1)],
    "input_dma_name" : ['idma0'],
    "output_dma_name" : ['odma0'],
    "number_of_external_weights": 0,
    "num_inputs" : 1,
    "num_outputs" : 1,
}
"""


def test_layout_read_from_finn_generated_driver(tmp_path):
    """The io_shape_dict format of FINN's MakePYNQDriver output (text of its template)."""
    (tmp_path / "driver.py").write_text(FINN_DRIVER)
    io = io_from_driver(tmp_path / "driver.py")
    assert (
        io.input.dtype.name == "UINT8" and io.input.folded == (1, 32, 32, 1, 3) and io.input.packed == (1, 32, 32, 1, 3)
    )
    assert io.output.dtype.name == "UINT3" and io.output.packed == (1, 1, 1)
    assert (io.input_dma, io.output_dma) == ("idma0", "odma0")
    assert io == io_from_folding(3)


class FakeBuffer(np.ndarray):
    def flush(self):
        self.flushes += 1

    def invalidate(self):
        self.invalidations += 1


class FakeBoard:
    """Stands in for pynq: no FPGA board can run here. It keeps FINN's IODMA register protocol
    (address, count, start; idle/done bits) and computes what the accelerator computes, the
    network's top-1 class, with the CPU engine, packing the result as FINN's LabelSelect stream."""

    def __init__(self):
        self.buffers: dict[int, FakeBuffer] = {}
        self.engine = CpuClassifier("n-cnv")
        self.idma0, self.odma0 = FakeDma(self, "in"), FakeDma(self, "out")
        self.runs: list[int] = []

    def allocate(self, shape, dtype, cacheable):
        buffer = np.zeros(shape, dtype).view(FakeBuffer)
        buffer.device_address = 0x1_0000_0000 * (len(self.buffers) + 1) + 0x1000
        buffer.flushes = buffer.invalidations = 0
        self.buffers[buffer.device_address] = buffer
        return buffer

    def stream(self):
        count = self.idma0.registers[0x1C]
        assert self.odma0.registers[0x1C] == count, "both DMAs must move the same number of crops"
        source = self.buffers[self.idma0.address()]
        assert source.flushes, "the input buffer must be flushed to the device before the DMA reads it"
        crops = np.array(source[:count]).reshape(count, 32, 32, 3)  # UINT8, SIMD 3: bytes are RGB
        classes = self.engine.classify(crops)
        sink = self.buffers[self.odma0.address()]
        sink[:count] = np.array([list(_finn_reference_pack([c], _qonnx_type("UINT3"))) for c in classes])[:, None, :]
        self.runs.append(count)
        self.odma0.done = True


def _qonnx_type(name):
    from qonnx.core.datatype import DataType

    return DataType[name]


class FakeDma:
    def __init__(self, board: FakeBoard, side: str):
        self.board, self.side, self.registers, self.done = board, side, {}, False

    def address(self) -> int:
        return self.registers[0x10] | self.registers[0x14] << 32

    def write(self, offset: int, value: int):
        self.registers[offset] = value
        if offset == 0x00 and value & 1:
            self.done = False
            if self.side == "in":
                assert self.board.odma0.registers.get(0x00) == 1, "start the output DMA before the input DMA"
                self.board.stream()

    def read(self, offset: int) -> int:
        assert offset == 0x00
        return 0x4 | (0x2 if self.done else 0)


def test_dma_flow_with_a_fake_board(tmp_path):
    """No board can run here: a fake pynq overlay (see FakeBoard) checks the packing, buffer sync,
    register sequence and unpacking; the classes must equal the CPU engine's, over several batches."""
    pytest.importorskip("qonnx", reason="the fake accelerator packs with qonnx datatypes (train extra)")
    board = FakeBoard()
    classifier = FinnClassifier(
        "n-cnv", tmp_path / "finn-accel.bit", max_batch=64, overlay=board, allocate=board.allocate
    )
    crops = np.random.default_rng(9).integers(0, 256, (150, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(classifier.classify(crops), CpuClassifier("n-cnv").classify(crops))
    assert board.runs == [64, 64, 22]
    assert classifier.out_buffer.invalidations == 3
    with pytest.raises(NotImplementedError, match="returns classes, not scores"):
        classifier.scores(crops)


def test_bench_finn_flow_with_a_fake_board(tmp_path):
    """No board can run here: the bench's path (real clip crops, classes compared with the engine,
    alternating rounds) over the fake overlay of FakeBoard; its crops/s figure means nothing here."""
    pytest.importorskip("qonnx", reason="the fake accelerator packs with qonnx datatypes (train extra)")
    from binarycop.bench.classifier import bench_finn

    board = FakeBoard()
    fpga = FinnClassifier("n-cnv", tmp_path / "finn-accel.bit", max_batch=64, overlay=board, allocate=board.allocate)
    result = bench_finn("n-cnv", None, batch=64, rounds=1, seconds=0.05, classifier=fpga)
    assert result["classes_equal_engine"] == 1.0 and result["checked_on"].startswith("real face crops")
    assert result["checked_crops"] > 0 and result["fpga_paper_crops_per_s"] == 6460


def test_finn_backend_without_a_board_says_so_and_names_cpu(tmp_path):
    """On this machine (no PYNQ board; pynq absent or raising No Devices Found) the backend stops
    with a clear error, through the real import and Overlay path."""
    bitfile = tmp_path / "finn-accel.bit"
    bitfile.write_bytes(b"\0")
    bitfile.with_suffix(".hwh").write_text("<hwh/>")
    with pytest.raises(FpgaUnavailable, match=r"no FPGA found .*use the cpu backend"):
        make_classifier("finn", "n-cnv", str(bitfile))


@pytest.mark.parametrize(
    ("bitfile", "error", "message"),
    [(None, ValueError, "needs the accelerator's bitfile"), ("missing.bit", FileNotFoundError, "bitfile not found")],
)
def test_finn_backend_bitfile_errors(tmp_path, bitfile, error, message):
    with pytest.raises(error, match=message):
        make_classifier("finn", "n-cnv", str(tmp_path / bitfile) if bitfile else None)


def test_config_finn_backend_needs_a_bitfile():
    from binarycop.config import ClassifierConfig

    with pytest.raises(ValueError, match="backend finn needs bitfile"):
        ClassifierConfig(backend="finn")
    assert ClassifierConfig(backend="finn", bitfile="/boot/finn-accel.bit").bitfile == "/boot/finn-accel.bit"


def test_cli_fpga_estimate_json_is_one_document(capsys):
    from binarycop.cli import main

    assert main(["fpga", "estimate", "--arch", "u-cnv", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["arch"] == "u-cnv" and result["paper_crops_per_s"] == 1646 and result["bottleneck"]


def test_cli_fpga_estimate_rejects_broken_folding(tmp_path, capsys):
    from binarycop.cli import main

    config = json.loads(default_config_path("cnv").read_text())
    config["MVAU_hls_1"]["PE"] = 7
    (tmp_path / "bad.json").write_text(json.dumps(config))
    assert main(["fpga", "estimate", "--arch", "cnv", "--folding", str(tmp_path / "bad.json")]) == 2
    assert "MVAU_hls_1 (conv1" in capsys.readouterr().err


def test_cli_bench_finn_without_a_board(tmp_path, capsys):
    from binarycop.cli import main

    bitfile = tmp_path / "finn-accel.bit"
    bitfile.write_bytes(b"\0")
    bitfile.with_suffix(".hwh").write_text("<hwh/>")
    assert main(["bench", "classifier", "--backend", "finn", "--bitfile", str(bitfile)]) == 2
    assert "no FPGA found" in capsys.readouterr().err


@pytest.mark.board
@pytest.mark.skipif(
    not os.environ.get(BITFILE_ENV), reason=f"needs a PYNQ board with a FINN-built bitfile in ${BITFILE_ENV}"
)
def test_board_classes_equal_the_engine_on_real_crops(shared_data):
    classifier = make_classifier("finn", "n-cnv", os.environ[BITFILE_ENV])
    crops = _real_crops(shared_data, per_class=128)
    np.testing.assert_array_equal(classifier.classify(crops), CpuClassifier("n-cnv").classify(crops))


def test_finn_build_recipe_targets_the_paper_board():
    """finn/build.py runs only inside FINN's docker image; read its settings from the source."""
    import ast
    from pathlib import Path

    source = (Path(__file__).resolve().parents[1] / "finn" / "build.py").read_text()
    constants = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }
    assert constants == {"BOARD": "Pynq-Z1", "FPGA_PART": "xc7z020clg400-1", "CLOCK_NS": 10.0}
    for output in ("ESTIMATE_REPORTS", "BITFILE", "PYNQ_DRIVER"):
        assert f"DataflowOutputType.{output}" in source
    assert all(default_config_path(arch).is_file() for arch in ARCHS)
