"""``/metrics`` from what is in Redis: a custom collector, so any number of exporters agree
and totals survive ingester restarts."""

from __future__ import annotations

import time

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import CollectorRegistry

from stats.schema import (
    BUILD_KEY,
    CAMERA_ERROR_KEY,
    CAMERA_LATENCY_KEY,
    CAMERA_SEEN_KEY,
    CAMERA_UP_KEY,
    CROPS_KEY,
    FACES_KEY,
    FRAME_OUTCOMES,
    FRAMES_KEY,
    INGESTERS_KEY,
    LAST_FRAME_KEY,
    NO_SITE,
    PEOPLE_KEY,
    RECONNECTS_KEY,
    REMOVED_KEY,
    SITE_KEY,
    STAGE_BUCKETS,
    STAGES,
    STAGES_KEY,
    VISIBLE_KEY,
    field,
)
from stats.snapshot import camera_error, clean_counts

STALE_AFTER_SECONDS = 30.0
CLASS_LABELS = ["camera", "zone", "mask_class"]
PER_CAMERA_KEYS = (
    FACES_KEY,
    PEOPLE_KEY,
    VISIBLE_KEY,
    FRAMES_KEY,
    CAMERA_UP_KEY,
    CAMERA_SEEN_KEY,
    RECONNECTS_KEY,
    SITE_KEY,
    CAMERA_ERROR_KEY,
    LAST_FRAME_KEY,
)


def without_removed(counts: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The snapshot less every field of the cameras removed from the config and not run again since."""
    removed = set(counts.get(REMOVED_KEY, {})) - set(counts.get(CAMERA_UP_KEY, {}))
    if not removed:
        return counts
    kept = dict(counts)
    for key in PER_CAMERA_KEYS:
        kept[key] = {name: value for name, value in counts.get(key, {}).items() if name.split("|")[0] not in removed}
    return kept


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
    counts = without_removed(counts)
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
    errors = _error_family(counts.get(CAMERA_ERROR_KEY, {}), seen, now)
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
        "People, each counted once (when they leave, or after tracking.decide_after_seconds in view) with the mask "
        "position most of their frames show",
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
    stages = _histogram(
        "binarycop_stage_duration_seconds", "Time per frame in each pipeline stage", "stage", STAGES, counts, STAGES_KEY
    )
    latency = _histogram(
        "binarycop_camera_latency_seconds",
        "Time from a frame's capture to its counts, per camera (the end_to_end stage by camera)",
        "camera",
        sorted({name.split("|", 1)[0] for name in counts.get(CAMERA_LATENCY_KEY, {})}),
        counts,
        CAMERA_LATENCY_KEY,
    )
    info = GaugeMetricFamily(
        "binarycop_camera_info", "Each camera's site, for grouping by site (join on camera)", labels=["camera", "site"]
    )
    sites = counts.get(SITE_KEY, {})
    for camera in sorted(set(sites) | set(counts.get(CAMERA_UP_KEY, {}))):
        info.add_metric([camera, sites.get(camera, NO_SITE)], 1.0)
    ingesters = GaugeMetricFamily("binarycop_ingesters", "Ingester processes with a recent heartbeat")
    beats = counts.get(INGESTERS_KEY, {}).values()
    ingesters.add_metric([], float(sum(now - float(seen) < STALE_AFTER_SECONDS for seen in beats)))
    return [faces, people, visible, frames, up, errors, reconnects, stages, latency, crops, build, info, ingesters]


def _error_family(stored: dict[str, str], seen: dict[str, str], now: float) -> GaugeMetricFamily:
    """``binarycop_camera_error_info``: each reported camera's current error reason (stale ones left out)."""
    errors = GaugeMetricFamily(
        "binarycop_camera_error_info",
        "1 for each camera with an error now, by reason (why it delivers no frames; file_ended: its file was read)",
        labels=["camera", "reason"],
    )
    for camera, value in sorted(stored.items()):
        error = camera_error(value)
        if error is not None and now - float(seen.get(camera, 0)) < STALE_AFTER_SECONDS:
            errors.add_metric([camera, error["reason"]], 1.0)
    return errors


def _histogram(name: str, documentation: str, label: str, values, counts: dict, key: str) -> HistogramMetricFamily:
    """A histogram family over STAGE_BUCKETS from one Redis hash of ``value|bucket-index``, ``value|sum_us`` and
    ``value|count`` fields, one series per label value that has observations."""
    histogram = HistogramMetricFamily(name, documentation, labels=[label])
    stored = counts.get(key, {})
    for value in values:
        count = int(stored.get(f"{value}|count", 0))
        if not count:
            continue
        cumulative, buckets = 0, []
        for index, bound in enumerate((*STAGE_BUCKETS, float("inf"))):
            cumulative += int(stored.get(f"{value}|{index}", 0))
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(cumulative)))
        histogram.add_metric([value], buckets, sum_value=int(stored.get(f"{value}|sum_us", 0)) / 1e6)
    return histogram


