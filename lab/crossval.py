"""Cross-validation of a training recipe: ``n`` models, each trained with one fold of the data held out,
each scored on its own fold only, the figures pooled over all folds.

One held-out split scores 25 incorrectly worn scene faces of 24 px or more, so a recipe's figure on it moves
4 points per face, and choosing among runs by that split flatters the one chosen. Over ``n`` folds every
labelled face is scored once, by a model that never saw it (nor its image, nor its FFHQ id): the pooled
figures are about the recipe, not one draw, and their intervals narrow by the square root of ``n``.
A fold holds out scenes, MaskedFace-Net ids and single photos alike (``lab.dataset.split_of``); a teacher,
when the recipe distils, is trained on the same fold, so nothing held out leaks through it.
With a positions CSV (``lab.scenes.read_positions``; by default ``positions.csv`` beside the scenes' annotations),
the exact mask position of the hand-labelled incorrectly worn scene faces is scored the same way, per fold and pooled:
a face's position goes with its image, so each fold's model scores only its own fold's faces.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from accel.arch import CLASSES
from detector import Framing, crop_faces
from lab.dataset import INCORRECT, CropSet, held_out_mask, load_sources, split_of
from lab.scenes import (
    PositionTable,
    group_recalls,
    position_recalls,
    positions_of,
    read_positions,
    scene_split,
    wilson_interval,
)

PLAN_FILE = "crossval.json"


@dataclass
class CrossvalPlan:
    arch: str
    folds: int
    epochs: int
    teacher_epochs: int  # 0: no teacher; else an FP32 twin trained this long on each fold teaches its model
    balance: str
    seed: int
    learning_rate: float
    sources: list[str]
    crop_margin: float = 0.2  # lab.dataset's framing of every crop: trained, scored and recorded in the models
    crop_drop: float = 0.0
    exact_positions: bool = False  # scene faces placed by positions.csv train with their position
    near_duplicates: bool = False  # near-duplicate pictures of folder sources stay in one fold
    unlabelled: list[str] = field(default_factory=list)  # unlabelled real faces, distilled from each fold's teacher
    teacher_arch: str = ""  # the teacher's architecture ("": the student's own FP32 twin; "cnv": a larger one)
    progressive_epochs: int = 0  # first this long with binary activations over float weights, then binary weights

    @property
    def framing(self) -> Framing:
        return Framing(self.crop_margin, self.crop_drop)

    def train_options(self, device: str = "cpu"):
        """The options every fold's model trains with (its fold and teacher are set per fold)."""
        from lab.train import TrainOptions

        return TrainOptions(
            arch=self.arch,
            epochs=self.epochs,
            seed=self.seed,
            learning_rate=self.learning_rate,
            balance=self.balance,
            device=device,
            framing=self.framing,
            exact_positions=self.exact_positions,
            near_duplicates=self.near_duplicates,
            unlabelled=tuple(self.unlabelled),
        )


# for plans written before these settings
PLAN_DEFAULTS = {
    "crop_margin": 0.2,
    "crop_drop": 0.0,
    "exact_positions": False,
    "near_duplicates": False,
    "unlabelled": [],
    "teacher_arch": "",
    "progressive_epochs": 0,
}


def _check_plan(out_dir: Path, plan: CrossvalPlan) -> None:
    """A directory holds one cross-validation: continuing it with other settings would mix two recipes."""
    path = out_dir / PLAN_FILE
    wanted = asdict(plan)
    if path.exists():
        held = {**PLAN_DEFAULTS, **json.loads(path.read_text())}
        differing = sorted(key for key in wanted if held.get(key) != wanted[key])
        if differing:
            raise ValueError(
                f"{out_dir} holds a cross-validation with other settings "
                f"({', '.join(f'{key}: {held.get(key)!r} there, {wanted[key]!r} now' for key in differing)}); "
                f"continue it with the same settings or choose another --out"
            )
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(wanted, indent=1) + "\n")


def fold_model_path(out_dir: Path, k: int) -> Path:
    return out_dir / f"fold-{k + 1}.npz"


def _train_fold(plan: CrossvalPlan, options, out_dir: Path, cache: Path, k: int) -> float:
    """Train fold ``k``'s model (and its teacher, unless done); resumes from checkpoints. Returns seconds spent."""
    from lab.train import train

    model = fold_model_path(out_dir, k)
    started = time.monotonic()
    options = replace(options, fold=(k, plan.folds))
    with open(out_dir / f"fold-{k + 1}.log", "a") as log, contextlib.redirect_stderr(log):
        if plan.teacher_epochs:
            twin = out_dir / f"fold-{k + 1}-fp32.npz"  # train writes the twin's weights beside it, as .pt
            if not twin.with_suffix(".pt").exists():
                teacher = replace(options, fp32=True, epochs=plan.teacher_epochs, arch=plan.teacher_arch or plan.arch)
                train(plan.sources, twin, replace(teacher, unlabelled=()), True, cache)
            options = replace(options, teacher=twin.with_suffix(".pt"))
        if plan.progressive_epochs:
            stage = out_dir / f"fold-{k + 1}-float-weights.npz"  # its .pt: binary activations, float weights
            if not stage.with_suffix(".pt").exists():
                first = replace(options, float_weights=True, epochs=plan.progressive_epochs)
                train(plan.sources, stage, first, True, cache)
            options = replace(options, init=stage.with_suffix(".pt"))
        train(plan.sources, model, options, resume=True, cache=cache)
    return time.monotonic() - started


