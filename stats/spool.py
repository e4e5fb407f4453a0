"""Counts kept on local disk when a stop finds Redis away, replayed exactly once at the next start.

At a stop the server waits a bounded time for Redis (``ingester.stop_wait_seconds``); what Redis has not
confirmed by then is written to the spool folder as ``<ingester id>.jsonl``, one JSON line per numbered batch
(written whole to a ``.part`` file, synced, then renamed into place: a reader never sees half a file). The next
ingester to start with that folder applies each batch under its original ingester id and number, the same
exactly-once step as a normal flush (a batch whose reply was lost and which Redis applied meanwhile is
skipped), then deletes the file. Only counts are kept: no frame, face, crop, track id or URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import stat
from collections import Counter
from pathlib import Path

import redis.asyncio as aioredis

from stats.batches import Batch, BatchRefused, apply_batches, check_batch, empty_counts
from stats.schema import COUNTED_KEYS

log = logging.getLogger(__name__)
SUFFIX = ".jsonl"
RECORD_FIELDS = {"ingester", "seq", "counts", "history"}
INGESTER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")  # host-pid-suffix (stats.redis_store.new_ingester_id)
MAX_FILE_BYTES = 64 * 2**20  # a stop writes two batches; days of per-minute history for many cameras fit
MAX_LINE_BYTES = 16 * 2**20  # one batch
CHUNK_LINES = 256  # lines read and decoded per trip off the event loop


class SpoolError(OSError):
    """The spool could not be written (the message names the file and why)."""


class SpoolRefused(ValueError):
    """A spool folder entry that is not a file binarycop would write (a link, a FIFO, a device, too large)."""


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
    all its batches are in; Redis errors and :class:`BatchRefused` propagate (the file stays for the next try, and
    what of it went in is skipped then)."""
    applied = 0
    for path in sorted(directory.glob(f"*{SUFFIX}")) if directory.is_dir() else []:
        applied += await _replay_file(client, path)
    return applied


async def _replay_file(client: aioredis.Redis, path: Path) -> int:
    """Stream one file's batches into Redis, :data:`PIPELINE_BATCHES` per round trip, reading and decoding off
    the event loop; a line that is not a batch is skipped and the file kept aside as ``.damaged`` afterwards.
    A batch refused by Redis (:class:`BatchRefused`) keeps the file for the next try: what went in before it is
    skipped then."""
    try:
        file = await asyncio.to_thread(_open_regular, path)
    except SpoolRefused as error:
        log.error("spool file %s refused (%s): not replayed", path, error)
        return 0
    except OSError as error:
        log.error("spool file %s cannot be read (%s): not replayed", path, error.strerror or error)
        return 0
    applied = before = 0
    damaged: list[str] = []
    try:
        with file:
            number = 0
            while chunk := await asyncio.to_thread(_read_batches, file, number, damaged):
                number = chunk[-1][0]
                now, skipped = await _apply_chunk(client, [batch for _, batch in chunk])
                applied, before = applied + now, before + skipped
    except BatchRefused:
        log.info("spool file %s: %d counts applied before Redis refused a batch; the rest is kept", path, applied)
        raise
    if damaged:
        kept = path.with_suffix(".damaged")
        path.replace(kept)
        log.error("spool file %s is damaged (%s): its intact batches replayed, kept as %s", path, damaged[0], kept)
    else:
        path.unlink(missing_ok=True)
    log.info("spool file %s replayed: %d counts applied, %d were in Redis already", path, applied, before)
    return applied


async def _apply_chunk(client: aioredis.Redis, batches: list[tuple[str, Batch]]) -> tuple[int, int]:
    """Apply batches in order, in one atomic step (all checked before any is written); (counts applied, counts
    skipped as applied before)."""
    results = await apply_batches(client, batches)
    now = counted([batch for (_, batch), applied in zip(batches, results) if applied])
    return now, counted([batch for _, batch in batches]) - now


def _open_regular(path: Path):
    """``path`` opened for reading if it is a regular file (not a link, FIFO, device or folder) of at most
    :data:`MAX_FILE_BYTES`: a spool folder is writable by the service, and nothing in it may hang or fill memory."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise SpoolRefused("not a regular file")
        if status.st_size > MAX_FILE_BYTES:
            raise SpoolRefused(f"{status.st_size} bytes, over the {MAX_FILE_BYTES} a spool file may hold")
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _read_batches(file, number: int, damaged: list[str]) -> list[tuple[int, tuple[str, Batch]]]:
    """Up to :data:`CHUNK_LINES` decoded batches after line ``number`` (line number, (ingester, batch)); a line that
    is not a whole, valid batch is named in ``damaged`` and skipped."""
    chunk = []
    while len(chunk) < CHUNK_LINES:
        line = file.readline(MAX_LINE_BYTES + 1)
        if not line:
            break
        number += 1
        if not line.strip():
            continue
        try:
            if len(line) > MAX_LINE_BYTES or not line.endswith(b"\n"):
                raise ValueError("line over the size limit" if len(line) > MAX_LINE_BYTES else "unterminated line")
            chunk.append((number, _decode(json.loads(line))))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            damaged.append(f"line {number}: {error}")
            if len(line) > MAX_LINE_BYTES:  # the rest of that line
                while (rest := file.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass
    return chunk


def _encode(ingester: str, batch: Batch) -> dict:
    return {
        "ingester": ingester,
        "seq": batch.seq,
        "counts": {key: dict(counter) for key, counter in batch.counts.items() if counter},
        "history": {str(minute): dict(counter) for minute, counter in batch.history.items() if counter},
    }


def _decode(record) -> tuple[str, Batch]:
    """One spool line's (ingester, batch); ValueError unless it holds exactly the fields :func:`_encode` writes,
    with the schema's keys and fields and non-negative integer counts (:func:`stats.batches.check_batch`)."""
    if not isinstance(record, dict) or set(record) != RECORD_FIELDS:
        raise ValueError(f"not a spool record (fields {sorted(record) if isinstance(record, dict) else '-'})")
    ingester = record["ingester"]
    if not isinstance(ingester, str) or not INGESTER_ID.fullmatch(ingester):
        raise ValueError(f"ingester id {ascii(ingester)[:80]} is not one binarycop makes")
    counts = empty_counts()
    for key, values in dict(record["counts"]).items():
        if key not in counts:
            raise ValueError(f"{ascii(key)[:80]} is not a key binarycop counts in")
        counts[key].update(dict(values))
    history = {}
    for minute, values in dict(record["history"]).items():
        if not (isinstance(minute, str) and minute.isascii() and minute.isdigit() and len(minute) <= 15):
            raise ValueError(f"history minute {ascii(minute)[:40]} is not a minute number")
        history[int(minute)] = Counter(dict(values))
    batch = Batch(record["seq"], counts, history)
    check_batch(batch)
    return ingester, batch


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