MAIN_PROCESS = "main"  # the process serving /metrics, in the per-process gauges' ``process`` label

# What an ingester serves of its own while Redis is away: its cameras' gauges (counters stay with Redis, so no
# counter ever restarts from 0)
LOCAL_FAMILIES = {
    "binarycop_camera_up",
    "binarycop_camera_error_info",
    "binarycop_camera_info",
    "binarycop_faces_visible",
}


class SnapshotCollector:
    """A collector over the latest snapshot (refreshed by the server before each exposition), plus
    what only this process knows: counts waiting for Redis, whether Redis answered, and for an ingester
    (``local`` given: its own gauges, :meth:`stats.redis_store.CountRecorder.local_counts`) that it is alive and,
    while Redis is away, its cameras' up, errors and sites."""

    def __init__(self, pending=lambda: 0, local=None, refused=dict, peers=dict):
        """``local()``: this process's own camera gauges, served while Redis is away; ``refused()``: batches Redis
        refused, by key (see :class:`stats.batches.BatchRefused`); ``peers()``: the same of each helper process this
        one runs, by process (``{"helper-1": {"pending": 3, "refused": {key: times}, "gauges": {key: {field:
        value}}}}``), its cameras' gauges served with this process's own while Redis is away."""
        self.counts: dict[str, dict[str, str]] = {}
        self.redis_up = True
        self.bad_values = 0  # values read from Redis and skipped, since this process started
        self._pending = pending
        self._local = local
        self._refused = refused
        self._peers = peers

    def collect(self):
        peers = self._peers()
        if self.redis_up:
            yield from metric_families(self.counts)
        elif self._local is not None:
            local = self._local()
            for report in peers.values():  # its helper processes' cameras (binarycop.ingesters)
                for key, fields in report.get("gauges", {}).items():
                    local.setdefault(key, {}).update(fields)
            yield from (family for family in metric_families(local) if family.name in LOCAL_FAMILIES)
        if self._local is not None:
            alive = GaugeMetricFamily(
                "binarycop_ingester_up", "1 from each running ingester's own /metrics, whether Redis answers or not"
            )
            alive.add_metric([], 1.0)
            yield alive
        processes = {MAIN_PROCESS: {"pending": self._pending(), "refused": self._refused()}, **peers}
        pending = GaugeMetricFamily(
            "binarycop_counts_pending",
            "Counts held because Redis has not taken them yet, by process (main: the one serving this, helper-N: "
            "its helper ingesters)",
            labels=["process"],
        )
        for process, report in processes.items():
            pending.add_metric([process], float(report["pending"]))
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
            labels=["process", "key"],
        )
        for process, report in processes.items():
            for key, times in sorted(report["refused"].items()):
                refused.add_metric([process, key], float(times))
        yield refused


def make_registry(
    pending=lambda: 0, local=None, refused=dict, peers=dict
) -> tuple[CollectorRegistry, SnapshotCollector]:
    """The registry ``/metrics`` serves: the counts' collector (``local``: this process's own camera gauges, served
    while Redis is away; ``refused``: the batches Redis refused; ``peers``: its helper processes' reports), and
    prometheus_client's own process (``process_*``: resident memory, CPU seconds, open files), platform
    (``python_info``) and garbage-collector collectors."""
    registry = CollectorRegistry(auto_describe=False)
    collector = SnapshotCollector(pending, local, refused, peers)
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry, collector
