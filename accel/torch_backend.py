"""The ``torch`` backend: the brevitas network itself (the reference; needs the ``train`` extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from accel.model_file import ModelFileError, load_model, resolve_model_path


class TorchClassifier:
    backend = "torch"

    def __init__(self, model: str | Path):
        import torch

        from accel.nets import BinaryCoP

        folded = load_model(model)
        checkpoint = resolve_model_path(model).with_suffix(".pt")
        if not checkpoint.is_file():
            raise ModelFileError(f"torch backend needs the brevitas checkpoint {checkpoint}")
        self.classes = folded.classes
        self.framing = folded.framing
        self.model_name = folded.name
        self.network = BinaryCoP(folded.arch, len(folded.classes))
        try:
            self.network.load_state_dict(torch.load(checkpoint, weights_only=True))
        except RuntimeError as error:
            raise ModelFileError(f"{checkpoint} does not match architecture {folded.arch.name!r}: {error}") from None
        self.network.eval()

    def scores(self, crops: np.ndarray) -> np.ndarray:
        import torch

        from accel.nets import crops_to_tensor

        with torch.no_grad():
            return self.network(crops_to_tensor(crops)).numpy().astype(np.int32)

    def classify(self, crops: np.ndarray) -> np.ndarray:
        return np.argmax(self.scores(crops), axis=1)
