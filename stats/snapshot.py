"""What in a Redis snapshot can be served: anything read from Redis is data, checked before use.

A field must have the label parts its hash holds, each a config name (:data:`names.NAME_PATTERN`)
or one of a known set, and a value of the right kind; what is not is skipped (and counted by the caller),
so one bad value never hides the rest.

Example:
    >>> clean, bad = clean_counts({FRAMES_KEY: {"gate|processed": "7", "<img>|processed": "1", "gate|x": "1"}})
    >>> clean[FRAMES_KEY], bad
    ({'gate|processed': '7'}, [('binarycop:frames', '<img>|processed'), ('binarycop:frames', 'gate|x')])
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

from names import CLASSES, NAME_PATTERN
from stats.schema import (
    BUILD_KEY,
    CAMERA_ERROR_KEY,
    CAMERA_LATENCY_KEY,
    CAMERA_SEEN_KEY,
    CAMERA_UP_KEY,
    CROPS_KEY,
    FACES_KEY,
    FRAME_OUTCOMES,
    FRAMES_KEY,
    INGESTERS_KEY,
    LAST_FRAME_KEY,
    PEOPLE_KEY,
    RECONNECTS_KEY,
    REMOVED_KEY,
    SITE_KEY,
    STAGE_BUCKETS,
    STAGES,
    STAGES_KEY,
    VISIBLE_KEY,
)

_NAME = re.compile(NAME_PATTERN.removeprefix("^").removesuffix("$"))
_BUILD_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")  # a version, a backend, a model name


def _name(part: str) -> bool:
    return _NAME.fullmatch(part) is not None


def _one_of(*allowed: str) -> Callable[[str], bool]:
    return frozenset(allowed).__contains__


def _build_label(part: str) -> bool:
    return _BUILD_LABEL.fullmatch(part) is not None


def _count(value: str) -> bool:
    return value.isascii() and value.isdigit() and len(value) <= 19  # HINCRBY's non-negative int64


def _time(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


_REASON = re.compile(r"[a-z][a-z_]{0,31}")
_MESSAGE = re.compile(r"[ -~]{1,200}")  # printable ASCII


def camera_error(value: str) -> dict | None:
    """A camera error as stored (:data:`stats.schema.CAMERA_ERROR_KEY`), checked; None for "" or a bad value."""
    try:
        error = json.loads(value) if value and len(value) <= 400 else None
    except ValueError:
        return None
    if not isinstance(error, dict) or set(error) != {"reason", "message", "since"}:
        return None
    reason, message, since = error["reason"], error["message"], error["since"]
    if not (isinstance(reason, str) and _REASON.fullmatch(reason) and isinstance(message, str)):
        return None
    if not (_MESSAGE.fullmatch(message) and isinstance(since, (int, float)) and math.isfinite(since)):
        return None
    return error


_STAGE_FIELDS = _one_of("count", "sum_us", *(str(index) for index in range(len(STAGE_BUCKETS) + 1)))
_CLASS_LABELS = (_name, _name, _one_of(*CLASSES))
# key -> (a check per '|'-separated label part, the value's check)
SCHEMA: dict[str, tuple[tuple[Callable[[str], bool], ...], Callable[[str], bool]]] = {
    FACES_KEY: (_CLASS_LABELS, _count),
    PEOPLE_KEY: (_CLASS_LABELS, _count),
    VISIBLE_KEY: (_CLASS_LABELS, _count),
    FRAMES_KEY: ((_name, _one_of(*FRAME_OUTCOMES)), _count),
    CAMERA_UP_KEY: ((_name,), _one_of("0", "1")),
    CAMERA_SEEN_KEY: ((_name,), _time),
    RECONNECTS_KEY: ((_name,), _count),
    STAGES_KEY: ((_one_of(*STAGES), _STAGE_FIELDS), _count),
    CAMERA_LATENCY_KEY: ((_name, _STAGE_FIELDS), _count),
    CROPS_KEY: ((_name,), _count),
    BUILD_KEY: ((_build_label, _build_label, _build_label), _time),
    SITE_KEY: ((_name,), _name),
    CAMERA_ERROR_KEY: ((_name,), lambda value: value == "" or camera_error(value) is not None),
    LAST_FRAME_KEY: ((_name,), _time),
    REMOVED_KEY: ((_name,), _time),
    INGESTERS_KEY: ((lambda part: 0 < len(part) <= 200,), _time),
}


def clean_counts(counts: dict[str, dict[str, str]]) -> tuple[dict[str, dict[str, str]], list[tuple[str, str]]]:
    """The snapshot (:func:`stats.redis_store.read_counts`) without what cannot be served, and the
    (key, field) of each value left out."""
    clean: dict[str, dict[str, str]] = {}
    bad: list[tuple[str, str]] = []
    for key, stored in counts.items():
        parts_ok, value_ok = SCHEMA.get(key, ((), lambda value: False))
        kept = clean.setdefault(key, {})
        for name, value in stored.items():
            parts = name.split("|")
            if len(parts) == len(parts_ok) and all(ok(part) for ok, part in zip(parts_ok, parts)) and value_ok(value):
                kept[name] = value
            else:
                bad.append((key, name))
    return clean, bad
