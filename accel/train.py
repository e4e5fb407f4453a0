"""Train a BinaryCoP network with brevitas on CPU, then fold it into a model file.

Class-balanced sampling, the paper's augmentations (contrast, brightness, Gaussian
noise, flip, rotation), per-epoch validation on a split held out by face/image
group, a checkpoint after every epoch (``--resume`` continues from it), a seed.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from accel.arch import CLASSES
from accel.dataset import HELD_OUT_PERCENT, CropSet, load_sources, split_of
from accel.fold import fold
from accel.model_file import save_model
from accel.nets import BinaryCoP, crops_to_tensor

SCORE_TEMPERATURE = 8.0  # integer scores are large; scale them for the softmax loss


@dataclass
class TrainOptions:
    arch: str = "n-cnv"
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 5e-3
    seed: int = 0
    held_out_percent: int = HELD_OUT_PERCENT
    threads: int = 2


def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flip, small rotation, contrast, brightness and Gaussian noise on (N, 3, 32, 32) in [-1, 1)."""
    n = len(batch)
    flip = torch.rand(n, generator=generator) < 0.5
    batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
    angle = (torch.rand(n, generator=generator) - 0.5) * (2 * np.pi * 15 / 360)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(n)], 1), torch.stack([sin, cos, torch.zeros(n)], 1)], 1)
    grid = nn.functional.affine_grid(theta, list(batch.shape), align_corners=False)
    batch = nn.functional.grid_sample(batch, grid, padding_mode="border", align_corners=False)
    contrast = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=generator)
    brightness = 0.4 * (torch.rand(n, 1, 1, 1, generator=generator) - 0.5)
    noise = 0.04 * torch.randn(batch.shape, generator=generator)
    batch = batch * contrast + brightness + noise
    return (torch.round(batch.clamp(-1, 127 / 128) * 128) / 128).contiguous()  # stay on the 8-bit grid


def balanced_indices(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    present = np.unique(labels)
    weights = np.zeros(len(labels))
    for label in present:
        weights[labels == label] = 1.0 / (labels == label).sum() / len(present)
    return rng.choice(len(labels), size=count, p=weights)


@torch.no_grad()
def evaluate(network: nn.Module, data: CropSet) -> tuple[float, np.ndarray]:
    network.eval()
    predictions = np.concatenate(
        [network(crops_to_tensor(data.crops[i : i + 512])).argmax(1).numpy() for i in range(0, len(data), 512)]
    )
    confusion = np.zeros((len(CLASSES), len(CLASSES)), np.int64)
    np.add.at(confusion, (data.labels, predictions), 1)
    return float((predictions == data.labels).mean()), confusion


def _short_source(source: str) -> str:
    label, _, folder = source.rpartition("=")
    name = Path(folder).name
    return f"{label}={name}" if label else name


def train(sources: list[str], out: Path, options: TrainOptions, resume: bool = False, cache: Path | None = None):
    torch.manual_seed(options.seed)
    torch.set_num_threads(options.threads)
    rng = np.random.default_rng(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    data = load_sources(sources, cache)
    held_out = np.array([split_of(g, options.held_out_percent) for g in data.groups])
    train_set, val_set = data.subset(~held_out), data.subset(held_out)
    print(
        f"train {len(train_set)} crops {np.bincount(train_set.labels, minlength=5).tolist()}, "
        f"validation {len(val_set)} {np.bincount(val_set.labels, minlength=5).tolist()}",
        file=sys.stderr,
    )

    network = BinaryCoP(options.arch, len(CLASSES))
    optimiser = torch.optim.Adam(network.parameters(), lr=options.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, options.epochs)
    checkpoint_path = out.with_suffix(".ckpt")
    start_epoch = 0
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, weights_only=False)
        network.load_state_dict(state["network"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        rng = state["rng"]
        start_epoch = state["epoch"] + 1
    started = time.monotonic()
    steps = max(len(train_set) // options.batch_size, 1)
    for epoch in range(start_epoch, options.epochs):
        network.train()
        order = balanced_indices(train_set.labels, steps * options.batch_size, rng)
        progress = tqdm(range(steps), desc=f"epoch {epoch + 1}/{options.epochs}", file=sys.stderr, leave=False)
        for step in progress:
            batch_index = order[step * options.batch_size : (step + 1) * options.batch_size]
            inputs = augment(crops_to_tensor(train_set.crops[batch_index]), generator)
            targets = torch.from_numpy(train_set.labels[batch_index])
            loss = nn.functional.cross_entropy(network(inputs) / SCORE_TEMPERATURE, targets)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            progress.set_postfix(loss=f"{loss.item():.3f}")
        schedule.step()
        accuracy, _ = evaluate(network, val_set)
        print(f"epoch {epoch + 1}: loss {loss.item():.3f} validation accuracy {accuracy:.4f}", file=sys.stderr)
        torch.save(
            {
                "network": network.state_dict(),
                "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(),
                "generator": generator.get_state(),
                "rng": rng,
                "epoch": epoch,
            },
            checkpoint_path,
        )
    accuracy, confusion = evaluate(network, val_set)
    meta = {
        "name": options.arch,
        "trained_on": [_short_source(source) for source in sources],  # folder names only, no local paths
        "validation_accuracy": round(accuracy, 4),
        "validation_confusion": confusion.tolist(),
        "train_seconds": round(time.monotonic() - started, 1),
        "epochs": options.epochs,
        "seed": options.seed,
    }
    torch.save(network.state_dict(), out.with_suffix(".pt"))
    save_model(fold(network, CLASSES, meta), out)
    print(json.dumps(meta), file=sys.stderr)
    return network, meta