@dataclass
class SceneFaces:
    crops: np.ndarray
    groups: list[str]  # VOC group per face
    images: list[str]  # image name per face: what a fold holds out
    positions: list[str | None] | None = None  # with a positions table: as ``lab.scenes.positions_of``


def scene_faces(
    root: Path, min_face_px: int = 24, table: PositionTable | None = None, framing: Framing | None = None
) -> SceneFaces:
    """Every labelled face of ``min_face_px`` or more in every scene, cropped at its ground-truth box."""
    framing = framing or Framing()
    crops, groups, images, positions = [], [], [], []
    for scene in scene_split(root, "all"):
        image = scene.read()
        large = np.flatnonzero(scene.large(min_face_px))
        if len(large):
            crops.append(crop_faces(image, scene.boxes[large], framing))
            groups.extend(scene.groups[t] for t in large)
            images.extend([scene.name] * len(large))
            if table is not None:
                labelled = positions_of(scene, table)
                positions.extend(labelled[t] for t in large)
    crops = np.concatenate(crops) if crops else np.zeros((0, 32, 32, 3), np.uint8)
    return SceneFaces(crops, groups, images, positions if table is not None else None)


def _positions_part(faces: SceneFaces, chosen: list[int], names: list[str], classes: tuple[str, ...]) -> dict:
    """Position figures of the incorrectly worn faces among ``chosen`` (called ``names``)."""
    mine = [j for j, i in enumerate(chosen) if faces.positions[i] != ""]
    return position_recalls([faces.positions[chosen[j]] for j in mine], [names[j] for j in mine], classes)


def _share(hits: int, n: int) -> dict:
    return {"value": hits / n if n else None, "n": n, "interval_95": wilson_interval(hits, n)}


def _crop_figures(classes: list[str], predicted: np.ndarray, data: CropSet) -> dict:
    """MaskedFace-Net 4-class accuracy (argmax over all classes) and ``no_mask`` recall on real unmasked photos."""
    mfn = np.array([g.startswith("ffhq:") for g in data.groups], bool) & (data.labels < 4)
    bare = np.array([g.startswith("file:") for g in data.groups], bool) & (data.labels == classes.index("no_mask"))
    return {
        "maskedface_4class": (int((predicted[mfn] == data.labels[mfn]).sum()), int(mfn.sum())),
        "no_mask_recall": (int((predicted[bare] == data.labels[bare]).sum()), int(bare.sum())),
    }


class _TwinClassifier:
    """A fold's FP32 twin (the teacher ``_train_fold`` trains beside its model), called like a classifier."""

    def __init__(self, path: Path):
        from lab.train import load_teacher

        self.network = load_teacher(path, len(CLASSES))
        self.classes = tuple(CLASSES)

    def classify(self, crops: np.ndarray) -> np.ndarray:
        from lab.train import predict

        return predict(self.network, crops)


def _fold_model(plan: CrossvalPlan, out_dir: Path, k: int):
    """Fold ``k``'s binary model, checked to hold out that fold and to call the classes in order."""
    from accel.cpu import CpuClassifier

    path = fold_model_path(out_dir, k)
    classifier = CpuClassifier(str(path))
    held_out = classifier.model.meta.get("held_out")
    if held_out != f"fold {k + 1} of {plan.folds}":
        held_out = held_out or "the usual split"
        raise ValueError(f"{path}: trained with {held_out} held out, not fold {k + 1} of {plan.folds}")
    if list(classifier.classes[: len(CLASSES)]) != list(CLASSES):
        raise ValueError(f"{path}: classes {list(classifier.classes)}, expected {list(CLASSES)}")
    return classifier


def twin_path(out_dir: Path, k: int) -> Path:
    return out_dir / f"fold-{k + 1}-fp32.pt"


def score(plan: CrossvalPlan, out_dir: Path, data: CropSet, faces: SceneFaces) -> dict:
    """Each fold's model on its own fold only; pooled figures over all folds. With a teacher, its FP32 twin is
    scored the same way, beside it (``twin``): what binarisation costs on each fold."""
    result = {**asdict(plan), **_score_folds(plan, lambda k: _fold_model(plan, out_dir, k), data, faces)}
    if plan.teacher_epochs and all(twin_path(out_dir, k).is_file() for k in range(plan.folds)):
        result["twin"] = _score_folds(plan, lambda k: _TwinClassifier(twin_path(out_dir, k)), data, faces)
        result["twin"]["arch"] = plan.teacher_arch or plan.arch
    return result


