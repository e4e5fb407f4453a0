"""The per-minute history buckets (``binarycop:history:<minute>``), read back and checked as data.

Each bucket holds what the ingesters recorded in that minute: ``faces|camera|zone|class``,
``people|camera|zone|class``, ``frames|camera|outcome`` and ``reconnects|camera``. A field that is not one of
these (a name outside the config's pattern, an unknown class, a value that is no count) is skipped, like any
other Redis value (:mod:`stats.snapshot`).

Example:
    >>> check_bucket({"faces|gate|all|correct": "3", "faces|<b>|all|correct": "1", "frames|gate|processed": "x"})
    ({('faces', 'gate', 'all', 'correct'): 3}, 2)
"""

from __future__ import annotations

import redis.asyncio as aioredis

from names import CLASSES
from stats.redis_store import text
from stats.schema import FRAME_OUTCOMES, history_key
from stats.snapshot import _count, _name

# kind -> a check per label part after the kind
_PARTS = {
    "faces": (_name, _name, frozenset(CLASSES).__contains__),
    "people": (_name, _name, frozenset(CLASSES).__contains__),
    "frames": (_name, frozenset(FRAME_OUTCOMES).__contains__),
    "reconnects": (_name,),
}
Bucket = dict[tuple[str, ...], int]


def check_bucket(stored: dict[str, str]) -> tuple[Bucket, int]:
    """One bucket's fields as (kind, labels...) -> count, and how many fields were skipped."""
    bucket: Bucket = {}
    skipped = 0
    for name, value in stored.items():
        kind, *parts = name.split("|")
        checks = _PARTS.get(kind)
        if checks and len(parts) == len(checks) and all(ok(p) for ok, p in zip(checks, parts)) and _count(value):
            bucket[(kind, *parts)] = int(value)
        else:
            skipped += 1
    return bucket, skipped


async def read_history(client: aioredis.Redis, now: float, minutes: int) -> tuple[list[tuple[int, Bucket]], int]:
    """The last ``minutes`` buckets up to ``now``'s minute, oldest first, as (unix minute, bucket); and the number
    of fields skipped."""
    this_minute = int(now // 60)
    span = range(this_minute - minutes + 1, this_minute + 1)
    pipe = client.pipeline(transaction=False)
    for minute in span:
        pipe.hgetall(history_key(minute))
    history, skipped = [], 0
    for minute, stored in zip(span, await pipe.execute()):
        bucket, bad = check_bucket({text(k): text(v) for k, v in stored.items()})
        history.append((minute, bucket))
        skipped += bad
    return history, skipped
