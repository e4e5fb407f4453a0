"""``/metrics`` from what is in Redis: a custom collector, so any number of exporters agree
and totals survive ingester restarts."""

from __future__ import annotations

import time

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import CollectorRegistry

from stats.schema import (
    BUILD_KEY,
    CAMERA_SEEN_KEY,
    CAMERA_UP_KEY,
    CROPS_KEY,
    FACES_KEY,
    FRAME_OUTCOMES,
    FRAMES_KEY,
    INGESTERS_KEY,
    NO_SITE,
    PEOPLE_KEY,
    RECONNECTS_KEY,
    SITE_KEY,
    STAGE_BUCKETS,
    STAGES,
    STAGES_KEY,
    VISIBLE_KEY,
    field,
)
from stats.snapshot import clean_counts

STALE_AFTER_SECONDS = 30.0
CLASS_LABELS = ["camera", "zone", "mask_class"]


def _counter(
    counts: dict, key: str, name: str, documentation: str, labels: list[str], zeros: set[str] = frozenset()
) -> CounterMetricFamily:
    """A counter family from one Redis hash whose fields are '|'-joined label values; ``zeros`` are fields
    shown as 0 until counted, so rates of rare events (drops, reconnects) exist before the first one."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    stored = counts.get(key, {})
    for name_ in sorted(set(stored) | set(zeros)):
        family.add_metric(name_.split("|"), float(stored.get(name_, 0)))
    return family


def metric_families(counts: dict[str, dict[str, str]], now: float | None = None) -> list:
    """Prometheus metric families for a snapshot read by :func:`stats.redis_store.read_counts`; what in it
    cannot be served is left out (:func:`stats.snapshot.clean_counts`)."""
    now = time.time() if now is None else now
    counts, _ = clean_counts(counts)
    faces = _counter(
        counts, FACES_KEY, "binarycop_faces_classified", "Faces classified, per frame, by mask position", CLASS_LABELS
    )
    known = set(counts.get(CAMERA_UP_KEY, {}))  # cameras seen: their counters start at 0, not absent
    frames = _counter(
        counts,
        FRAMES_KEY,
        "binarycop_frames",
        "Frames sampled for detection, by outcome",
        ["camera", "outcome"],
        {field(camera, outcome) for camera in known for outcome in FRAME_OUTCOMES},
    )
    up = GaugeMetricFamily("binarycop_camera_up", "1 while the camera delivers frames", labels=["camera"])
    seen = counts.get(CAMERA_SEEN_KEY, {})
    for camera, value in sorted(counts.get(CAMERA_UP_KEY, {}).items()):
        fresh = now - float(seen.get(camera, 0)) < STALE_AFTER_SECONDS
        up.add_metric([camera], 1.0 if value == "1" and fresh else 0.0)
    reconnects = _counter(
        counts,
        RECONNECTS_KEY,
        "binarycop_camera_reconnects",
        "Times a stream was reopened after a stall or disconnect",
        ["camera"],
        known,
    )
    people = _counter(
        counts,
        PEOPLE_KEY,
        "binarycop_people",
        "People counted once each when their track is confirmed, by mask position",
        CLASS_LABELS,
    )
    visible = GaugeMetricFamily(
        "binarycop_faces_visible", "Faces in view now (confirmed tracks), by mask position", labels=CLASS_LABELS
    )
    for name, value in sorted(counts.get(VISIBLE_KEY, {}).items()):
        camera = name.split("|", 1)[0]
        if now - float(seen.get(camera, 0)) < STALE_AFTER_SECONDS:
            visible.add_metric(name.split("|"), float(value))
    crops = _counter(counts, CROPS_KEY, "binarycop_classifier_crops", "Face crops classified", ["backend"])
    build = GaugeMetricFamily(
        "binarycop_build_info",
        "Version, classifier backend and model of running ingesters",
        labels=["version", "backend", "model"],
    )
    for name, reported in sorted(counts.get(BUILD_KEY, {}).items()):
        if now - float(reported) < STALE_AFTER_SECONDS:
            build.add_metric(name.split("|"), 1.0)
    stages = _stage_histogram(counts.get(STAGES_KEY, {}))
    info = GaugeMetricFamily(
        "binarycop_camera_info", "Each camera's site, for grouping by site (join on camera)", labels=["camera", "site"]
    )
    sites = counts.get(SITE_KEY, {})
    for camera in sorted(set(sites) | set(counts.get(CAMERA_UP_KEY, {}))):
        info.add_metric([camera, sites.get(camera, NO_SITE)], 1.0)
    ingesters = GaugeMetricFamily("binarycop_ingesters", "Ingester processes with a recent heartbeat")
    beats = counts.get(INGESTERS_KEY, {}).values()
    ingesters.add_metric([], float(sum(now - float(seen) < STALE_AFTER_SECONDS for seen in beats)))
    return [faces, people, visible, frames, up, reconnects, stages, crops, build, info, ingesters]


def _stage_histogram(stored: dict[str, str]) -> HistogramMetricFamily:
    histogram = HistogramMetricFamily(
        "binarycop_stage_duration_seconds", "Time per frame in each pipeline stage", labels=["stage"]
    )
    for stage in STAGES:
        count = int(stored.get(f"{stage}|count", 0))
        if not count:
            continue
        cumulative, buckets = 0, []
        for index, bound in enumerate((*STAGE_BUCKETS, float("inf"))):
            cumulative += int(stored.get(f"{stage}|{index}", 0))
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(cumulative)))
        histogram.add_metric([stage], buckets, sum_value=int(stored.get(f"{stage}|sum_us", 0)) / 1e6)
    return histogram


class SnapshotCollector:
    """A collector over the latest snapshot (refreshed by the server before each exposition), plus
    what only this process knows: counts waiting for Redis, and whether Redis answered."""

    def __init__(self, pending=lambda: 0, refused=dict):
        """``refused()``: batches Redis refused, by key (see :class:`stats.batches.BatchRefused`)."""
        self.counts: dict[str, dict[str, str]] = {}
        self.redis_up = True
        self.bad_values = 0  # values read from Redis and skipped, since this process started
        self._pending = pending
        self._refused = refused

    def collect(self):
        if self.redis_up:
            yield from metric_families(self.counts)
        pending = GaugeMetricFamily(
            "binarycop_counts_pending", "Counts held in this process because Redis has not taken them yet"
        )
        pending.add_metric([], float(self._pending()))
        yield pending
        redis_up = GaugeMetricFamily("binarycop_redis_up", "1 if Redis answered the last scrape")
        redis_up.add_metric([], 1.0 if self.redis_up else 0.0)
        yield redis_up
        bad = CounterMetricFamily(
            "binarycop_redis_bad_values",
            "Values read from Redis that are no binarycop count (wrong labels, not a number) and were skipped; "
            "every read of one counts",
        )
        bad.add_metric([], float(self.bad_values))
        yield bad
        refused = CounterMetricFamily(
            "binarycop_redis_refused_batches",
            "Batches of counts Redis refused because a key held what binarycop did not write (wrong type, not a "
            "count, a sequence number someone else set); the counts stay pending until the key is fixed",
            labels=["key"],
        )
        for key, times in sorted(self._refused().items()):
            refused.add_metric([key], float(times))
        yield refused


def make_registry(pending=lambda: 0, refused=dict) -> tuple[CollectorRegistry, SnapshotCollector]:
    registry = CollectorRegistry(auto_describe=False)
    collector = SnapshotCollector(pending, refused)
    registry.register(collector)
    return registry, collector
