"""One place for what every command prints: a ``--json`` document on stdout, or text; errors as one clear line."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import contextmanager


class CommandError(Exception):
    """A command cannot go on: ``message`` is printed as one line on stderr and the exit status is ``status``
    (2: its command line or inputs are wrong; 1: something it needs is unreachable)."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.message = message
        self.status = status


@contextmanager
def failing_as(prefix: str, *errors: type[BaseException]):
    """Turn ``errors`` raised inside into a :class:`CommandError` reading ``prefix: error``."""
    try:
        yield
    except errors as error:
        raise CommandError(f"{prefix}: {error}") from None


def emit(args, result, text: Callable[[object], None]) -> int:
    """With ``--json``, ``result`` as one JSON document on stdout; else ``text(result)`` prints it. Exit status 0."""
    if getattr(args, "json", False):
        print(json.dumps(result))
    else:
        text(result)
    return 0
