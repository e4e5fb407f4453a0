"""Counts kept on local disk when a stop finds Redis away, replayed exactly once at the next start.

At a stop the server waits a bounded time for Redis (``ingester.stop_wait_seconds``); what Redis has not
confirmed by then is written to the spool folder as ``<ingester id>.jsonl``, one JSON line per numbered batch
(written whole to a ``.part`` file, synced, then renamed into place: a reader never sees half a file). The next
ingester to start with that folder applies each batch under its original ingester id and number, the same
exactly-once step as a normal flush (a batch whose reply was lost and which Redis applied meanwhile is
skipped), then deletes the file. Only counts are kept: no frame, face, crop, track id or URL.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path

import redis.asyncio as aioredis

from stats.redis_store import Batch, apply_batch, empty_counts
from stats.schema import COUNTED_KEYS

log = logging.getLogger(__name__)
SUFFIX = ".jsonl"


class SpoolError(OSError):
    """The spool could not be written (the message names the file and why)."""


def counted(batches: list[Batch]) -> int:
    """Counts (faces, people, frames, reconnects) in the batches, as ``CountRecorder.pending`` counts them."""
    return sum(sum(batch.counts[key].values()) for batch in batches for key in COUNTED_KEYS)


def write_spool(directory: Path, ingester: str, batches: list[Batch]) -> Path:
    """Keep ``batches`` of ``ingester`` in ``directory``; the file's path, or raise :class:`SpoolError`."""
    path = directory / f"{ingester}{SUFFIX}"
    part = path.with_suffix(".part")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(part, "w") as file:
            for batch in batches:
                file.write(json.dumps(_encode(ingester, batch), separators=(",", ":")) + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(part, path)
        _sync_directory(directory)
    except OSError as error:
        raise SpoolError(f"cannot write the spool file {path}: {error.strerror or error}") from None
    return path


async def replay_spool(client: aioredis.Redis, directory: Path) -> int:
    """Apply every spooled batch in ``directory`` exactly once; the counts applied now. A file is deleted once
    all its batches are in; Redis errors propagate (the file stays for the next try)."""
    applied = 0
    for path in sorted(directory.glob(f"*{SUFFIX}")) if directory.is_dir() else []:
        try:
            records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            batches = [(record["ingester"], _decode(record)) for record in records]
        except (OSError, ValueError, KeyError, TypeError) as error:
            damaged = path.with_suffix(".damaged")
            log.error("spool file %s is damaged (%s): kept as %s, not replayed", path, error, damaged)
            path.replace(damaged)
            continue
        now = 0
        for ingester, batch in batches:
            if await apply_batch(client, ingester, batch):
                now += counted([batch])
        path.unlink(missing_ok=True)
        before = counted([batch for _, batch in batches]) - now
        log.info("spool file %s replayed: %d counts applied, %d were in Redis already", path, now, before)
        applied += now
    return applied


def _encode(ingester: str, batch: Batch) -> dict:
    return {
        "ingester": ingester,
        "seq": batch.seq,
        "counts": {key: dict(counter) for key, counter in batch.counts.items() if counter},
        "history": {str(minute): dict(counter) for minute, counter in batch.history.items() if counter},
    }


def _decode(record: dict) -> Batch:
    counts = empty_counts()
    for key, values in record["counts"].items():
        counts.setdefault(key, Counter()).update({name: int(count) for name, count in values.items()})
    history = {
        int(minute): Counter({name: int(count) for name, count in values.items()})
        for minute, values in record["history"].items()
    }
    return Batch(int(record["seq"]), counts, history)


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
