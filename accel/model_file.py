"""The model artifact: packed weights, integer thresholds, arch, class names, checksum.

One ``.npz`` file (numpy's zip of arrays) per network. ``meta`` holds a JSON
header; every other array is a layer. The checksum is SHA-256 over the arrays'
names, dtypes, shapes and bytes and over the header fields that decide what a
score means (architecture, class names in order, the crop framing), so a
truncated or edited file, or one whose class names were swapped, is refused.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from accel.arch import ARCHS, CLASSES, INPUT_CHANNELS, KERNEL, Arch, get_arch
from names import Framing

FORMAT = "binarycop-bnn"
FORMAT_VERSION = 2  # 1: the checksum covered the arrays only
COVERED_META = ("arch", "classes", "framing")  # header fields inside the checksum
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
MAX_UNPACKED_BYTES = 64 * 2**20  # the shipped models unpack to 25-210 KB; zipfile reads no member past its size


class ModelFileError(ValueError):
    """A model file that is missing, damaged or does not match its declared network."""


@dataclass
class BinaryModel:
    """A folded binary network, ready for an engine.

    ``conv_weights[0]`` is int32 (Cout, 27) in {-1, +1}; later conv weights are
    packed uint64 (Cout, 3, 3, words); ``fc_weights`` packed uint64 (Cout, words)
    in the engine's (y, x, channel) flattening; ``thresholds`` int32 per layer
    with a threshold (every layer but the last).
    """

    arch: Arch
    classes: tuple[str, ...]
    conv_weights: list[np.ndarray]
    conv_thresholds: list[np.ndarray]
    fc_weights: list[np.ndarray]
    fc_thresholds: list[np.ndarray]
    meta: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.arch.name))

    @property
    def framing(self) -> Framing:
        """How the crops it classifies must be cut: as it was trained."""
        return Framing.from_meta(self.meta.get("framing"))

    def arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        for index, (weights, thresholds) in enumerate(zip(self.conv_weights, self.conv_thresholds)):
            arrays[f"conv{index}_weights"] = weights
            arrays[f"conv{index}_thresholds"] = thresholds
        for index, weights in enumerate(self.fc_weights):
            arrays[f"fc{index}_weights"] = weights
        for index, thresholds in enumerate(self.fc_thresholds):
            arrays[f"fc{index}_thresholds"] = thresholds
        return arrays


def checksum(arrays: dict[str, np.ndarray], meta: dict | None = None) -> str:
    """SHA-256 over the arrays and the ``COVERED_META`` fields of ``meta``."""
    digest = hashlib.sha256()
    covered = {key: (meta or {}).get(key) for key in COVERED_META}
    digest.update(json.dumps(covered, sort_keys=True).encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save_model(model: BinaryModel, path: str | Path) -> Path:
    arrays = model.arrays()
    meta = dict(model.meta)
    meta.update(
        format=FORMAT,
        version=FORMAT_VERSION,
        arch=model.arch.name,
        classes=list(model.classes),
    )
    meta["sha256"] = checksum(arrays, meta)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        np.savez_compressed(handle, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    return path


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A shipped model name (``n-cnv``) or a path to a ``.npz`` file."""
    path = Path(name_or_path)
    if path.suffix == ".npz" or path.exists():
        return path
    return MODELS_DIR / f"{name_or_path}.npz"


def shipped_models() -> list[str]:
    """Names of the networks with a model file under ``models/``."""
    return [name for name in ARCHS if (MODELS_DIR / f"{name}.npz").is_file()]


