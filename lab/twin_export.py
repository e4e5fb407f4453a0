"""Export a network's FP32 twin (``<model>-fp32.pt`` beside its model file) as the ``onnx`` backend's artifact."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from torch import nn

from accel.model_file import load_model, resolve_model_path
from accel.nets import INPUT_OFFSET, INPUT_SCALE, FloatCoP
from accel.onnx_model import METADATA_KEY, header, seal


class _CropsIn(nn.Module):
    """The twin behind the crops' own layout: float (N, 32, 32, 3) RGB pixel values in, logits out."""

    def __init__(self, twin: FloatCoP):
        super().__init__()
        self.twin = twin

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.twin((crops.permute(0, 3, 1, 2) - INPUT_OFFSET) / INPUT_SCALE)


def export_twin_onnx(model: str, out: Path, twin_path: Path | None = None) -> Path:
    """The twin of ``model`` (its ``-fp32.pt`` unless ``twin_path``) as a sealed ONNX file carrying the model
    file's classes and framing (the twin trains on the same crops as its binary network)."""
    import onnx

    folded = load_model(model)
    path = resolve_model_path(model)
    twin_path = Path(twin_path) if twin_path else path.with_name(f"{path.stem}-fp32.pt")
    if not twin_path.is_file():
        raise FileNotFoundError(f"no FP32 twin {twin_path} (train one with `binarycop train --fp32`)")
    twin = FloatCoP(folded.arch, len(folded.classes))
    twin.load_state_dict(torch.load(twin_path, weights_only=True, map_location="cpu"))
    network = _CropsIn(twin.eval())
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "twin.onnx"
        torch.onnx.export(
            network,
            torch.zeros(1, 32, 32, 3),
            str(raw),
            input_names=["crops"],
            output_names=["logits"],
            dynamic_axes={"crops": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
            opset_version=17,
        )
        graph = onnx.load(str(raw))
    entry = graph.metadata_props.add()
    entry.key = METADATA_KEY
    held_out = folded.meta.get("held_out")  # the twin trains on the binary network's split
    entry.value = json.dumps(header(f"{folded.name}-fp32", folded.arch.name, folded.classes, folded.framing, held_out))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(seal(graph.SerializeToString()))
    return out
