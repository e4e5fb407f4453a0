"""Camera leases in Redis: many ingesters share one camera list, each camera processed by one of them.

A lease is a key ``binarycop:lease:<camera>`` holding the ingester's id, set only if absent and
expiring after the lease time. Its holder renews it well before that (every third of it) and deletes it
on a clean shutdown; an ingester that dies (SIGKILL, power) stops renewing and its cameras go to the
others once the lease expires. Each ingester aims at its fair share, ``ceil(cameras / live ingesters)``,
so a newcomer gets work: one above its share gives one camera back per round, and releases its lease only once
the camera has stopped (the caller does, after :meth:`Leases.plan`).

Anyone who can write to Redis can add entries to the ingester list. A camera given back that no other ingester
takes is taken back, and giving back then pauses for twice as many rounds each time (up to
:data:`MAX_PAUSE_ROUNDS`), so fake entries cannot move cameras without end; a real newcomer that takes a camera
ends the pause.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from stats.redis_store import text
from stats.schema import INGESTERS_KEY, lease_key

log = logging.getLogger(__name__)
MAX_PAUSE_ROUNDS = 1024  # rounds (a third of a lease each) without giving back, after unclaimed give-backs

# Renew if still ours, or take it back if it expired meanwhile (e.g. Redis was away); 0 if another holds it.
RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class LeaseView:
    holder: str | None  # the ingester holding the lease, None if free
    expires_in: float | None  # seconds


async def read_leases(client: aioredis.Redis, cameras: list[str]) -> dict[str, LeaseView]:
    """Who holds each camera's lease and for how long still, in one round trip."""
    pipe = client.pipeline(transaction=False)
    for camera in cameras:
        pipe.get(lease_key(camera))
        pipe.pttl(lease_key(camera))
    values = await pipe.execute()
    views = {}
    for camera, holder, ttl_ms in zip(cameras, values[::2], values[1::2]):
        if holder is None:
            views[camera] = LeaseView(None, None)
        else:
            views[camera] = LeaseView(text(holder), max(ttl_ms, 0) / 1000)
    return views


@dataclass(frozen=True)
class Plan:
    """What one round decided: cameras to stop (lease lost or given back), to start (lease won), and whose lease
    to release once they have stopped (given back or removed from the config)."""

    stop: list[str]
    start: list[str]
    release: list[str] = ()


class Leases:
    def __init__(self, client: aioredis.Redis, ingester: str, seconds: float):
        self.client = client
        self.ingester = ingester
        self.seconds = seconds
        self._unowned_rounds: dict[str, int] = {}
        self._given_back: str | None = None  # the last camera given back, until someone holds it
        self._pause = 0  # rounds to go without giving back
        self._next_pause = 2
        self.others_alive = 0  # other live ingesters at the last round: someone who could take a camera over

    @property
    def _ms(self) -> int:
        return int(self.seconds * 1000)

    async def acquire(self, camera: str) -> bool:
        return bool(await self.client.set(lease_key(camera), self.ingester, nx=True, px=self._ms))

    async def renew(self, camera: str) -> bool:
        return bool(await self.client.eval(RENEW, 1, lease_key(camera), self.ingester, self._ms))

    async def release(self, camera: str) -> None:
        await self.client.eval(RELEASE, 1, lease_key(camera), self.ingester)

    async def live_ingesters(self) -> int:
        """Ingesters whose heartbeat is younger than a lease (this one included; an entry dated in the future is
        not a heartbeat)."""
        now = time.time()
        return max(1, await self.client.zcount(INGESTERS_KEY, now - self.seconds, now + self.seconds))

    async def plan(self, wanted: list[str], held: list[str]) -> Plan:
        """One round: renew what we hold, give back above our fair share, take free cameras up to it.

        ``wanted`` is the configured camera list, ``held`` what this ingester runs now. Raises RedisError
        or OSError when Redis is away; the caller keeps running what it has.
        """
        removed = [camera for camera in held if camera not in wanted]
        stop, kept = list(removed), []
        for camera in held:
            if camera in wanted:
                (kept if await self.renew(camera) else stop).append(camera)
        live = await self.live_ingesters()
        self.others_alive = live - 1
        fair = math.ceil(len(wanted) / live)
        holders = await read_leases(self.client, wanted)
        self._count_down(holders)
        if len(kept) > fair and not self._pause and self._given_back is None:  # one given back at a time
            extra = kept.pop()  # one per round, so the others have time to pick it up
            self._given_back = extra
            return Plan([*stop, extra], [], [*removed, extra])
        start = []
        for camera in wanted:
            if camera not in kept and holders[camera].holder == self.ingester and await self.renew(camera):
                start.append(camera)  # ours, but not running (stopped when its renewal came late)
                continue
            if camera in kept or holders[camera].holder is not None:
                self._unowned_rounds.pop(camera, None)
                continue
            rounds = self._unowned_rounds[camera] = self._unowned_rounds.get(camera, 0) + 1
            # Up to our share; beyond it only for a camera nobody took for two rounds (no one else has room).
            if (len(kept) + len(start) < fair or rounds > 2) and await self.acquire(camera):
                start.append(camera)
                self._unowned_rounds.pop(camera, None)
                if camera == self._given_back:
                    self._unclaimed(camera, live)
        return Plan(stop, start, removed)

    def _count_down(self, holders: dict[str, LeaseView]) -> None:
        """A round passed: the pause shortens; a camera given back that someone holds now ends the doubling."""
        self._pause = max(0, self._pause - 1)
        if self._given_back not in holders:  # removed from the config meanwhile
            self._given_back = None
        elif holders[self._given_back].holder:
            self._given_back, self._next_pause = None, 2  # someone took it: giving back works

    def _unclaimed(self, camera: str, live: int) -> None:
        """A camera given back came back to us: the other live entries took none. Pause giving back."""
        self._given_back, self._pause = None, self._next_pause
        log.warning(
            "camera %s: given back, but none of the %d other live ingesters took it: taken back; giving back paused "
            "for %d lease rounds (an ingester list entry that takes no camera is not a working ingester)",
            camera,
            live - 1,
            self._pause,
        )
        self._next_pause = min(2 * self._next_pause, MAX_PAUSE_ROUNDS)

    async def release_all(self, cameras: list[str]) -> None:
        for camera in cameras:
            await self.release(camera)
