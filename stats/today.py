"""People counted since local midnight, by class, for the page's "today" figure: summed from the per-minute history
buckets (:mod:`stats.history`), which Redis keeps for two days.

A day is up to 1440 buckets; reading them all for every page refresh would be wasteful, so the buckets of past
minutes are kept here and only the last few minutes read again; every ``REREAD_SECONDS`` the whole day is read
afresh, so counts written late into past minutes (a spool replayed after an outage) show within that time.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from stats.history import Bucket, read_history

RECENT_MINUTES = 3  # minutes still being written by ingesters' flushes: always read again
REREAD_SECONDS = 600


def local_midnight(now: float) -> float:
    """Unix time of the local midnight that began ``now``'s day."""
    day = time.localtime(now)
    return time.mktime((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0, 0, 0, -1))


class TodayPeople:
    """The people buckets (kind "people" only) of today's minutes, kept between reads."""

    def __init__(self) -> None:
        self._buckets: dict[int, Bucket] = {}
        self._read_all_at = float("-inf")

    async def read(self, client: aioredis.Redis, now: float) -> tuple[float, list[tuple[int, Bucket]], int]:
        """(today's start as unix time, today's people buckets oldest first, fields skipped)."""
        start = local_midnight(now)
        first, this_minute = int(start // 60), int(now // 60)
        self._buckets = {minute: b for minute, b in self._buckets.items() if minute >= first}
        if now - self._read_all_at >= REREAD_SECONDS or start > self._read_all_at:
            self._buckets.clear()
            self._read_all_at = now
        recent = this_minute - RECENT_MINUTES
        missing = [m for m in range(first, this_minute + 1) if m not in self._buckets or m > recent]
        skipped = 0
        if missing:
            history, skipped = await read_history(client, now, this_minute - min(missing) + 1)
            for minute, bucket in history:
                if minute in missing or minute not in self._buckets:
                    self._buckets[minute] = {key: n for key, n in bucket.items() if key[0] == "people"}
        return start, sorted(self._buckets.items()), skipped
