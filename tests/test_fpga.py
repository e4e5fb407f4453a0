"""The FPGA path: the FINN-ready export, the folding configs against FINN's rules, the throughput
estimator and folding search, and the PYNQ backend's packing and error handling."""

from __future__ import annotations

import numpy as np
import pytest

from accel import CLASSES, make_classifier
from accel.cpu import CpuClassifier

torch = pytest.importorskip("torch", reason="the export needs the train extra")
pytest.importorskip("qonnx", reason="the export needs the train extra")
torch.set_num_threads(1)

from accel.export import export_network, export_qonnx, random_network, run_qonnx  # noqa: E402
from accel.fold import fold  # noqa: E402


def _real_crops(shared_data, limit: int) -> np.ndarray:
    from accel.dataset import load_source

    crops = load_source(str(shared_data / "maskedface")).crops
    return crops[np.random.default_rng(0).permutation(len(crops))[:limit]]


def test_export_gives_the_engine_classes_on_real_crops(tmp_path, shared_data):
    """qonnx's executor runs the FINN export (uint8 pixels in, TopK class out) on real MaskedFace-Net
    crops and returns exactly the CPU engine's classes."""
    crops = _real_crops(shared_data, 600)
    path = export_qonnx("n-cnv", tmp_path / "n-cnv.onnx", batch=200)
    classes = run_qonnx(path, crops)
    assert classes.shape == (600, 1)
    expected = make_classifier("cpu", "n-cnv").classify(crops)
    np.testing.assert_array_equal(classes[:, 0], expected)
    assert len(np.unique(expected)) >= 3  # real crops reach several classes, not one


@pytest.mark.parametrize("arch", ["u-cnv", "cnv"])
def test_export_of_random_weight_networks_equals_the_engine(tmp_path, arch):
    """CNV and u-CNV ship no trained weights: seeded random ones check the export of their
    layouts (u-CNV flattens a 3x3 map into its first dense layer) against the folded engine."""
    network = random_network(arch, seed=3)
    path = export_network(network, tmp_path / f"{arch}.onnx", batch=50, head="scores")
    crops = np.random.default_rng(4).integers(0, 256, (100, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(run_qonnx(path, crops), CpuClassifier(fold(network, CLASSES)).scores(crops))


def test_export_graph_is_what_finn_expects(tmp_path):
    """UINT8 input with the normalisation as scalar Add/Mul in front, bipolar weights and activations,
    batch-norm left for FINN to fold, TopK at the end, every shape inferred."""
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper

    wrapper = ModelWrapper(str(export_qonnx("n-cnv", tmp_path / "m.onnx")))
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


def test_export_refuses_unknown_head(tmp_path):
    with pytest.raises(ValueError, match="unknown export head 'softmax'"):
        export_qonnx("n-cnv", tmp_path / "m.onnx", head="softmax")
