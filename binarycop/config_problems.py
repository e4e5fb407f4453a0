"""The config's words for what is wrong: ``${VAR}`` substitution (with the shell's and compose's ``:-`` and ``:?``
forms) and pydantic's validation errors said plainly, with each camera named by its name rather than its index.

Example:
    >>> substitute({"url": "redis://${HOST:-localhost}:6379"}, {}, [])
    {'url': 'redis://localhost:6379'}
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

# ${NAME}, ${NAME:-default} / ${NAME-default} (default when unset or empty / unset), ${NAME:?message} / ${NAME?message}
_REFERENCE = re.compile(r"\$\{([^{}]*)\}")
_FORM = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])(.*))?", re.DOTALL)
_SHOWABLE = re.compile(r"[A-Za-z0-9_:?-]{1,64}")
_FORMS_HELP = "write ${NAME}, ${NAME:-default} or ${NAME:?message} (NAME: letters, digits and _), $${ for a literal ${"
_NAME_RULE = "must be lowercase letters, digits, '-' and '_', starting with a letter or digit, at most 63 characters"
_BY_TYPE = {
    "extra_forbidden": "unknown key",
    "missing": "required",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def substitute(value: Any, environ: dict[str, str], problems: list[str], path: str = "", raw: Any = None) -> Any:
    """``value`` (parsed YAML) with every ``${...}`` in its strings replaced from ``environ``; each problem is
    appended to ``problems`` as 'field.path: what is wrong' (``raw``: the whole document, to name cameras)."""
    raw = value if raw is None else raw
    if isinstance(value, dict):
        return {key: substitute(item, environ, problems, _join(path, key, raw), raw) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, environ, problems, _join(path, index, raw), raw) for index, item in enumerate(value)]
    if isinstance(value, str):
        return _substitute_text(value, environ, problems, path)
    return value


def _substitute_text(text: str, environ: dict[str, str], problems: list[str], path: str) -> str:
    pieces = []
    for part in text.split("$${"):  # $${ is a literal ${
        pieces.append(_REFERENCE.sub(lambda match: _resolve(match.group(1), environ, problems, path), part))
        if "${" in _REFERENCE.sub("", part):
            problems.append(f"{path}: an unterminated '${{' ({_FORMS_HELP})")
    return "${".join(pieces)


def _resolve(inner: str, environ: dict[str, str], problems: list[str], path: str) -> str:
    form = _FORM.fullmatch(inner)
    if form is None:
        shown = f"'${{{inner}}}'" if _SHOWABLE.fullmatch(inner) else "a '${...}'"
        problems.append(f"{path}: {shown} is not a variable reference: {_FORMS_HELP}")
        return ""
    name, operator, word = form.group(1), form.group(2), form.group(3) or ""
    value = environ.get(name)
    missing = value is None or (value == "" and operator in (":-", ":?"))
    if not missing:
        return value
    if operator in (":-", "-"):
        return word
    if operator in (":?", "?"):
        problems.append(f"{path}: environment variable {name} is not set" + (f": {word}" if word else ""))
        return ""
    if value is None:
        problems.append(f"{path}: environment variable {name} is not set (or give a default: ${{{name}:-default}})")
        return ""
    return value


def _join(path: str, key: object, raw: Any) -> str:
    """``path.key``, where an index into the top-level camera list becomes ``cameras[name]``."""
    if path == "cameras" and isinstance(key, int):
        return f"cameras[{camera_label(raw, key)}]"
    return f"{path}.{key}" if path else str(key)


def camera_label(raw: Any, index: int) -> str:
    """The camera's name if the document gives it one, else ``#N`` (its place in the list, the first being #1)."""
    cameras = raw.get("cameras") if isinstance(raw, dict) else None
    camera = cameras[index] if isinstance(cameras, list) and 0 <= index < len(cameras) else None
    name = camera.get("name") if isinstance(camera, dict) else None
    return name if isinstance(name, str) and _SHOWABLE.fullmatch(name) else f"#{index + 1}"


def validation_problems(error: ValidationError, top: str = "(top level)", raw: Any = None) -> list[str]:
    """Each of pydantic's errors as 'field.path: what is wrong', in our words (no pydantic phrasing, no regexes);
    ``top`` names a problem with no field, ``raw`` (the validated document) names cameras. Problems of one field
    from the members of a union (a tile is 'auto', 'off' or a number) are joined with 'or'."""
    by_field: dict[str, list[str]] = {}
    for item in error.errors():
        path = ""
        for part in item["loc"]:
            if isinstance(part, str) and (part in ("int", "float", "str", "bool") or "[" in part):
                continue  # the union member pydantic tried, not a field
            path = _join(path, part, raw)
        messages = by_field.setdefault(path or top, [])
        message = _message(item)
        if message not in messages:
            messages.append(message)
    return [f"{path}: {_either(messages)}" for path, messages in by_field.items()]


def _either(messages: list[str]) -> str:
    """'must be 'auto' or 'off', or a whole number': one field's alternatives in one sentence."""
    rest = [message.removeprefix("must be ") if message.startswith("must be ") else message for message in messages[1:]]
    return ", or ".join([messages[0], *rest])


def _message(item: dict) -> str:
    kind, message, context = item["type"], item["msg"], item.get("ctx") or {}
    if kind in _BY_TYPE:
        return _BY_TYPE[kind]
    if kind == "string_pattern_mismatch":
        return _NAME_RULE if item["loc"] and item["loc"][-1] in ("name", "site") else "holds characters not allowed"
    if kind == "greater_than_equal":
        return f"must be at least {context['ge']}"
    if kind == "less_than_equal":
        return f"must be at most {context['le']}"
    if kind in ("value_error", "assertion_error"):
        return str(context.get("error", message.split(", ", 1)[-1]))
    message = re.sub(r" after validation, not \d+$", "", message)
    return re.sub(r"^(Input|String|List|Dictionary|Value|Tuple) should ", "must ", message)
