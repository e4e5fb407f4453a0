"""What ``binarycop status`` shows: the ingesters sharing a Redis, their cameras, lease ages, pending counts."""

from __future__ import annotations

import math
import time

import redis.asyncio as aioredis

from stats.exporter import STALE_AFTER_SECONDS
from stats.leases import read_leases
from stats.redis_store import text
from stats.schema import INGESTERS_KEY, LEASE_PREFIX, MAX_INGESTERS, history_key, ingester_key

RECENT_MINUTES = 15


async def fleet_status(client: aioredis.Redis, cameras: list[str] | None = None) -> dict:
    """``{"ingesters": [...], "leases": [...]}``; ``cameras`` (from a config) also lists unleased ones."""
    now = time.time()
    beats = await client.zrevrange(INGESTERS_KEY, 0, MAX_INGESTERS - 1, withscores=True)  # bounded: the latest
    pipe = client.pipeline(transaction=False)
    for name, _ in beats:
        pipe.hgetall(ingester_key(text(name)))
    ingesters = []
    for (name, seen), beat in zip(beats[::-1], (await pipe.execute())[::-1]):
        ingester = text(name)
        info = {text(k): text(v) for k, v in beat.items()}
        started = _number(info.get("started"), float)
        ingesters.append(
            {
                "id": ingester,
                "host": info.get("host"),
                "pid": _number(info.get("pid"), int),
                "version": info.get("version"),
                "model": info.get("model"),
                "backend": info.get("backend"),
                "seen_ago_s": round(now - seen, 1) if math.isfinite(seen) else None,
                "alive": math.isfinite(seen) and now - seen < STALE_AFTER_SECONDS,  # as binarycop_ingesters counts
                "up_s": round(now - started, 1) if started is not None else None,
                "pending": _number(info.get("pending", "0"), int),
                "cameras": [c for c in info.get("cameras", "").split(",") if c],
                "lease_seconds": _number(info.get("lease_seconds"), float),
            }
        )
    names = set(cameras or [])
    async for key in client.scan_iter(match=f"{LEASE_PREFIX}*", count=500):
        if len(names) >= len(cameras or []) + MAX_INGESTERS:
            break  # leases of cameras no config names: shown up to a bound
        names.add(text(key)[len(LEASE_PREFIX) :])
    lease_seconds = {ingester["id"]: ingester["lease_seconds"] for ingester in ingesters}
    leases = []
    for camera, view in sorted((await read_leases(client, sorted(names))).items()):
        expires = round(view.expires_in, 1) if view.expires_in is not None else None
        seconds = lease_seconds.get(view.holder)
        leases.append(
            {
                "camera": camera,
                "holder": view.holder,
                "expires_in_s": expires,
                "renewed_ago_s": round(seconds - expires, 1) if seconds and expires is not None else None,
            }
        )
    return {"ingesters": ingesters, "leases": leases, "recent": await recent_counts(client, now)}


async def recent_counts(client: aioredis.Redis, now: float, minutes: int = RECENT_MINUTES) -> dict:
    """Per camera over the last ``minutes`` (from the per-minute history buckets): faces and people by class
    and the share of people who wore the mask correctly (compliance, as the page and the alerts read it)."""
    this_minute = int(now // 60)
    pipe = client.pipeline(transaction=False)
    for minute in range(this_minute - minutes + 1, this_minute + 1):
        pipe.hgetall(history_key(minute))
    cameras: dict[str, dict] = {}
    for bucket in await pipe.execute():
        for name, value in bucket.items():
            parts, count = text(name).split("|"), _number(text(value), int)
            if len(parts) != 4 or parts[0] not in ("faces", "people") or count is None:
                continue  # not a count this version wrote: skipped
            kind, camera, _zone, mask_class = parts
            entry = cameras.setdefault(camera, {"faces": {}, "people": {}})
            entry[kind][mask_class] = entry[kind].get(mask_class, 0) + count
    for entry in cameras.values():
        total = sum(entry["people"].values())
        entry["compliance"] = round(entry["people"].get("correct", 0) / total, 4) if total else None
    return {"minutes": minutes, "cameras": dict(sorted(cameras.items()))}


def format_status(status: dict) -> str:
    ingesters = status["ingesters"]
    dead = [item for item in ingesters if not item["alive"]]
    lines = [f"ingesters: {len(ingesters) - len(dead)} live" + (f", {len(dead)} dead" if dead else "")]
    for item in sorted(ingesters, key=lambda item: not item["alive"]):
        cameras = ", ".join(item["cameras"]) or "-"
        if not item["alive"]:
            lines.append(f"  {item['id']}  DEAD: no heartbeat for {item['seen_ago_s']} s (it last ran: {cameras})")
            continue
        lines.append(
            f"  {item['id']}  seen {item['seen_ago_s']} s ago, up {item['up_s']} s, pending {item['pending']}, "
            f"{item['backend']}/{item['model']} {item['version']}; cameras: {cameras}"
        )
    lines.append(f"cameras: {len(status['leases'])}")
    for item in status["leases"]:
        if item["holder"] is None:
            lines.append(f"  {item['camera']}  not leased: no ingester runs it")
        else:
            renewed = f"renewed {item['renewed_ago_s']} s ago, " if item["renewed_ago_s"] is not None else ""
            lines.append(f"  {item['camera']}  {item['holder']}  {renewed}expires in {item['expires_in_s']} s")
    recent = status["recent"]
    lines.append(f"last {recent['minutes']} min:")
    for camera, entry in recent["cameras"].items():
        compliance = "-" if entry["compliance"] is None else f"{100 * entry['compliance']:.1f} %"
        lines.append(
            f"  {camera}  compliance {compliance} of {sum(entry['people'].values())} people "
            f"({sum(entry['faces'].values())} faces, each frame counted)"
        )
    return "\n".join(shown(line) for line in lines)


def shown(value: str) -> str:
    """``value`` with control characters (newlines, ESC, bidi overrides) written as escapes: values come from
    Redis, and a terminal must not obey them or show forged lines."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in value)


def _number(value: str | None, kind: type) -> float | int | None:
    """``value`` as ``kind`` if it is a finite number (heartbeat fields are strings anyone may have written)."""
    try:
        number = kind(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
