"""Running it: ``demo``, ``serve``, ``exporter``, ``status``, ``validate-config``, ``config-schema``."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import re
import signal
import sys
from pathlib import Path

from redis.exceptions import RedisError

from binarycop.cli.options import redis_arguments, redis_config
from binarycop.cli.output import CommandError, emit
from binarycop.config import (
    Config,
    ConfigError,
    RedisConfig,
    config_schema,
    load_config,
    read_config_text,
    redact_url,
    redis_client,
)
from names import NAME_PATTERN

log = logging.getLogger("binarycop")


def register(commands) -> None:
    for add in (_add_serve, _add_demo, _add_exporter, _add_status, _add_validate, _add_schema, _add_helper):
        add(commands)


def _add_helper(commands) -> None:
    """``ingest-helper``: started by ``serve`` and ``demo`` (:mod:`binarycop.ingesters`), never by hand: no help."""
    from binarycop.ingesters import HELPER_COMMAND

    commands.add_parser(HELPER_COMMAND).set_defaults(handler=_helper)


def _helper(args) -> int:
    from binarycop.ingesters import run_helper

    return asyncio.run(run_helper())


def _add_serve(commands) -> None:
    serve = commands.add_parser("serve", help="run the cameras in a config file")
    serve.add_argument(
        "--config", required=True, type=Path, metavar="FILE", help="the YAML config (docs/configuration.md)"
    )
    serve.set_defaults(handler=_serve)


def _serve(args) -> int:
    config = load_config(args.config)
    _check_model(config, str(args.config))
    return asyncio.run(_run(config, config_path=args.config))


def _add_demo(commands) -> None:
    demo = commands.add_parser("demo", help="serve the bundled sample clip with an embedded Redis")
    demo.add_argument("--port", type=int, default=8080, help="TCP port of the page and /metrics (default: 8080)")
    demo.add_argument("--bind", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    demo.add_argument(
        "--screenshot",
        type=Path,
        metavar="DIR",
        help="run a while, save pictures of the page and the "
        "setup view taken by headless chromium (the page extra) into DIR, and stop",
    )
    demo.add_argument("--screenshot-after", type=float, default=150, metavar="S", help="seconds to run first")
    demo.set_defaults(handler=_demo)


def _demo(args) -> int:
    from binarycop.democlip import demo_config

    if args.screenshot:
        if importlib.util.find_spec("selenium") is None:
            raise CommandError(
                "demo --screenshot drives headless chromium with selenium, which is not installed: "
                "pip install 'binarycop[page]' (and Debian's chromium and chromium-driver)"
            )
        from binarycop.screenshots import demo_screenshots

        print("\n".join(map(str, asyncio.run(demo_screenshots(args.screenshot, args.screenshot_after)))))
        return 0
    return asyncio.run(_run(demo_config(args.bind, args.port), demo=True))


async def _run(config: Config, demo: bool = False, config_path: Path | None = None) -> int:
    from binarycop.ingesters import server_and_helpers, start_together, stop_together
    from stats.listener import ListenError

    embedded = None
    redis_url = config.redis.url or os.environ.get("REDIS_URL") or None
    if redis_url is None:
        embedded, config = _embedded_redis(config, None if demo else config_path)
        redis_url = embedded.url
    server, helpers = server_and_helpers(config, redis_url, config_path)
    keeper: asyncio.Task | None = None

    async def start() -> None:
        nonlocal keeper
        if embedded is not None:  # a Redis that dies is started again, in place
            keeper = asyncio.create_task(embedded.keep_alive(), name="embedded-redis")
        await start_together(server, helpers)

    async def stop() -> None:
        await stop_together(server, helpers)

    def banner() -> str:
        base = server.base_url
        return (
            f"status page  {base}/\nmetrics      {base}/metrics\nhealth       {base}/healthz  {base}/readyz\n"
            f"processes    {server.peers} (ingester.processes: {config.ingester.processes})\n"
            f"redis        {redact_url(redis_url)}\n(Ctrl-C stops)"
        )

    try:
        await _run_until_signalled(start, stop, banner)
    except ListenError as error:  # a busy port is no config problem; in demo the settings are its flags
        settings = "--bind, --port" if demo else getattr(error, "settings", "http.bind, http.port")
        raise CommandError(f"{'demo' if demo else 'serve'}: {settings}: {error}") from None
    finally:
        if keeper is not None:
            keeper.cancel()
        if embedded is not None:
            embedded.close()
    return max(server.exit_status, helpers.exit_status if helpers is not None else 0)  # 1: counts lost (logged)


def _embedded_redis(config: Config, config_path: Path | None):
    """This server's own Redis: in the config file's folder under the data dir (kept, the same at every start; its
    spool beside it), or temporary for the demo. Another running server of the same file is a clear error."""
    from stats.embedded import EmbeddedRedis, InstanceBusy, instance_dir

    directory = instance_dir(config_path) if config_path is not None else None
    try:
        embedded = EmbeddedRedis(directory)
    except InstanceBusy as error:
        raise CommandError(f"embedded Redis: {error}") from None
    except RuntimeError as error:
        raise CommandError(f"embedded Redis: {error}", status=1) from None
    update: dict = {"redis": RedisConfig()}  # the embedded one has no password
    if directory is not None and config.ingester.spool_dir is None:  # counts kept at a stop go back to this Redis
        update["ingester"] = config.ingester.model_copy(update={"spool_dir": directory / "spool"})
    log.info("no Redis URL configured: started an embedded Redis (data: %s)", directory or "temporary")
    return embedded, config.model_copy(update=update)


async def _run_until_signalled(start, stop, banner) -> None:
    """``start()``, the ``banner()`` on stderr, then run until SIGINT or SIGTERM; ``stop()`` whatever happens."""
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, signalled.set)
    try:
        await start()
        print(banner(), file=sys.stderr, flush=True)
        await signalled.wait()
    finally:
        await stop()


def _add_exporter(commands) -> None:
    exporter = commands.add_parser("exporter", help="/metrics and the status page from Redis, without cameras")
    redis_arguments(exporter)
    exporter.add_argument("--bind", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    exporter.add_argument("--port", type=int, default=9108, help="TCP port of /metrics (default: 9108)")
    exporter.set_defaults(handler=_exporter)


def _exporter(args) -> int:
    if not args.redis_url:
        raise CommandError("exporter needs --redis-url or REDIS_URL: it serves what ingesters wrote to a shared Redis")
    return asyncio.run(_run_exporter(redis_config(args), args.bind, args.port))


async def _run_exporter(redis: RedisConfig, bind: str, port: int) -> int:
    from stats.listener import ListenError
    from stats.web import CountsWeb

    redis_url = redis.url
    client = redis_client(redis)
    web = CountsWeb(client, redact_url(redis_url))

    async def start() -> None:
        try:
            await web.start(bind, port)
        except ListenError as error:
            raise CommandError(f"exporter: --bind, --port: {error}") from None

    async def stop() -> None:
        await web.stop()
        await client.aclose()

    def banner() -> str:
        return f"metrics      http://{bind}:{web.port}/metrics\nredis        {redact_url(redis_url)}"

    await _run_until_signalled(start, stop, banner)
    return 0


def _add_status(commands) -> None:
    status = commands.add_parser("status", help="ingesters, their cameras, lease ages and pending counts")
    redis_arguments(status)
    status.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="also list the config's cameras that no ingester runs (only their names are read: no secret needed); "
        "without a Redis URL, read the embedded Redis of `serve --config` that file",
    )
    status.add_argument("--json", action="store_true", help="print the result (or the error) as one JSON document")
    status.set_defaults(handler=_status)


def _status(args) -> int:
    from stats.fleet import fleet_status, format_status

    if not args.redis_url and args.config is not None:
        args.redis_url = _embedded_url(args.config)  # the embedded Redis of `serve --config` that file, if running
    if not args.redis_url:
        _status_failed(args, "status needs --redis-url or REDIS_URL: the Redis the ingesters share", 2)
    cameras = config_camera_names(args.config) if args.config else None

    async def read() -> dict:
        client = redis_client(redis_config(args), timeout=5)
        try:
            return await fleet_status(client, cameras)
        finally:
            await client.aclose()

    try:
        status = asyncio.run(read())
    except (RedisError, OSError) as error:
        _status_failed(args, f"Redis at {redact_url(args.redis_url)} unreachable: {error}", 1)
    return emit(args, status, lambda status: print(format_status(status)))


def _status_failed(args, message: str, status: int) -> None:
    """With ``--json``, the failure as the JSON document on stdout too; then the one line on stderr."""
    if args.json:
        print(json.dumps({"ok": False, "error": message}))
    raise CommandError(message, status=status)


def config_camera_names(path: Path) -> list[str]:
    """The camera names in a config file, without substituting ``${VAR}`` or validating anything else: listing
    names needs none of the cameras' secrets."""
    from binarycop.strict_yaml import YamlRefused, load_yaml

    try:
        raw = load_yaml(read_config_text(path))
    except YamlRefused as error:
        raise ConfigError(str(path), [str(error)]) from None
    cameras = raw.get("cameras") if isinstance(raw, dict) else None
    names = [camera.get("name") for camera in cameras or [] if isinstance(camera, dict)]
    if not cameras or not all(isinstance(name, str) and re.fullmatch(NAME_PATTERN, name) for name in names):
        raise ConfigError(str(path), ["cameras: a list of cameras, each with a name (binarycop validate-config)"])
    return names


