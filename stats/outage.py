"""Outage warnings at a human rate: one line when Redis goes away, a reminder while it stays away, one when it is
back (not one a second from every loop that tries it)."""

from __future__ import annotations

import logging
import time

REMIND_SECONDS = 60.0


class OutageLog:
    """Logs an outage of Redis seen by ``what`` (e.g. "counts") on ``logger``: a warning at its start, one every
    ``remind_seconds`` while it lasts, and an info line when it ends."""

    def __init__(self, logger: logging.Logger, what: str, remind_seconds: float = REMIND_SECONDS):
        self.logger = logger
        self.what = what
        self.remind_seconds = remind_seconds
        self.since: float | None = None  # monotonic time the outage began; None: Redis answers
        self._reminded = 0.0

    def failed(self, detail: str) -> None:
        """Redis did not answer; ``detail`` says what that means now (no secret: no URL with a password)."""
        now = time.monotonic()
        if self.since is None:
            self.since = self._reminded = now
            self.logger.warning(
                "%s: Redis unreachable, %s (reminded every %g s while it lasts)", self.what, detail, self.remind_seconds
            )
        elif now - self._reminded >= self.remind_seconds:
            self._reminded = now
            self.logger.warning("%s: Redis still unreachable after %.0f s, %s", self.what, now - self.since, detail)

    def recovered(self, detail: str = "") -> None:
        """Redis answered: the end of the outage, if there was one, is logged once."""
        if self.since is None:
            return
        lasted = time.monotonic() - self.since
        self.since = None
        self.logger.info("%s: Redis back after %.0f s%s", self.what, lasted, f", {detail}" if detail else "")
