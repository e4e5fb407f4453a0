"""The ``binarycop`` command line. Every ``--json`` output is one JSON document on stdout."""

from __future__ import annotations

import argparse
import json
import sys

from binarycop import __version__
from binarycop.cli import bench, dashboards, fpga, logs, models, run
from binarycop.cli.output import CommandError
from binarycop.config import ConfigError

GROUPS = (run, dashboards, models, fpga, bench)  # each registers its sub-commands beside their handlers


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logs.configure(args)
    try:
        return args.handler(args)
    except ConfigError as error:
        if getattr(args, "json", False):  # a --json command's document, even for a config it cannot use
            print(json.dumps({"ok": False, "source": error.source, "problems": error.problems}))
        print(f"invalid config {error.source}:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except CommandError as error:
        print(error.message, file=sys.stderr)
        return error.status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="binarycop", description=__doc__)
    parser.add_argument("--version", action="version", version=f"binarycop {__version__}")
    logs.add_options(parser, top=True)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(commands)
    logs.add_to_every_command(parser)
    return parser