def _score_folds(plan: CrossvalPlan, classifier_of, data: CropSet, faces: SceneFaces) -> dict:
    """Fold ``k``'s ``classifier_of(k)`` on fold ``k``'s crops and scene faces; per fold and pooled."""
    per_fold, truth, predicted_names, scored = [], [], [], []
    counts = {"maskedface_4class": [0, 0], "no_mask_recall": [0, 0]}
    for k in range(plan.folds):
        classifier = classifier_of(k)
        classes = list(classifier.classes)
        held = data.subset(held_out_mask(data.groups, fold=(k, plan.folds)) & (data.labels < INCORRECT))
        crop_counts = _crop_figures(classes, classifier.classify(held.crops) if len(held) else np.zeros(0, int), held)
        mine = [i for i, name in enumerate(faces.images) if split_of(f"image:{name}", fold=(k, plan.folds))]
        names = [classes[c] for c in classifier.classify(faces.crops[mine])] if mine else []
        fold_truth = [faces.groups[i] for i in mine]
        truth.extend(fold_truth)
        predicted_names.extend(names)
        scored.extend(mine)
        for key, (hits, n) in crop_counts.items():
            counts[key][0] += hits
            counts[key][1] += n
        model = getattr(classifier, "model", None)
        per_fold.append(
            {
                "fold": k + 1,
                "train_seconds": model.meta.get("train_seconds") if model is not None else None,
                **{key: _share(*value) for key, value in crop_counts.items()},
                "scenes_ground_truth_boxes": group_recalls(fold_truth, names, tuple(classes)),
                **(
                    {"positions_ground_truth_boxes": _positions_part(faces, mine, names, tuple(classes))}
                    if faces.positions is not None
                    else {}
                ),
            }
        )
    pooled = group_recalls(truth, predicted_names, tuple(CLASSES))
    means = [fold["scenes_ground_truth_boxes"]["mean"] for fold in per_fold]
    return {
        "per_fold": per_fold,
        "pooled": {
            **{key: _share(*value) for key, value in counts.items()},
            "scenes_ground_truth_boxes": pooled,
            **(
                {"positions_ground_truth_boxes": _positions_part(faces, scored, predicted_names, tuple(CLASSES))}
                if faces.positions is not None
                else {}
            ),
        },
        "scene_mean_over_folds": {
            "min": float(np.min(means)),
            "median": float(np.median(means)),
            "max": float(np.max(means)),
        },
    }


def cross_validate(
    plan: CrossvalPlan,
    scenes: Path,
    out_dir: Path,
    cache: Path | None = None,
    jobs: int = 1,
    device: str = "cpu",
    positions: Path | None = None,
) -> dict:
    """Train (or continue) the ``plan.folds`` models, ``jobs`` at a time, then score them; see the module.
    ``positions``: a positions CSV (``lab.scenes.read_positions``) for the position figures of each fold's faces."""
    if not 2 <= plan.folds <= 100:
        raise ValueError(f"--folds {plan.folds}: cross-validation needs 2 to 100 folds (a fold is whole hash percents)")
    if jobs < 1:
        raise ValueError(f"--jobs {jobs}: expected 1 or more")
    scene_split(scenes, "all")  # a wrong scenes folder fails now, not after hours of training
    table = read_positions(positions, scenes) if positions is not None else None  # and so does a bad positions row
    out_dir = Path(out_dir)
    _check_plan(out_dir, plan)
    cache = Path(cache) if cache is not None else out_dir / "crops.npz"
    # made once here, read by every fold
    data = load_sources(plan.sources, cache, True, plan.framing, plan.exact_positions, plan.near_duplicates)
    options = plan.train_options(device)
    pending = [k for k in range(plan.folds) if not fold_model_path(out_dir, k).exists()]
    for k in pending:
        print(f"fold {k + 1}/{plan.folds}: training (log: {out_dir / f'fold-{k + 1}.log'})", file=sys.stderr)
    if jobs == 1 or len(pending) <= 1:
        for k in pending:
            seconds = _train_fold(plan, options, out_dir, cache, k)
            print(f"fold {k + 1}/{plan.folds}: trained in {seconds:.0f} s", file=sys.stderr)
    else:
        with ProcessPoolExecutor(min(jobs, len(pending)), mp_context=get_context("spawn")) as pool:
            futures = {k: pool.submit(_train_fold, plan, options, out_dir, cache, k) for k in pending}
            for k, future in futures.items():
                print(f"fold {k + 1}/{plan.folds}: trained in {future.result():.0f} s", file=sys.stderr)
    result = score(plan, out_dir, data, scene_faces(scenes, table=table, framing=plan.framing))
    result["positions_file"] = str(positions) if positions is not None else None
    return result
