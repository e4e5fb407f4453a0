"""The Redis schema, in one place: every key binarycop writes, what its fields hold, how long it lives.

The store (:mod:`stats.redis_store`) writes these, the exporter and ``status`` read them, the leases take and
renew them. Only counts, gauges, heartbeats and leases: never a frame, a face, a crop, a track id or a camera URL.

Keys are hashes unless said otherwise; field names are '|'-joined label values, which config names cannot
contain. Beside each key below: its fields and what their values hold.
"""

from __future__ import annotations

PREFIX = "binarycop"
# camera|zone|mask_class -> faces classified (one per face per frame)
FACES_KEY = f"{PREFIX}:faces_classified"
# camera|outcome -> frames (outcome: one of FRAME_OUTCOMES)
FRAMES_KEY = f"{PREFIX}:frames"
# camera -> 0 or 1
CAMERA_UP_KEY = f"{PREFIX}:camera_up"
# camera -> unix time the camera last reported
CAMERA_SEEN_KEY = f"{PREFIX}:camera_seen"
# camera -> its current error, JSON {"reason": a word, "message": our text, "since": unix time}; "" while it has none
CAMERA_ERROR_KEY = f"{PREFIX}:camera_error"
# camera -> unix time of the last frame it delivered
LAST_FRAME_KEY = f"{PREFIX}:camera_last_frame"
# camera -> reconnects
RECONNECTS_KEY = f"{PREFIX}:camera_reconnects"
# camera|zone|mask_class -> people, each counted once (by the tracker)
PEOPLE_KEY = f"{PREFIX}:people"
# camera|zone|mask_class -> faces in view now (a gauge)
VISIBLE_KEY = f"{PREFIX}:faces_visible"
# stage|bucket-index -> observations in that bucket (of STAGE_BUCKETS); stage|sum_us; stage|count
STAGES_KEY = f"{PREFIX}:stage_duration"
# camera|bucket-index -> processed frames whose capture-to-counted time fell in that bucket (of STAGE_BUCKETS);
# camera|sum_us; camera|count: the end_to_end stage per camera, to find the slow one
CAMERA_LATENCY_KEY = f"{PREFIX}:camera_latency"
# backend -> crops classified
CROPS_KEY = f"{PREFIX}:classifier_crops"
# version|backend|model -> unix time of the last report
BUILD_KEY = f"{PREFIX}:build_info"
# camera -> site (NO_SITE when none), for per-site compliance
SITE_KEY = f"{PREFIX}:camera_site"
# camera -> unix time it was removed from the config (hot reload): none of its series is served until an ingester
# runs it again (its counters stay in Redis, so a camera added back resumes its totals)
REMOVED_KEY = f"{PREFIX}:camera_removed"
# sorted set: ingester id -> unix time of its last heartbeat. Per ingester, ingester_key (an expiring hash: host,
# pid, version, backend, model, started, seen, pending, cameras) and sequence_key (the last batch applied)
INGESTERS_KEY = f"{PREFIX}:ingesters"
MAX_INGESTERS = 1000  # entries kept in INGESTERS_KEY (the most recent) and shown by status: anyone may add some
# LEASE_PREFIX<camera> (a string, expiring) -> id of the ingester processing the camera (see stats.leases)
LEASE_PREFIX = f"{PREFIX}:lease:"
# counters, applied exactly once per batch; history_key(minute) holds faces|camera|zone|mask_class and
# people|camera|zone|mask_class, frames|camera|outcome and reconnects|camera -> counts recorded in that minute
# (expiring after HISTORY_SECONDS)
COUNTED_KEYS = (FACES_KEY, FRAMES_KEY, RECONNECTS_KEY, PEOPLE_KEY)

# What the fields may hold
STAGES = ("decode", "detect", "classify", "end_to_end")
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FRAME_OUTCOMES = ("processed", "dropped", "failed")
DEFAULT_ZONE = "all"
NO_SITE = "none"

# How long keys live
SEQ_KEEP_SECONDS = 7 * 24 * 3600
HISTORY_SECONDS = 48 * 3600


def field(*labels: str) -> str:
    return "|".join(labels)


def history_key(minute: int) -> str:
    return f"{PREFIX}:history:{minute}"


def ingester_key(ingester: str) -> str:
    return f"{PREFIX}:ingester:{ingester}"


def sequence_key(ingester: str) -> str:
    """The number of the last batch of ``ingester`` that Redis applied."""
    return f"{ingester_key(ingester)}:seq"


def lease_key(camera: str) -> str:
    return f"{LEASE_PREFIX}{camera}"
