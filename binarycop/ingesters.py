"""Helper ingesters: one process per core, each an ingester of its own sharing the cameras through the leases.

One Python process runs its cameras' readers, detector threads, tracker and event loop under one interpreter lock,
and past a dozen busy cameras they queue for it while cores sit idle (``bench pipeline``: 24 crowd cameras in one
process left a fifth of a core idle and dropped frames; two processes of 12 dropped none). So a server runs
``ingester.processes`` processes: itself (HTTP, the spool) and helpers, started here as ``binarycop ingest-helper``.
Each helper reads its config (as the server loaded it) from its standard input, and stops when that pipe closes:
a helper never outlives its server, even one killed outright. A helper that dies is started again, after a pause
that doubles up to :data:`MAX_RESTART_SECONDS` while it keeps dying that soon; its cameras go to the others once
their leases expire, as with any ingester that dies. The config travels through the pipe, never the command line:
it may hold passwords.

Only the server serves HTTP, so what only a helper knows of itself travels back: each second a helper writes one
JSON line to its standard output (a pipe to its server) with its counts waiting for Redis, the batches Redis
refused and its cameras' gauges (up, error, site, faces in view: counts and camera names, never a picture or a
track). The server's ``/metrics`` serves the first two beside its own, by ``process`` (``binarycop_counts_pending``,
``binarycop_redis_refused_batches``), and while Redis is away the gauges with its own cameras'. Those are what an
operator needs then, when no helper's heartbeat or gauge reaches Redis either.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from binarycop.config import Config
from stats.schema import CAMERA_ERROR_KEY, CAMERA_SEEN_KEY, CAMERA_UP_KEY, SITE_KEY, VISIBLE_KEY

log = logging.getLogger(__name__)
HELPER_COMMAND = "ingest-helper"
FIRST_RESTART_SECONDS = 1.0
MAX_RESTART_SECONDS = 60.0
STOP_MARGIN_SECONDS = 15.0  # beyond the stop wait: a helper flushing to a slow Redis is not cut short
REPORT_SECONDS = 1.0  # how often a helper tells its server what it holds
REPORT_MARK = "binarycop-helper-report"  # the key that tells a report from anything else a library prints
REPORT_LIMIT = 1 << 22  # bytes: the longest report line read (a helper's gauges of hundreds of cameras fit)
# The gauges a helper reports: what /metrics serves of a process's own cameras while Redis is away
REPORTED_GAUGES = (CAMERA_UP_KEY, CAMERA_SEEN_KEY, CAMERA_ERROR_KEY, SITE_KEY, VISIBLE_KEY)


class HelperIngesters:
    """``count`` helper processes of a server reading ``config`` into Redis at ``redis_url``."""

    def __init__(self, count: int, config: Config, redis_url: str, config_path: Path | None = None):
        self.count = count
        self.peers = count + 1  # the server's own process is one of them
        self._payload = json.dumps(
            {
                "config": config.model_dump(mode="json"),
                "redis_url": redis_url,
                "config_path": str(config_path) if config_path is not None else None,
                "peers": self.peers,
                "report": True,
            }
        ).encode()
        self._stop_wait = config.ingester.stop_wait_seconds + STOP_MARGIN_SECONDS
        self._processes: list[asyncio.subprocess.Process | None] = [None] * count
        self._started = [0.0] * count  # monotonic time each helper was last started
        self._reports: list[dict | None] = [None] * count  # each running helper's latest report
        self._readers: list[asyncio.Task | None] = [None] * count
        self._supervisor: asyncio.Task | None = None
        self._stopping = False
        self.exit_status = 0  # 1 when a helper's stop lost counts

    @property
    def pids(self) -> list[int]:
        """Pids of the helpers running now."""
        return [process.pid for process in self._processes if process is not None and process.returncode is None]

    def reports(self) -> dict[str, dict]:
        """What each running helper last reported of itself, by process (``helper-1``...): ``pending``, counts it
        holds because Redis has not taken them, ``refused``, batches Redis refused by key, since it started, and
        ``gauges``, its cameras' gauges as Redis would hold them (:data:`REPORTED_GAUGES`)."""
        return {
            f"helper-{index + 1}": report
            for index, report in enumerate(self._reports)
            if report is not None and self._processes[index] is not None
        }

    async def start(self) -> None:
        for index in range(self.count):
            await self._spawn(index)
        self._supervisor = asyncio.create_task(self._supervise(), name="helper-ingesters")

    async def _spawn(self, index: int) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "binarycop.cli",
            *_log_options(),
            HELPER_COMMAND,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=REPORT_LIMIT,
        )
        process.stdin.write(self._payload + b"\n")  # kept open: its end tells the helper this server has gone
        await process.stdin.drain()
        self._processes[index] = process
        self._reports[index] = None
        self._started[index] = time.monotonic()
        self._readers[index] = asyncio.create_task(self._read_reports(index, process), name=f"helper-{index + 1}-out")
        log.info("helper ingester %d of %d started (pid %d)", index + 1, self.count, process.pid)

    async def _read_reports(self, index: int, process: asyncio.subprocess.Process) -> None:
        """Keep helper ``index``'s latest report; pass anything else it prints on to this process's stdout."""
        while line := await _read_line(process.stdout):
            report = _parse_report(line)
            if report is None:
                try:
                    sys.stdout.buffer.write(line)
                    sys.stdout.flush()
                except (OSError, ValueError):  # this process's stdout closed: the line is dropped
                    pass
            elif self._processes[index] is process:
                self._reports[index] = report
        if self._processes[index] is process:
            self._reports[index] = None  # it has gone: what it held is spooled, or lost with it (logged)

    async def _supervise(self) -> None:
        waits = [FIRST_RESTART_SECONDS] * self.count
        while not self._stopping:
            ended = {
                asyncio.ensure_future(process.wait()): index
                for index, process in enumerate(self._processes)
                if process is not None
            }
            done, pending = await asyncio.wait(ended, return_when=asyncio.FIRST_COMPLETED)
            for future in pending:
                future.cancel()
            if self._stopping:
                return
            for future in done:
                index = ended[future]
                status = future.result()
                if time.monotonic() - self._started[index] > MAX_RESTART_SECONDS:
                    waits[index] = FIRST_RESTART_SECONDS  # it had been running: not a crash loop
                log.error(
                    "helper ingester %d (pid %d) exited with status %s: started again in %g s; its cameras go "
                    "to the other ingesters when their leases expire",
                    index + 1,
                    self._processes[index].pid,
                    status,
                    waits[index],
                )
                self._processes[index] = None
                await asyncio.sleep(waits[index])
                if self._stopping:
                    return
                waits[index] = min(MAX_RESTART_SECONDS, 2 * waits[index])
                await self._spawn(index)

    async def stop(self) -> None:
        """Ask each helper to stop (SIGTERM: it flushes its counts and gives its leases back), and wait for it;
        kill one that takes longer than its stop wait."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        running = [process for process in self._processes if process is not None and process.returncode is None]
        for process in running:
            try:
                process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            process.stdin.close()  # the same request, for a helper still starting (no signal handler yet)
        for process in running:
            try:
                status = await asyncio.wait_for(process.wait(), self._stop_wait)
            except TimeoutError:
                log.error("helper ingester (pid %d) did not stop within %g s: killed", process.pid, self._stop_wait)
                process.kill()
                status = await process.wait()
            if status not in (0, -signal.SIGTERM):
                self.exit_status = 1
        readers = [reader for reader in self._readers if reader is not None]
        await asyncio.gather(*readers, return_exceptions=True)  # each ends with its helper's output


async def _read_line(stream: asyncio.StreamReader) -> bytes:
    """The next line (b"" at the end); one longer than the stream's limit is skipped, not fatal."""
    while True:
        try:
            return await stream.readline()
        except ValueError:  # over the limit: readline has dropped it
            continue


