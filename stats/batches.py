"""Numbered batches of counts, applied to Redis exactly once, whatever Redis holds.

A Lua script applies a batch only if its number is new and records the number in the same atomic step. Redis does
not roll a script back when one of its commands fails halfway, so the script first checks everything a write could
trip on (each key's type, each field's stored value, the sequence key's value) and writes nothing if any is wrong:
a batch is applied whole or not at all, and a refused one can be retried without counting twice. What is wrong is
reported by name (:class:`BatchRefused`).

Counts come from this process or from a spool file (:mod:`stats.spool`): either way :func:`check_batch` lets
through only the schema's keys and fields (:mod:`stats.schema`, :mod:`stats.snapshot`) with non-negative integers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import redis.asyncio as aioredis

from stats.schema import (
    CAMERA_LATENCY_KEY,
    COUNTED_KEYS,
    CROPS_KEY,
    FACES_KEY,
    FRAMES_KEY,
    HISTORY_SECONDS,
    PEOPLE_KEY,
    PREFIX,
    RECONNECTS_KEY,
    SEQ_KEEP_SECONDS,
    STAGES_KEY,
    history_key,
    sequence_key,
)
from stats.snapshot import SCHEMA

MAX_COUNT = 10**15  # far above any real count, far below where HINCRBY or Lua's numbers lose exactness
BATCH_KEYS = (*COUNTED_KEYS, STAGES_KEY, CAMERA_LATENCY_KEY, CROPS_KEY)
# A history bucket's field: the kind, then the labels of the total it shadows
HISTORY_KINDS = {"faces": FACES_KEY, "people": PEOPLE_KEY, "frames": FRAMES_KEY, "reconnects": RECONNECTS_KEY}

# Applies batches in order, each unless already applied; checks everything first and writes nothing if anything
# is wrong. KEYS: the ingesters' sequence keys (ARGV[4] of them), then the hashes. ARGV: history bucket expiry (s),
# sequence key expiry (s), mode, the number of sequence keys, then per batch: its sequence key's index into KEYS,
# its number, the number of triples, then (hash index into KEYS, field, increment) triples. Mode 'replay' (a spool
# file): apply a batch if its number is above the last applied. 'first' (this process's first send of a batch: it
# cannot be in Redis yet, whatever the key says) and 'retry' (skip only if the last applied is this very number:
# its reply was lost). Returns {1, last number found for the first batch, then 1 (applied) or 0 (skipped) per
# batch}, or {-1, key, why}: refused, nothing written.
APPLY_BATCHES = """
local function count(value) return string.match(value, '^%d+$') ~= nil and #value <= 15 end
local history_ttl, seq_ttl, mode, sequences = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local last = {}
for k = 1, #KEYS do
  local kind = redis.call('TYPE', KEYS[k]).ok
  if k <= sequences then
    if kind ~= 'none' and kind ~= 'string' then return {-1, KEYS[k], 'is a ' .. kind .. ', not a batch number'} end
    local stored = redis.call('GET', KEYS[k])
    if stored and not count(stored) then return {-1, KEYS[k], 'holds no batch number'} end
    last[k] = tonumber(stored or '0')
  elseif kind ~= 'none' and kind ~= 'hash' then
    return {-1, KEYS[k], 'is a ' .. kind .. ', not a hash'}
  end
