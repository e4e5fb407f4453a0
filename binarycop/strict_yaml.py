"""YAML for config files, stricter than PyYAML's safe loader: no aliases, bounded nesting, no key twice.

Errors name the line and column but never quote the line (a config line may hold a password)."""

from __future__ import annotations

from typing import Any

import yaml

MAX_YAML_DEPTH = 32  # a real config nests 6 deep (cameras.0.zones.name.0.0)


class YamlRefused(ValueError):
    """Text that is not YAML, or YAML refused here; the message is one line for the operator."""


class _Refused(yaml.MarkedYAMLError):
    """YAML that parses but is refused: aliases, nesting too deep, a key given twice."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases (a 500-byte file of them expands to billions of values), nesting
    capped at :data:`MAX_YAML_DEPTH`, and a key given twice in a mapping refused (the last would silently win)."""

    _depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise _Refused(
                problem="YAML aliases (*name) are not accepted: write the value out",
                problem_mark=self.peek_event().start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Refused(
                    problem=f"nested deeper than {MAX_YAML_DEPTH} levels", problem_mark=self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        return _unique_mapping(self, node, deep)


def _unique_mapping(loader, node, deep: bool) -> dict:
    """A mapping whose keys each appear once (the last would silently replace the first)."""
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                continue  # an unhashable key: the constructor below says so
            if key in seen:
                raise _Refused(
                    problem=f"key {key!r} appears twice in one mapping (the last would replace the first)",
                    problem_mark=key_node.start_mark,
                )
            seen.add(key)
    return yaml.constructor.SafeConstructor.construct_mapping(loader, node, deep)


def _problem(error: Exception) -> str:
    """A YAML error as 'not valid YAML: line L, column C: what', without the offending line itself (it may hold
    a password)."""
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    if isinstance(error, _Refused):
        return f"{where}{error.problem}"
    if isinstance(error, yaml.MarkedYAMLError):
        what = " ".join(part for part in (error.context, error.problem) if part)
    elif isinstance(error, yaml.reader.ReaderError):
        what = f"character #x{error.character:04x} at position {error.position} is not allowed in YAML"
    else:
        what = str(error).split("\n", 1)[0]
    return f"not valid YAML: {where}{what}"


if yaml.__with_libyaml__:

    class _FastStrictLoader(yaml.CSafeLoader):
        """The same rules with libyaml's parser (about 10x faster on a config of 40,000 cameras): aliases and
        depth are checked on its events first (:func:`_check_events`), a key given twice when constructing."""

        def construct_mapping(self, node, deep=False):
            return _unique_mapping(self, node, deep)


def _check_events(text: str) -> None:
    """Refuse aliases and nesting deeper than :data:`MAX_YAML_DEPTH`, from libyaml's events, before composing."""
    depth = 0  # collections open; a node inside them is at depth + 1, as the Python composer counts
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(
                problem="YAML aliases (*name) are not accepted: write the value out", problem_mark=event.start_mark
            )
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent, yaml.ScalarEvent)):
            if depth + 1 > MAX_YAML_DEPTH:
                raise _Refused(problem=f"nested deeper than {MAX_YAML_DEPTH} levels", problem_mark=event.start_mark)
            depth += not isinstance(event, yaml.ScalarEvent)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def load_yaml(text: str) -> Any:
    """The value of one YAML document, or :class:`YamlRefused` saying why not."""
    try:
        if yaml.__with_libyaml__:
            try:
                _check_events(text)
                return yaml.load(text, Loader=_FastStrictLoader)  # noqa: S506 (a safe loader, stricter)
            except _Refused:
                raise
            except yaml.YAMLError:
                pass  # not YAML: the Python parser below says where, as it always has
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a safe loader, stricter)
    except (yaml.YAMLError, ValueError) as error:  # ValueError: an integer too long for Python to read
        raise YamlRefused(_problem(error)) from None
