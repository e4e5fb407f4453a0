"""The FP32 twin's artifact: an ONNX graph with its name, architecture, class names and framing in one
``binarycop`` metadata entry, and a checksum over the whole file.

The graph takes the crops as they come (float32 (N, 32, 32, 3) holding the RGB pixel values) and returns the
class logits (N, classes). The checksum is SHA-256 over the file's bytes with the digest's own 64 characters
written as zeros, so the header (class names included) and every weight are inside it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from accel.arch import get_arch
from accel.model_file import MODELS_DIR, ModelFileError, check_classes
from names import Framing

FORMAT = "binarycop-onnx"
FORMAT_VERSION = 1
METADATA_KEY = "binarycop"
PLACEHOLDER = "0" * 64
MAX_BYTES = 64 << 20  # the largest twin (CNV) is a few MB: refuse anything far larger before reading it


def resolve_onnx_path(name_or_path: str | Path) -> Path:
    """A shipped twin name (``n-cnv-fp32``) or a path to a ``.onnx`` file."""
    path = Path(name_or_path)
    return path if path.suffix == ".onnx" or path.exists() else MODELS_DIR / f"{name_or_path}.onnx"


def header(name: str, arch: str, classes: tuple[str, ...], framing: Framing, held_out: str | None = None) -> dict:
    """The metadata entry an exported twin carries, its digest still to be filled in (:func:`seal`); ``held_out``:
    what its training held out, as in a model file (``15 %``, ``fold 2 of 6``), so evaluation holds out the same."""
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "name": name,
        "arch": arch,
        "classes": list(classes),
        "framing": framing.as_meta(),
        **({"held_out": held_out} if held_out is not None else {}),
        "sha256": PLACEHOLDER,
    }


def seal(data: bytes) -> bytes:
    """The serialised model with its header's placeholder digest replaced by the file's checksum."""
    if data.count(PLACEHOLDER.encode()) != 1:
        raise ValueError("the model must hold its header's placeholder digest exactly once")
    return data.replace(PLACEHOLDER.encode(), hashlib.sha256(data).hexdigest().encode())


def read_onnx_model(name_or_path: str | Path) -> tuple[bytes, dict]:
    """The file's bytes and its checked header; :class:`ModelFileError` saying what is wrong otherwise."""
    path = resolve_onnx_path(name_or_path)
    if not path.is_file():
        raise ModelFileError(f"onnx model file not found: {path}")
    if path.stat().st_size > MAX_BYTES:
        raise ModelFileError(f"{path}: {path.stat().st_size} bytes; a twin is at most {MAX_BYTES} bytes")
    data = path.read_bytes()
    meta = _header_of(path, data)
    digest = str(meta.get("sha256", ""))
    if len(digest) != 64 or data.count(digest.encode()) != 1:
        raise ModelFileError(f"{path}: no checksum in its header; not a sealed binarycop twin")
    if hashlib.sha256(data.replace(digest.encode(), PLACEHOLDER.encode())).hexdigest() != digest:
        raise ModelFileError(f"{path}: checksum mismatch; the file is damaged or was edited")
    check_classes(meta.get("classes"), path)
    try:
        get_arch(meta.get("arch", ""))
        Framing.from_meta(meta.get("framing"))
    except ValueError as error:
        raise ModelFileError(f"{path}: {error}") from None
    return data, meta


def _header_of(path: Path, data: bytes) -> dict:
    import onnxruntime

    try:
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    except Exception as error:  # onnxruntime raises its own exception types for a file it cannot parse
        raise ModelFileError(f"{path}: not a readable ONNX model ({str(error).splitlines()[0]})") from None
    if text is None:
        raise ModelFileError(f"{path}: no '{METADATA_KEY}' metadata; not a binarycop twin")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{path}: unreadable '{METADATA_KEY}' metadata ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: metadata is not {FORMAT!r} version {FORMAT_VERSION}")
    return meta
