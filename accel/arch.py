"""The three BinaryCoP networks as plain data (Fasfous et al. 2021, Table I).

All convolutions are 3x3, stride 1, no padding. A 2x2 max-pool follows conv
groups 1 and 2. Every layer but the last is followed by batch-norm and sign.
The first layer sees 8-bit pixels; every other layer sees {-1, +1}.
"""

from __future__ import annotations

from dataclasses import dataclass

from names import CLASSES  # noqa: F401 (the networks' output order)

INPUT_SIZE = 32
INPUT_CHANNELS = 3
KERNEL = 3


@dataclass(frozen=True)
class Arch:
    name: str
    conv_channels: tuple[int, ...]
    fc_features: tuple[int, ...]
    pool_after: tuple[int, ...] = (1, 3)  # indices of convs followed by a 2x2 max-pool

    def conv_shapes(self) -> list[tuple[int, int, int, int]]:
        """(in_channels, out_channels, in_size, out_size) for each conv."""
        shapes = []
        channels, size = INPUT_CHANNELS, INPUT_SIZE
        for index, out_channels in enumerate(self.conv_channels):
            out_size = size - KERNEL + 1
            shapes.append((channels, out_channels, size, out_size))
            channels, size = out_channels, out_size
            if index in self.pool_after:
                size //= 2
        return shapes

    def flat_features(self) -> int:
        """Features entering the first fully connected layer."""
        _, out_channels, _, out_size = self.conv_shapes()[-1]
        if len(self.conv_channels) - 1 in self.pool_after:
            out_size //= 2
        return out_channels * out_size * out_size


ARCHS: dict[str, Arch] = {
    "cnv": Arch("cnv", (64, 64, 128, 128, 256, 256), (512, 512)),
    "n-cnv": Arch("n-cnv", (16, 16, 32, 32, 64, 64), (128, 128)),
    "u-cnv": Arch("u-cnv", (16, 16, 32, 32, 64), (128,)),
}


def get_arch(name: str) -> Arch:
    try:
        return ARCHS[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; expected one of {sorted(ARCHS)}") from None
