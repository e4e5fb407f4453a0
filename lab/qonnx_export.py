"""QONNX export of a shipped network (needs the ``train`` extra): the model FINN's ``build_dataflow`` consumes.

The exported graph takes the camera's 8-bit pixels itself, as the finn-examples BNN-PYNQ models do:
its input ``global_in`` is annotated ``UINT8`` (N, 3, 32, 32) and the normalisation the network was
trained with, ``(pixel - 128) / 128``, is two scalar graph ops (``Add -128``, ``Mul 1/128``) that FINN's
streamlining moves past the first convolution and absorbs into its thresholds. Weights and
activations are ``BipolarQuant`` nodes, batch-norm stays a ``BatchNormalization`` node (FINN folds
it with the sign into thresholds). ``head="topk"`` appends ``TopK(k=1)`` so the accelerator
returns class indices (FINN turns it into a ``LabelSelect`` unit); ``head="scores"`` ends at the
raw integer class scores, which FINN would leave as a software affine step after the XNOR
popcount of the last layer.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from accel.nets import INPUT_OFFSET, INPUT_SCALE

HEADS = ("topk", "scores")
# op types the export may contain: what brevitas' QONNX export of these networks produces plus the
# pixel normalisation and the top-k head; each is one FINN's ConvertQONNXtoFINN/streamlining handles
FINN_OPS = {"Add", "Mul", "Conv", "BatchNormalization", "BipolarQuant", "MaxPool", "Reshape", "Gemm", "TopK"}


def export_qonnx(model: str, out: str | Path, batch: int = 1, head: str = "topk", random_weights: bool = False) -> Path:
    """Export the brevitas reference of ``model`` (a shipped name or .npz path) to a cleaned QONNX file;
    see the module docstring. ``random_weights`` exports the architecture ``model`` names with seeded
    random weights instead: for a FINN build that sizes hardware before a network is trained."""
    if random_weights:
        network = random_network(model)
    else:
        from accel.torch_backend import TorchClassifier

        network = TorchClassifier(model).network
    return export_network(network, out, batch, head)


def random_network(arch: str, seed: int = 0):
    """A brevitas network of ``arch`` with seeded random weights and batch-norm statistics."""
    import torch

    from accel.arch import CLASSES
    from accel.nets import BinaryCoP

    torch.manual_seed(seed)
    network = BinaryCoP(arch, len(CLASSES))
    for module in network.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-4, 4)
            module.running_var.uniform_(1, 20)
            module.weight.data.uniform_(-1, 1)
    return network.eval()


def export_network(network, out: str | Path, batch: int = 1, head: str = "topk") -> Path:
    """Export a brevitas ``BinaryCoP`` to a cleaned, FINN-ready QONNX file at ``out``."""
    import torch
    from brevitas.export import export_qonnx as brevitas_export
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.insert_topk import InsertTopK
    from qonnx.util.cleanup import cleanup_model

    if head not in HEADS:
        raise ValueError(f"unknown export head {head!r}; expected one of {HEADS}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1; got {batch}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        brevitas_export(network, torch.zeros(batch, 3, 32, 32), str(out))
    wrapper = cleanup_model(ModelWrapper(str(out)))
    wrapper = _prepend_pixel_normalisation(wrapper)
    if head == "topk":
        wrapper = wrapper.transform(InsertTopK(k=1))
    wrapper = cleanup_model(wrapper)
    _strip_export_metadata(wrapper)
    wrapper.set_tensor_datatype(wrapper.graph.input[0].name, _uint8())
    check_finn_ready(wrapper)
    wrapper.save(str(out))
    return out


def _uint8():
    from qonnx.core.datatype import DataType

    return DataType["UINT8"]


def _prepend_pixel_normalisation(wrapper):
    """New graph input of raw pixels (UINT8 held in float) -> Add(-128) -> Mul(1/128) -> old input."""
    from onnx import TensorProto, helper

    old_input = wrapper.graph.input[0]
    shape = wrapper.get_tensor_shape(old_input.name)
    pixels = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, shape)
    centred = helper.make_tensor_value_info("pixels_centred", TensorProto.FLOAT, shape)
    normalised = helper.make_tensor_value_info(old_input.name, TensorProto.FLOAT, shape)
    offset, scale = "pixel_offset", "pixel_scale"
    wrapper.set_initializer(offset, np.array(-float(INPUT_OFFSET), np.float32))
    wrapper.set_initializer(scale, np.array(1.0 / INPUT_SCALE, np.float32))
    nodes = [
        helper.make_node("Add", [pixels.name, offset], [centred.name]),
        helper.make_node("Mul", [centred.name, scale], [normalised.name]),
    ]
    graph = wrapper.graph
    graph.input.remove(old_input)
    graph.input.insert(0, pixels)
    graph.value_info.extend([centred, normalised])
    for node in reversed(nodes):
        graph.node.insert(0, node)
    wrapper.set_tensor_datatype(pixels.name, _uint8())
    return wrapper


def _strip_export_metadata(wrapper) -> None:
    """Drop torch.export bookkeeping from the graph inputs and outputs (meaningless to FINN)."""
    for value in (*wrapper.graph.input, *wrapper.graph.output):
        del value.metadata_props[:]


def check_finn_ready(wrapper) -> None:
    """Raise ValueError naming the first property of the graph FINN's build would trip on."""
    from qonnx.core.datatype import DataType

    if len(wrapper.graph.input) != 1 or len(wrapper.graph.output) != 1:
        raise ValueError("the exported graph must have exactly one input and one output")
    name = wrapper.graph.input[0].name
    if wrapper.get_tensor_datatype(name) != DataType["UINT8"]:
        raise ValueError(f"graph input {name!r} is {wrapper.get_tensor_datatype(name)}, not UINT8")
    if not wrapper.check_all_tensor_shapes_specified():
        raise ValueError("some tensor shapes are not inferred")
    for node in wrapper.graph.node:
        if node.op_type not in FINN_OPS:
            raise ValueError(f"node {node.name} has op type {node.op_type}, not one this export plans for FINN")
        if node.op_type == "Conv":
            pads = next((list(a.ints) for a in node.attribute if a.name == "pads"), [])
            if any(pads):
                raise ValueError(f"node {node.name} pads its input; the pixel offset could not move past it")


def run_qonnx(path: str | Path, crops: np.ndarray) -> np.ndarray:
    """Outputs (scores, or class indices for the top-k head) from qonnx's reference executor (a
    reference, not a runtime), fed raw uint8 pixels in batches of the exported batch size; the crop
    count must be a multiple of it."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    wrapper = ModelWrapper(str(path))
    name_in, name_out = wrapper.graph.input[0].name, wrapper.graph.output[0].name
    batch = wrapper.get_tensor_shape(name_in)[0]
    if len(crops) % batch:
        raise ValueError(f"{len(crops)} crops do not fill batches of {batch}")
    pixels = np.ascontiguousarray(np.asarray(crops, np.uint8).transpose(0, 3, 1, 2), dtype=np.float32)
    outputs = [execute_onnx(wrapper, {name_in: pixels[i : i + batch]})[name_out] for i in range(0, len(pixels), batch)]
    return np.concatenate(outputs)