def _check_unpacked_size(path: Path) -> None:
    """Refuse an archive whose members unpack to more than :data:`MAX_UNPACKED_BYTES`, from its directory, before
    unpacking anything (a 2 MB zip bomb unpacked to 4 GB first). Not a zip: left to ``np.load`` to say."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise ModelFileError(f"{path}: not a readable model file ({error})") from error
    if unpacked > MAX_UNPACKED_BYTES:
        raise ModelFileError(
            f"{path}: unpacks to {unpacked} bytes, over the {MAX_UNPACKED_BYTES} a model file may hold"
        )


def load_model(name_or_path: str | Path) -> BinaryModel:
    path = resolve_model_path(name_or_path)
    if not path.is_file() and str(name_or_path) in ARCHS:
        raise ModelFileError(
            f"model {name_or_path!r} is not shipped ({path} is absent); shipped: {shipped_models() or 'none'}; "
            f"train one with `binarycop train --arch {name_or_path} --out {path}`"
        )
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    _check_unpacked_size(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise ModelFileError(f"{path}: not a readable model file ({error})") from error
    if "meta" not in arrays:
        raise ModelFileError(f"{path}: no 'meta' header; not a binarycop model file")
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path}: unreadable 'meta' header ({error})") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        found = (meta.get("format"), meta.get("version")) if isinstance(meta, dict) else (None, None)
        raise ModelFileError(
            f"{path}: format {found[0]!r} version {found[1]!r}; expected {FORMAT!r} version {FORMAT_VERSION}"
        )
    if checksum(arrays, meta) != meta.get("sha256"):
        raise ModelFileError(f"{path}: checksum mismatch; the file is damaged or was edited")
    check_classes(meta.get("classes"), path)
    try:
        Framing.from_meta(meta.get("framing"))
    except ValueError as error:
        raise ModelFileError(f"{path}: {error}") from None
    try:
        arch = get_arch(meta["arch"])
    except (KeyError, ValueError) as error:
        raise ModelFileError(f"{path}: {error}") from error
    model = _from_arrays(arch, tuple(meta.get("classes", ())), arrays, meta)
    _check_shapes(model, path)
    return model


def check_classes(classes, path: Path) -> None:
    """Class names are data the counts are filed under: each must be one of ``CLASSES``, once."""
    if not isinstance(classes, list) or not classes or not all(isinstance(name, str) for name in classes):
        raise ModelFileError(f"{path}: classes {classes!r}: expected a list of class names")
    unknown = [name for name in classes if name not in CLASSES]
    if unknown:
        raise ModelFileError(f"{path}: unknown class {unknown[0]!r}; expected names among {', '.join(CLASSES)}")
    if len(set(classes)) != len(classes):
        raise ModelFileError(f"{path}: classes {classes}: a class named twice")


def _from_arrays(arch: Arch, classes: tuple[str, ...], arrays: dict, meta: dict) -> BinaryModel:
    n_conv, n_fc = len(arch.conv_channels), len(arch.fc_features) + 1
    try:
        return BinaryModel(
            arch=arch,
            classes=classes,
            conv_weights=[arrays[f"conv{i}_weights"] for i in range(n_conv)],
            conv_thresholds=[arrays[f"conv{i}_thresholds"] for i in range(n_conv)],
            fc_weights=[arrays[f"fc{i}_weights"] for i in range(n_fc)],
            fc_thresholds=[arrays[f"fc{i}_thresholds"] for i in range(n_fc - 1)],
            meta=meta,
        )
    except KeyError as error:
        raise ModelFileError(f"layer {error} missing for architecture {arch.name!r}") from None


def words(bits: int) -> int:
    return (bits + 63) // 64


def expected_shapes(arch: Arch, n_classes: int) -> dict[str, tuple[tuple[int, ...], str]]:
    shapes: dict[str, tuple[tuple[int, ...], str]] = {}
    for index, (cin, cout, _, _) in enumerate(arch.conv_shapes()):
        if index == 0:
            shapes["conv0_weights"] = ((cout, KERNEL * KERNEL * INPUT_CHANNELS), "int32")
        else:
            shapes[f"conv{index}_weights"] = ((cout, KERNEL, KERNEL, words(cin)), "uint64")
        shapes[f"conv{index}_thresholds"] = ((cout,), "int32")
    features = arch.flat_features()
    last_channels = arch.conv_channels[-1]
    in_words = (features // last_channels) * words(last_channels)
    for index, out_features in enumerate((*arch.fc_features, n_classes)):
        shapes[f"fc{index}_weights"] = ((out_features, in_words), "uint64")
        if index < len(arch.fc_features):
            shapes[f"fc{index}_thresholds"] = ((out_features,), "int32")
        in_words = words(out_features)
    return shapes


def _check_shapes(model: BinaryModel, path: Path) -> None:
    if not model.classes:
        raise ModelFileError(f"{path}: no class names")
    arrays = model.arrays()
    for name, (shape, dtype) in expected_shapes(model.arch, len(model.classes)).items():
        array = arrays[name]
        if array.shape != shape or array.dtype != np.dtype(dtype):
            raise ModelFileError(
                f"{path}: layer {name} is {array.dtype}{list(array.shape)}, but architecture "
                f"{model.arch.name!r} with {len(model.classes)} classes needs {dtype}{list(shape)}"
            )
