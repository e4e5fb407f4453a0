"""brevitas definitions of CNV, n-CNV and µ-CNV: the torch reference of every backend.

Needs the ``train`` extra (torch, brevitas). The input is ``(pixel - 128) / 128``,
exactly the 8-bit signed value the first layer of the CPU engine and FINN see,
so the first accumulator is an integer divided by 128. The last layer returns its
raw accumulator: integer scores whose argmax is the class.
"""

from __future__ import annotations

import numpy as np
import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst
from torch import nn

from accel.arch import KERNEL, Arch, get_arch

INPUT_OFFSET = 128
INPUT_SCALE = 128.0


class BinaryWeight(SignedBinaryWeightPerTensorConst):
    """Weights in {-1, +1} (scale 1), latent float weights clipped to [-1, 1], straight-through."""

    scaling_const = 1.0


def _sign() -> QuantIdentity:
    return QuantIdentity(act_quant=SignedBinaryActPerTensorConst)


class BinaryCoP(nn.Module):
    """One of the paper's networks, chosen by ``arch``. ``binary_weights=False``: binary activations over float
    weights, the first stage of training it progressively (the model lab's ``--progressive``); not foldable."""

    def __init__(self, arch: Arch | str, num_classes: int, binary_weights: bool = True):
        super().__init__()
        self.arch = get_arch(arch) if isinstance(arch, str) else arch
        self.num_classes = num_classes
        self.convs = nn.ModuleList()
        self.conv_norms = nn.ModuleList()
        self.conv_signs = nn.ModuleList()
        weights = BinaryWeight if binary_weights else None
        for in_channels, out_channels, _, _ in self.arch.conv_shapes():
            self.convs.append(QuantConv2d(in_channels, out_channels, KERNEL, bias=False, weight_quant=weights))
            self.conv_norms.append(nn.BatchNorm2d(out_channels))
            self.conv_signs.append(_sign())
        self.fcs = nn.ModuleList()
        self.fc_norms = nn.ModuleList()
        self.fc_signs = nn.ModuleList()
        features = self.arch.flat_features()
        for out_features in self.arch.fc_features:
            self.fcs.append(QuantLinear(features, out_features, bias=False, weight_quant=weights))
            self.fc_norms.append(nn.BatchNorm1d(out_features))
            self.fc_signs.append(_sign())
            features = out_features
        self.classifier = QuantLinear(features, num_classes, bias=False, weight_quant=weights)
        for module in self.modules():
            if isinstance(module, (QuantConv2d, QuantLinear)):
                nn.init.uniform_(module.weight, -1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, (conv, norm, sign) in enumerate(zip(self.convs, self.conv_norms, self.conv_signs)):
            x = sign(norm(conv(x)))
            if index in self.arch.pool_after:
                x = nn.functional.max_pool2d(x, 2)
        x = torch.flatten(x, 1)
        for fc, norm, sign in zip(self.fcs, self.fc_norms, self.fc_signs):
            x = sign(norm(fc(x)))
        return self.classifier(x)


def crops_to_tensor(crops: np.ndarray) -> torch.Tensor:
    """uint8 (N, 32, 32, 3) crops -> the network's float input (N, 3, 32, 32)."""
    pixels = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()
    return (pixels - INPUT_OFFSET) / INPUT_SCALE


def binary_weights(layer: QuantConv2d | QuantLinear) -> np.ndarray:
    """The layer's weights as they run: int8 in {-1, +1}."""
    with torch.no_grad():
        weights = layer.quant_weight().value.detach().cpu().numpy()
    return np.where(weights >= 0, 1, -1).astype(np.int8)


class FloatCoP(nn.Module):
    """The FP32 twin of a BinaryCoP network: same layers, float weights, ReLU for sign (Grad-CAM comparisons)."""

    def __init__(self, arch: Arch | str, num_classes: int):
        super().__init__()
        self.arch = get_arch(arch) if isinstance(arch, str) else arch
        self.num_classes = num_classes
        self.convs, self.conv_norms, self.conv_signs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for in_channels, out_channels, _, _ in self.arch.conv_shapes():
            self.convs.append(nn.Conv2d(in_channels, out_channels, KERNEL, bias=False))
            self.conv_norms.append(nn.BatchNorm2d(out_channels))
            self.conv_signs.append(nn.ReLU())
        self.fcs, self.fc_norms, self.fc_signs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        features = self.arch.flat_features()
        for out_features in self.arch.fc_features:
            self.fcs.append(nn.Linear(features, out_features, bias=False))
            self.fc_norms.append(nn.BatchNorm1d(out_features))
            self.fc_signs.append(nn.ReLU())
            features = out_features
        self.classifier = nn.Linear(features, num_classes, bias=False)

    forward = BinaryCoP.forward
