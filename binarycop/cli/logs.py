"""Logging for every command: the standard library's ``logging`` on stderr, as text or one JSON object a line, at
the level ``--log-level`` (or ``-q``) asks for; OpenCV's own ``[ WARN:0@...]`` lines kept out below ERROR.

The options are accepted before and after the sub-command (``binarycop -q serve`` and ``binarycop serve -q``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
OWN_PACKAGES = ("binarycop", "ingest", "detector", "accel", "stats", "lab", "names")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, and ``exception``
    when there is one; what log shippers (Loki, Elasticsearch, Cloud Logging) parse without a pattern."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def add_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """The logging options; below the top level they default to nothing, so the top level's value stands."""
    default = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    group = parser.add_argument_group("logging")
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default(False),
        help="warnings and errors only (--log-level warning)",
    )
    group.add_argument(
        "--log-level", choices=LEVELS, default=default(None), help="least severe level logged (default: info)"
    )
    group.add_argument(
        "--log-format",
        choices=FORMATS,
        default=default("text"),
        help="text: 'time LEVEL logger: message' lines; json: one JSON object a line (default: text)",
    )


def add_to_every_command(parser: argparse.ArgumentParser) -> None:
    """:func:`add_options` on every sub-command (and theirs, such as ``dashboards push``) below ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in set(action.choices.values()):
                add_options(command, top=False)
                add_to_every_command(command)


def configure(args: argparse.Namespace) -> None:
    """Set up the root logger on stderr from the parsed options, and OpenCV's log level to match."""
    level = (args.log_level or ("warning" if args.quiet else "info")).upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if args.log_format == "json" else logging.Formatter(TEXT_FORMAT))
    # debug is this project's: libraries (numba's compiler above all) stay at info
    logging.basicConfig(level="INFO" if level == "DEBUG" else level, handlers=[handler], force=True)
    for package in OWN_PACKAGES:
        logging.getLogger(package).setLevel(logging.DEBUG if level == "DEBUG" else logging.NOTSET)
    quiet_opencv(verbose=level == "DEBUG")


def quiet_opencv(verbose: bool = False) -> None:
    """OpenCV logs through its own C++ logger to stderr (``[ WARN:0@0.01] global loadsave.cpp ...``), around
    Python's logging; the commands report those cases themselves, so only its errors (and with ``--log-level
    debug`` its warnings) get through. Set before cv2 is first imported, and on it if it already is."""
    if os.environ.get("OPENCV_LOG_LEVEL") not in (None, *_OPENCV_LEVELS.values()):
        return  # the user's own setting stands
    os.environ["OPENCV_LOG_LEVEL"] = _OPENCV_LEVELS[verbose]
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        cv2.setLogLevel(3 if verbose else 2)  # cv2.utils.logging: 2 ERROR, 3 WARNING


_OPENCV_LEVELS = {False: "ERROR", True: "WARNING"}
