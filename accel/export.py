"""QONNX export of a shipped network (needs the ``train`` extra): the format FINN consumes."""

from __future__ import annotations

import warnings
from pathlib import Path


def export_qonnx(model: str, out: str | Path, batch: int = 1) -> Path:
    """Export the brevitas reference of ``model`` to a cleaned QONNX file with shapes inferred.

    The input is float ``(pixel - 128) / 128`` (N, 3, 32, 32); weights and activations are
    ``BipolarQuant`` nodes; the output is the integer class scores.
    """
    import torch
    from brevitas.export import export_qonnx as brevitas_export
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.cleanup import cleanup_model

    from accel.torch_backend import TorchClassifier

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    network = TorchClassifier(model).network
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        brevitas_export(network, torch.zeros(batch, 3, 32, 32), str(out))
    wrapper = cleanup_model(ModelWrapper(str(out))).transform(InferShapes())
    wrapper.save(str(out))
    return out


def run_qonnx(path: str | Path, crops) -> np.ndarray:  # noqa: F821
    """Class scores from qonnx's reference executor (a reference, not a runtime), in batches of the
    exported batch size; the crop count must be a multiple of it."""
    import numpy as np
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    from accel.nets import crops_to_tensor

    wrapper = ModelWrapper(str(path))
    name_in, name_out = wrapper.graph.input[0].name, wrapper.graph.output[0].name
    batch = wrapper.get_tensor_shape(name_in)[0]
    if len(crops) % batch:
        raise ValueError(f"{len(crops)} crops do not fill batches of {batch}")
    outputs = [
        execute_onnx(wrapper, {name_in: crops_to_tensor(crops[i : i + batch]).numpy()})[name_out]
        for i in range(0, len(crops), batch)
    ]
    return np.concatenate(outputs)
