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
from accel.model_file import save_model
from accel.nets import BinaryCoP, FloatCoP, crops_to_tensor
from detector import FRAMING, Framing
from lab.batchnorm_fold import fold
from lab.dataset import (
    HELD_OUT_PERCENT,
    INCORRECT,
    INCORRECT_CLASSES,
    CropSet,
    describe_held_out,
    held_out_mask,
    load_sources,
)

SCORE_TEMPERATURE = 8.0  # integer scores are large; scale them for the softmax loss


@dataclass
class TrainOptions:
    arch: str = "n-cnv"
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 5e-3
    seed: int = 0
    held_out_percent: int = HELD_OUT_PERCENT
    threads: int = 1
    init: Path | None = None  # a .pt state dict to start from (fine-tuning after synthetic pretraining)
    balance: str = "labels"  # or "groups": see label_shares
    fp32: bool = False  # train the float twin (saved as .pt only: Grad-CAM's comparison, not a model file)
    teacher: Path | None = None  # an FP32 twin's .pt whose soft outputs the binary network also learns from
    distill: float = 0.5  # with a teacher: the share of the loss that is distillation
    device: str = "cpu"  # where the networks run ("cuda" on a GPU); augmentation stays on the CPU, seeded alike
    fold: tuple[int, int] | None = None  # (k, n): hold out cross-validation fold k of n instead of the usual split
    framing: Framing = FRAMING  # how face boxes become crops; recorded in the model file, used by the server
    exact_positions: bool = False  # scene faces a positions.csv places train with that position (lab.dataset)
    near_duplicates: bool = False  # near-duplicate pictures of folder sources share a split group (lab.dataset)
    unlabelled: tuple[str, ...] = ()  # sources of unlabelled real faces (lab.unlabelled), distilled from the teacher
    float_weights: bool = False  # binary activations over float weights (progressive training's first stage; .pt only)


def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flip, rotation, framing jitter, contrast, brightness and Gaussian noise on (N, 3, 32, 32) in [-1, 1)."""
    n = len(batch)
    flip = torch.rand(n, generator=generator) < 0.5
    batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
    angle = (torch.rand(n, generator=generator) - 0.5) * (2 * np.pi * 15 / 360)
    scale = 0.9 + 0.2 * torch.rand(n, generator=generator)  # detector boxes vary in size and place
    shift = 0.12 * (torch.rand(n, 2, generator=generator) - 0.5)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = nn.functional.affine_grid(theta, list(batch.shape), align_corners=False)
    batch = nn.functional.grid_sample(batch, grid, padding_mode="border", align_corners=False)
    contrast = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=generator)
    brightness = 0.4 * (torch.rand(n, 1, 1, 1, generator=generator) - 0.5)
    noise = 0.04 * torch.randn(batch.shape, generator=generator)
    batch = batch * contrast + brightness + noise
    return (torch.round(batch.clamp(-1, 127 / 128) * 128) / 128).contiguous()  # stay on the 8-bit grid


def _domain(group: str) -> str:
    return group.split(":", 1)[0] if not group.startswith("file:") else group.split("/", 1)[0]


def label_shares(labels: np.ndarray, balance: str) -> dict[int, float]:
    """How often each present label is drawn: equally ('labels'), or equally per mask group ('groups':
    correct, no_mask and the wrong positions with INCORRECT each a third, as the scene score weighs them)."""
    present = [int(label) for label in np.unique(labels)]
    if balance == "labels":
        return {label: 1.0 / len(present) for label in present}
    if balance != "groups":
        raise ValueError(f"balance {balance!r}: expected 'labels' or 'groups'")
    wrong = [label for label in present if label not in (CLASSES.index("correct"), CLASSES.index("no_mask"))]
    groups = [[label] for label in present if label not in wrong] + ([wrong] if wrong else [])
    return {label: 1.0 / len(groups) / len(group) for group in groups for label in group}


def balanced_indices(
    labels: np.ndarray, count: int, rng: np.random.Generator, groups=None, balance: str = "labels"
) -> np.ndarray:
    """``count`` draws, labels weighted by :func:`label_shares`, every data domain within a label equally."""
    domains = np.array([_domain(str(g)) for g in groups]) if groups is not None else np.zeros(len(labels), str)
    weights = np.zeros(len(labels))
    for label, share in label_shares(labels, balance).items():
        of_label = labels == label
        label_domains = np.unique(domains[of_label])
        for domain in label_domains:
            members = of_label & (domains == domain)
            weights[members] = share / members.sum() / len(label_domains)
    return rng.choice(len(labels), size=count, p=weights / weights.sum())


INCORRECT_INDICES = [CLASSES.index(name) for name in INCORRECT_CLASSES]


def loss_of(scores: torch.Tensor, targets: torch.Tensor, temperature: float = SCORE_TEMPERATURE) -> torch.Tensor:
    """Cross-entropy; an ``INCORRECT`` target is right when any of the three wrong positions wins."""
    logits = scores / temperature
    log_all = torch.logsumexp(logits, 1)
    incorrect = targets == INCORRECT
    safe = torch.where(incorrect, torch.zeros_like(targets), targets)
    picked = logits.gather(1, safe[:, None])[:, 0]
    picked = torch.where(incorrect, torch.logsumexp(logits[:, INCORRECT_INDICES], 1), picked)
    return (log_all - picked).mean()


UNLABELLED_SHARE = 0.25  # with unlabelled sources: each batch gets this many more crops (of its size) from them
DISTILL_TEMPERATURE = 2.0  # softens both networks' outputs, so the teacher's second choices carry weight


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL divergence from the teacher's softened class distribution to the student's (Hinton et al. 2015)."""
    t = DISTILL_TEMPERATURE
    return (
        nn.functional.kl_div(
            nn.functional.log_softmax(student_logits / t, 1),
            nn.functional.softmax(teacher_logits / t, 1),
            reduction="batchmean",
        )
        * t
        * t
    )


