"""One aiohttp application listening on one address: the status page's server and the setup view's share it."""

from __future__ import annotations

import logging
import os

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

IDLE_TIMEOUT_SECONDS = 20.0  # to send a whole request's headers, and to stay idle between requests
MAX_SHOWN_CHARS = 200  # of what a malformed request's error says


class OneLineBadRequests(logging.Filter):
    """aiohttp logs each malformed request (a bad header, a bad chunk, a line too long) with a full traceback: any
    client could flood the log. Such a record becomes one line, what the client sent escaped; errors in binarycop's
    own handlers keep their tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            client = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            said = ascii(str(error.message).strip().split("\n", 1)[0])[1:-1][:MAX_SHOWN_CHARS]
            record.msg = "malformed HTTP request from %s refused (%d): %s: %s"
            record.args = (client, error.code, type(error).__name__, said)
            record.levelno, record.levelname = logging.WARNING, "WARNING"  # the client's fault, not the server's
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("aiohttp.server").addFilter(OneLineBadRequests())


class ListenError(OSError):
    """The HTTP server could not listen where it was told; the message says where and why."""


class Listener:
    """Serves an application on ``bind:port`` until :meth:`stop`."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.site: web.TCPSite | None = None

    async def start(self, app: web.Application, bind: str, port: int, idle_timeout: float = IDLE_TIMEOUT_SECONDS):
        # aiohttp closes a connection that has not sent a whole request this long after it opened or after the
        # last response (its keep-alive timer): half-open and trickling (slowloris) connections go too.
        self.runner = web.AppRunner(app, access_log=None, keepalive_timeout=idle_timeout)
        await self.runner.setup()
        self.site = web.TCPSite(self.runner, bind, port)
        try:
            await self.site.start()
        except OSError as error:  # a port in use, an address not on this machine
            reason = os.strerror(error.errno) if error.errno and error.errno > 0 else str(error)
            raise ListenError(f"cannot listen on {bind}:{port}: {reason}") from None

    @property
    def port(self) -> int:
        return self.site._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