def _embedded_url(config_path: Path) -> str | None:
    from stats.embedded import SOCKET_NAME, instance_dir, socket_url

    directory = instance_dir(config_path)
    return socket_url(directory) if (directory / SOCKET_NAME).exists() else None


def _add_validate(commands) -> None:
    validate = commands.add_parser("validate-config", help="check a config file; non-zero exit on problems")
    validate.add_argument("file", type=Path, help="the YAML config to check")
    validate.add_argument("--json", action="store_true", help="print the result as one JSON document (for CI)")
    validate.set_defaults(handler=_validate)


def _validate(args) -> int:
    config = load_config(args.file)
    _check_model(config, str(args.file))
    _check_files(config, str(args.file))
    _check_detectors(config, str(args.file))
    result = {
        "ok": True,
        "source": str(args.file),
        "cameras": [{"name": c.name, "url": c.display_url, "site": c.site} for c in config.cameras],
    }
    return emit(
        args,
        result,
        lambda result: print(
            f"{args.file}: ok, {len(config.cameras)} camera(s): "
            + ", ".join(f"{c.name} ({c.display_url})" for c in config.cameras)
        ),
    )


def _check_files(config: Config, source: str) -> None:
    """A file camera names a file that exists (relative paths: from where binarycop runs), as the server will
    open it: a typo is an error now rather than a camera that never delivers a frame."""
    from ingest import file_path

    problems = []
    for camera in config.cameras:
        path = file_path(camera.url)
        if path is not None and not Path(path).is_file():
            where = "" if Path(path).is_absolute() else f" (from {Path.cwd()})"
            problems.append(f"cameras[{camera.name}].url: no such video file: {path}{where}")
    if problems:
        raise ConfigError(source, problems)


def _check_model(config: Config, source: str) -> None:
    """Load the configured model file (as the server will) so a bad one is an error now, not at start-up."""
    from accel import ModelFileError, load_model

    classifier = config.classifier
    try:
        load_model(classifier.model)
    except ModelFileError as error:
        raise ConfigError(source, [f"classifier.model: {error}"]) from None
    except (MemoryError, AttributeError, KeyError, OSError, ValueError) as error:  # what numpy raises on odd archives
        raise ConfigError(
            source, [f"classifier.model: {classifier.model}: not a readable model file ({type(error).__name__})"]
        ) from None
    if classifier.bitfile and not Path(classifier.bitfile).is_file():
        raise ConfigError(source, [f"classifier.bitfile: {classifier.bitfile}: no such file"])


def _check_detectors(config: Config, source: str) -> None:
    """Load and run every detector the cameras use (as the server will): a broken model is an error now."""
    from binarycop.pipeline import detector_problems

    problems = detector_problems(config)
    if problems:
        raise ConfigError(source, problems)


def _add_schema(commands) -> None:
    schema = commands.add_parser("config-schema", help="print the config's JSON Schema")
    schema.set_defaults(handler=lambda args: print(json.dumps(config_schema(), indent=2)) or 0)