def load_teacher(path: Path, num_classes: int) -> FloatCoP:
    """An FP32 network of any architecture from its state dict (``binarycop train --fp32``)."""
    from accel.arch import ARCHS

    state = torch.load(path, weights_only=True, map_location="cpu")
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    for name in ARCHS:
        teacher = FloatCoP(name, num_classes)
        if {key: tuple(value.shape) for key, value in teacher.state_dict().items()} == shapes:
            teacher.load_state_dict(state)
            return teacher.eval()
    raise ValueError(f"teacher {path}: not the FP32 twin of any of {', '.join(ARCHS)} with {num_classes} classes")


@torch.no_grad()
def predict(network: nn.Module, crops: np.ndarray) -> np.ndarray:
    network.eval()
    device = next(network.parameters()).device
    return np.concatenate(
        [
            network(crops_to_tensor(crops[i : i + 512]).to(device)).argmax(1).cpu().numpy()
            for i in range(0, len(crops), 512)
        ]
        or [np.empty(0, np.int64)]
    )


def evaluate(network: nn.Module, data: CropSet) -> dict:
    """5-class accuracy and confusion on labelled crops; recall of the mask groups (incorrect: any position)."""
    predictions = predict(network, data.crops)
    labelled = data.labels < INCORRECT
    confusion = np.zeros((len(CLASSES), len(CLASSES)), np.int64)
    np.add.at(confusion, (data.labels[labelled], predictions[labelled]), 1)
    group_of = np.array([0, 1, 1, 1, 2, 1])  # correct, nose, nose_mouth, chin, no_mask, INCORRECT -> group
    recalls = []
    for group in range(3):
        members = group_of[data.labels] == group
        if members.any():
            recalls.append(float((group_of[predictions[members]] == group).mean()))
    return {
        "accuracy": float((predictions[labelled] == data.labels[labelled]).mean()) if labelled.any() else 0.0,
        "confusion": confusion,
        "group_recall": recalls,
        "group_mean": float(np.mean(recalls)) if recalls else 0.0,
    }


def _short_source(source: str) -> str:
    label, _, folder = source.rpartition("=")
    name = Path(folder).name
    return f"{label}={name}" if label else name


@torch.no_grad()
def _latent_weights_in_range(network: nn.Module) -> None:
    """Scale each layer's latent weights into [-1, 1], where binary weights clip them (the signs, which are all the
    binary network computes with, stay; batch norm after each layer absorbs the scale): a float-weight first stage
    ends with weights of any size."""
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            largest = module.weight.abs().max()
            if largest > 1:
                module.weight.div_(largest)


def _unlabelled_train_set(options: TrainOptions, cache: Path | None) -> CropSet:
    """The unlabelled crops on the training side of the split (their groups follow the labelled data's), kept
    beside ``cache`` when one is given."""
    if not options.unlabelled:
        return CropSet(np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64), np.zeros(0, str))
    from lab.unlabelled import load_unlabelled

    beside = Path(cache).with_name(f"{Path(cache).stem}-unlabelled.npz") if cache is not None else None
    extra = load_unlabelled(list(options.unlabelled), options.framing, beside)
    extra = extra.subset(~held_out_mask(extra.groups, options.held_out_percent, options.fold))
    print(f"unlabelled: {len(extra)} crops on the training side, distilled only", file=sys.stderr)
    return extra


def _counts(labels: np.ndarray) -> list[int]:
    return np.bincount(labels, minlength=INCORRECT + 1).tolist()