end
local result, plan, i = {1, last[tonumber(ARGV[5])] or 0}, {}, 5
while i <= #ARGV do
  local s, seq, first = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), i + 3
  i = first + 3 * tonumber(ARGV[i + 2])
  local skip = (mode == 'replay' and seq <= last[s]) or (mode == 'retry' and seq == last[s])
  if not skip then
    for j = first, i - 1, 3 do
      local value = redis.call('HGET', KEYS[tonumber(ARGV[j])], ARGV[j + 1])
      if value and not count(value) then return {-1, KEYS[tonumber(ARGV[j])], 'field holds no count'} end
      if not count(ARGV[j + 2]) then return {-1, KEYS[tonumber(ARGV[j])], 'increment is no count'} end
    end
    last[s] = seq
    plan[#plan + 1] = {s, ARGV[first - 2], first, i - 1}
  end
  result[#result + 1] = skip and 0 or 1
end
local touched = {}
for _, step in ipairs(plan) do
  for j = step[3], step[4], 3 do
    local k = tonumber(ARGV[j])
    redis.call('HINCRBY', KEYS[k], ARGV[j + 1], ARGV[j + 2])
    touched[k] = true
  end
  redis.call('SET', KEYS[step[1]], step[2], 'EX', seq_ttl)
end
for k in pairs(touched) do
  if string.find(KEYS[k], ':history:', 1, true) then redis.call('EXPIRE', KEYS[k], history_ttl) end
end
return result
"""


@dataclass
class Batch:
    """Counts sealed under one number: Redis applies an ingester's batch at most once (see ``APPLY_BATCHES``);
    ``sent``: whether it may have reached Redis already."""

    seq: int
    counts: dict[str, Counter]
    history: dict[int, Counter]
    sent: bool = False


class BatchRefused(ValueError):
    """Redis holds something at a batch's key that a write would trip on; nothing of the batch was written."""

    def __init__(self, key: str, why: str):
        super().__init__(f"Redis key {key!r} {why}")
        self.key, self.why = key, why

    @property
    def label(self) -> str:
        """The key as a bounded metric label (every history bucket is one)."""
        return f"{PREFIX}:history" if ":history:" in self.key else self.key


@dataclass(frozen=True)
class Applied:
    """What the script did: ``applied`` now or skipped (applied before); ``last``, the number it found."""

    applied: bool
    last: int


def empty_counts() -> dict[str, Counter]:
    return {key: Counter() for key in BATCH_KEYS}


def check_batch(batch: Batch) -> None:
    """Raise ValueError unless every key and field is the schema's and every count a non-negative integer."""
    if type(batch.seq) is not int or not 0 < batch.seq <= MAX_COUNT:
        raise ValueError(f"batch number {batch.seq!r} is not a positive integer")
    for key, counter in batch.counts.items():
        if key not in BATCH_KEYS:
            raise ValueError(f"{ascii(key)[:80]} is not a key binarycop counts in")
        parts_ok = SCHEMA[key][0]
        for name, count in counter.items():
            _check_field(key, name, parts_ok, count)
    for minute, counter in batch.history.items():
        if type(minute) is not int or not 0 <= minute <= MAX_COUNT:
            raise ValueError(f"history minute {minute!r} is not a minute number")
        for name, count in counter.items():
            kind, _, labels = str(name).partition("|")
            if kind not in HISTORY_KINDS:
                raise ValueError(f"history field {ascii(name)[:80]} is not a binarycop count")
            _check_field(history_key(minute), labels, SCHEMA[HISTORY_KINDS[kind]][0], count)


def _check_field(key: str, name, parts_ok, count) -> None:
    parts = name.split("|") if isinstance(name, str) else []
    if len(parts) != len(parts_ok) or not all(ok(part) for ok, part in zip(parts_ok, parts)):
        raise ValueError(f"{key} field {ascii(name)[:80]} is not a binarycop count")
    if type(count) is not int or not 0 <= count <= MAX_COUNT:
        raise ValueError(f"{key} field {ascii(name)[:80]}: count {count!r} is not a non-negative integer")


async def apply_batch(client: aioredis.Redis, ingester: str, batch: Batch, mode: str = "replay") -> Applied:
    """Apply one sealed batch of ``ingester`` unless Redis applied it before (``mode``: see ``APPLY_BATCHES``).

    Raises :class:`BatchRefused` (nothing written) when a key or value in Redis is not what binarycop wrote,
    ValueError when the batch itself is not the schema's."""
    batch.sent = True
    last, applied = await _run(client, [(ingester, batch)], mode)
    return Applied(applied[0], last)


async def apply_batches(client: aioredis.Redis, batches: list[tuple[str, Batch]]) -> list[bool]:
    """Many (ingester, batch) in one atomic step, in order (mode replay): whether each was applied now. Raises
    :class:`BatchRefused` with nothing of any written."""
    return (await _run(client, batches, "replay"))[1] if batches else []


async def _run(client: aioredis.Redis, batches: list[tuple[str, Batch]], mode: str) -> tuple[int, list[bool]]:
    for _, batch in batches:
        check_batch(batch)
    sequences = list(dict.fromkeys(sequence_key(ingester) for ingester, _ in batches))
    index = {key: number for number, key in enumerate(sequences, 1)}
    argv: list = [HISTORY_SECONDS, SEQ_KEEP_SECONDS, mode, len(sequences)]
    for ingester, batch in batches:
        triples = []
        tables = [(key, counter) for key, counter in batch.counts.items()]
        tables += [(history_key(minute), counter) for minute, counter in sorted(batch.history.items())]
        for key, counter in tables:
            for name, count in counter.items():
                if count:
                    triples += [index.setdefault(key, len(index) + 1), name, count]
        argv += [index[sequence_key(ingester)], batch.seq, len(triples) // 3, *triples]
    keys = list(index)
    reply = await client.eval(APPLY_BATCHES, len(keys), *keys, *argv)
    if reply[0] == -1:
        raise BatchRefused(_text(reply[1]), _text(reply[2]))
    return int(reply[1]), [flag == 1 for flag in reply[2:]]


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
