"""The ``binarycop`` command line. Every ``--json`` output is one JSON document on stdout."""

from __future__ import annotations

import argparse
import logging
import sys

from binarycop import __version__
from binarycop.cli import bench, dashboards, fpga, models, run
from binarycop.cli.output import CommandError
from binarycop.config import ConfigError

GROUPS = (run, dashboards, models, fpga, bench)  # each registers its sub-commands beside their handlers


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if not args.quiet else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.handler(args)
    except ConfigError as error:
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
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(commands)
    return parser
