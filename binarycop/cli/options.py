"""Options several command groups share: the Redis to read, the face detector to use."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pydantic import ValidationError

from binarycop.config import ConfigError, DetectorConfig, RedisConfig, detector_name, detector_spec, validation_problems


def redis_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="default: $REDIS_URL")
    parser.add_argument("--tls-ca", type=Path, help="CA file to verify a rediss:// server with")
    parser.add_argument("--tls-cert", type=Path, help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key", type=Path, help="client certificate's key")
    parser.set_defaults(redis_password=os.environ.get("REDIS_PASSWORD") or None)


def redis_config(args) -> RedisConfig:
    """The Redis settings of ``exporter`` and ``status``: URL and TLS files from flags, password from
    $REDIS_PASSWORD (never a flag: command lines are visible to every user of the machine)."""
    tls = None
    if args.tls_ca or args.tls_cert or args.tls_key:
        tls = {"ca_file": args.tls_ca, "cert_file": args.tls_cert, "key_file": args.tls_key}
    try:
        return RedisConfig.model_validate({"url": args.redis_url, "password": args.redis_password, "tls": tls})
    except ValidationError as error:
        raise ConfigError("command line", validation_problems(error, top="redis")) from None


def detector_arguments(parser) -> None:
    parser.add_argument(
        "--detector",
        metavar="KIND[@SCALES]",
        help="face detector, e.g. blazeface or yunet@1,2 (default: the server's default detector settings, "
        f"{detector_name(DetectorConfig())})",
    )


def detector_config(args) -> DetectorConfig:
    """``--detector KIND[@SCALES]``, or the server's default detector settings."""
    return detector_spec(args.detector) if args.detector else DetectorConfig()


def detector_configs(args) -> list[DetectorConfig]:
    """The benches' repeatable ``--detector KIND[@SCALES]`` (the server's default when none is given)."""
    return [detector_spec(text) for text in args.detector] if args.detector else [DetectorConfig()]