def train(sources: list[str], out: Path, options: TrainOptions, resume: bool = False, cache: Path | None = None):
    torch.manual_seed(options.seed)
    torch.set_num_threads(options.threads)
    rng = np.random.default_rng(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    data = load_sources(sources, cache, True, options.framing, options.exact_positions, options.near_duplicates)
    held_out = held_out_mask(data.groups, options.held_out_percent, options.fold)
    train_set, val_set = data.subset(~held_out), data.subset(held_out)
    print(
        f"train {len(train_set)} crops {_counts(train_set.labels)}, validation {len(val_set)} "
        f"{_counts(val_set.labels)} (classes {', '.join(CLASSES)}, incorrect)",
        file=sys.stderr,
    )

    extra = _unlabelled_train_set(options, cache)
    if options.fp32:
        network = FloatCoP(options.arch, len(CLASSES))
    else:
        network = BinaryCoP(options.arch, len(CLASSES), binary_weights=not options.float_weights)
    temperature = 1.0 if options.fp32 else SCORE_TEMPERATURE
    if options.init is not None:
        network.load_state_dict(torch.load(options.init, weights_only=True, map_location="cpu"))
        if not options.fp32:
            _latent_weights_in_range(network)
    network.to(options.device)
    teacher = load_teacher(options.teacher, len(CLASSES)) if options.teacher is not None else None
    if len(extra) and teacher is None:
        raise ValueError("unlabelled sources teach through a teacher's outputs: give --teacher (or --teacher-epochs)")
    extra_rng = np.random.default_rng(options.seed + 1)  # its own draws: the labelled batches stay as without it
    if teacher is not None:
        teacher.to(options.device)
    optimiser = torch.optim.Adam(network.parameters(), lr=options.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, options.epochs)
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out.with_suffix(".ckpt")
    start_epoch = 0
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, weights_only=False, map_location="cpu")
        network.load_state_dict(state["network"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        rng = state["rng"]
        start_epoch = state["epoch"] + 1
        print(f"resumed from {checkpoint_path} after epoch {start_epoch}", file=sys.stderr)
    started = time.monotonic()
    steps = max(len(train_set) // options.batch_size, 1)
    for epoch in range(start_epoch, options.epochs):
        network.train()
        order = balanced_indices(train_set.labels, steps * options.batch_size, rng, train_set.groups, options.balance)
        progress = tqdm(range(steps), desc=f"epoch {epoch + 1}/{options.epochs}", file=sys.stderr, leave=False)
        for step in progress:
            batch_index = order[step * options.batch_size : (step + 1) * options.batch_size]
            inputs = augment(crops_to_tensor(train_set.crops[batch_index]), generator).to(options.device)
            targets = torch.from_numpy(train_set.labels[batch_index]).to(options.device)
            if len(extra):
                picked = extra_rng.choice(len(extra), size=round(UNLABELLED_SHARE * len(batch_index)))
                unlabelled = augment(crops_to_tensor(extra.crops[picked]), generator).to(options.device)
                inputs = torch.cat([inputs, unlabelled])
            outputs = network(inputs)
            loss = loss_of(outputs[: len(targets)], targets, temperature)
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(inputs)
                loss = (1 - options.distill) * loss + options.distill * distillation_loss(
                    outputs / temperature, teacher_logits
                )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            progress.set_postfix(loss=f"{loss.item():.3f}")
        schedule.step()
        scores = evaluate(network, val_set)
        print(
            f"epoch {epoch + 1}: loss {loss.item():.3f} validation accuracy {scores['accuracy']:.4f}, "
            f"group recall {' / '.join(f'{r:.3f}' for r in scores['group_recall'])} "
            f"(with / incorrect / without), mean {scores['group_mean']:.4f}",
            file=sys.stderr,
        )
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
    scores = evaluate(network, val_set)
    network.cpu()  # folded and saved from the CPU, where the engine's bit-exact reference runs
    meta = {
        "name": options.arch,
        "trained_on": [_short_source(source) for source in sources],  # folder names only, no local paths
        "validation_accuracy": round(scores["accuracy"], 4),
        "validation_group_mean": round(scores["group_mean"], 4),
        "validation_confusion": scores["confusion"].tolist(),
        "train_seconds": round(time.monotonic() - started, 1),
        "epochs": options.epochs,
        "seed": options.seed,
        "balance": options.balance,
        "initialised_from": Path(options.init).name if options.init else None,
        "teacher": Path(options.teacher).name if options.teacher else None,
        "device": torch.device(options.device).type,  # "cuda": trained on a GPU (train_seconds are not CPU seconds)
        "held_out": describe_held_out(options.held_out_percent, options.fold),
        "framing": options.framing.as_meta(),
        "exact_positions": options.exact_positions,
        "near_duplicates": options.near_duplicates,
        "unlabelled": [_short_source(source) for source in options.unlabelled],
        "unlabelled_crops": len(extra),
    }
    torch.save(network.state_dict(), out.with_suffix(".pt"))
    if not options.fp32 and not options.float_weights:
        save_model(fold(network, CLASSES, meta), out)
    print(json.dumps(meta), file=sys.stderr)
    return network, meta