def _parse_report(line: bytes) -> dict | None:
    """A helper's report line as ``{"pending": int, "refused": {key: int}, "gauges": {key: {field: str}}}``, or None
    for any other line."""
    try:
        message = json.loads(line)
        report = message[REPORT_MARK]
        pending = int(report["pending"])
        refused = {str(key): int(times) for key, times in report["refused"].items()}
        gauges = {
            key: {str(name): str(value) for name, value in report.get("gauges", {}).get(key, {}).items()}
            for key in REPORTED_GAUGES
        }
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return {"pending": pending, "refused": refused, "gauges": gauges}


def _report_line(server) -> bytes:
    recorder = server.recorder
    local = recorder.local_counts()
    report = {
        "pending": recorder.pending,
        "refused": dict(recorder.refused),
        "gauges": {key: local.get(key, {}) for key in REPORTED_GAUGES},
    }
    return (json.dumps({REPORT_MARK: report}) + "\n").encode()


class _Reporter:
    """Writes the latest report line to stdout from a thread of its own: a server slow to read never stalls this
    helper's event loop, and a report waiting to be written is replaced by the next one, not queued."""

    def __init__(self):
        self._line: bytes | None = None
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._write_forever, name="reports", daemon=True)
        self._thread.start()

    def send(self, line: bytes) -> None:
        with self._ready:
            self._line = line
            self._ready.notify()

    def close(self, timeout: float = 2.0) -> None:
        """After the last report is written (or ``timeout``)."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(timeout)

    def _write_forever(self) -> None:
        out = sys.stdout.buffer
        while True:
            with self._ready:
                while self._line is None and not self._closed:
                    self._ready.wait()
                line, self._line = self._line, None
                if line is None:
                    return
            try:
                out.write(line)
                out.flush()
            except (BrokenPipeError, ValueError, OSError):  # the server has gone: the helper stops too
                return


async def _report_forever(server, reporter: _Reporter) -> None:
    """Tell the server what this helper holds, each :data:`REPORT_SECONDS` (see the module's docstring)."""
    while True:
        reporter.send(_report_line(server))
        await asyncio.sleep(REPORT_SECONDS)


def _log_options() -> list[str]:
    """The server's log level and format, for its helpers."""
    from binarycop.cli.logs import JsonFormatter

    root = logging.getLogger()
    level = logging.getLevelName(logging.getLogger("binarycop").getEffectiveLevel()).lower()
    json_format = any(isinstance(handler.formatter, JsonFormatter) for handler in root.handlers)
    return ["--log-level", level if level in ("debug", "info", "warning", "error") else "info"] + (
        ["--log-format", "json"] if json_format else []
    )


async def run_helper() -> int:
    """``binarycop ingest-helper``: one helper ingester, its config on standard input, until SIGINT or SIGTERM or
    the end of that input (its server has gone)."""
    from binarycop.server import Server

    line = sys.stdin.buffer.readline()  # written at once by the server
    try:
        payload = json.loads(line)
        config = Config.model_validate(payload["config"])
    except (ValueError, KeyError) as error:  # the type only: a config's values may hold passwords
        log.error("ingest-helper: no valid config on standard input (%s): it is started by serve", type(error).__name__)
        return 2
    config_path = Path(payload["config_path"]) if payload.get("config_path") else None
    server = Server(config, payload["redis_url"], config_path, helper=True, peers=int(payload.get("peers", 1)))
    reporter = _Reporter() if payload.get("report") else None  # stdout is a pipe to the server: HelperIngesters
    ended = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, ended.set)

    def watch_input() -> None:
        sys.stdin.buffer.read()  # until the server closes the pipe, or dies
        try:
            loop.call_soon_threadsafe(ended.set)
        except RuntimeError:  # already stopped
            pass

    threading.Thread(target=watch_input, name="server-watch", daemon=True).start()
    reports = asyncio.create_task(_report_forever(server, reporter), name="reports") if reporter else None
    try:
        await server.start()
        log.info("helper ingester %s (pid %d) running", server.recorder.ingester, os.getpid())
        await ended.wait()
    finally:
        try:
            await server.stop()
        finally:
            if reports is not None:
                reports.cancel()
                reporter.send(_report_line(server))  # the last word: what it holds after its stop (0 unless lost)
                reporter.close()
    return server.exit_status


def server_and_helpers(config: Config, redis_url: str, config_path: Path | None = None):
    """The server for ``config`` and its helpers (None for one process alone), ``ingester.processes`` resolved."""
    from binarycop.server import Server

    count = config.ingester.process_count(len(config.cameras))
    helpers = HelperIngesters(count - 1, config, redis_url, config_path) if count > 1 else None
    server = Server(config, redis_url, config_path, peers=count)
    if helpers is not None:
        server.peer_reports = helpers.reports  # its /metrics serves theirs beside its own
    return server, helpers


async def start_together(server, helpers: HelperIngesters | None) -> None:
    """The helpers first (they load their models meanwhile), then the server; each waits for the others' heartbeats
    before taking cameras."""
    if helpers is not None:
        await helpers.start()
    await server.start()


async def stop_together(server, helpers: HelperIngesters | None) -> None:
    """Stop a server and its helpers at once (each flushes its own counts); the first failure is raised."""
    steps = [server.stop()] + ([helpers.stop()] if helpers is not None else [])
    for outcome in await asyncio.gather(*steps, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome
