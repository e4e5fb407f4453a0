"""``/metrics`` from what is in Redis: a custom collector, so any number of exporters agree
and totals survive ingester restarts."""

from __future__ import annotations

import time

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

from stats.redis_store import (
    BUILD_KEY,
    CAMERA_SEEN_KEY,
    CAMERA_UP_KEY,
    FACES_KEY,
    FRAMES_KEY,
    PEOPLE_KEY,
    RECONNECTS_KEY,
    VISIBLE_KEY,
)

STALE_AFTER_SECONDS = 30.0


def metric_families(counts: dict[str, dict[str, str]], now: float | None = None) -> list:
    """Prometheus metric families for a snapshot read by :func:`stats.redis_store.read_counts`."""
    now = time.time() if now is None else now
    faces = CounterMetricFamily(
        "binarycop_faces_classified",
        "Faces classified, per frame, by mask position",
        labels=["camera", "zone", "mask_class"],
    )
    for name, value in sorted(counts.get(FACES_KEY, {}).items()):
        faces.add_metric(name.split("|"), float(value))
    frames = CounterMetricFamily(
        "binarycop_frames", "Frames sampled for detection, by outcome", labels=["camera", "outcome"]
    )
    for name, value in sorted(counts.get(FRAMES_KEY, {}).items()):
        frames.add_metric(name.split("|"), float(value))
    up = GaugeMetricFamily("binarycop_camera_up", "1 while the camera delivers frames", labels=["camera"])
    seen = counts.get(CAMERA_SEEN_KEY, {})
    for camera, value in sorted(counts.get(CAMERA_UP_KEY, {}).items()):
        fresh = now - float(seen.get(camera, 0)) < STALE_AFTER_SECONDS
        up.add_metric([camera], 1.0 if value == "1" and fresh else 0.0)
    reconnects = CounterMetricFamily(
        "binarycop_camera_reconnects", "Times a stream was reopened after a stall or disconnect", labels=["camera"]
    )
    for camera, value in sorted(counts.get(RECONNECTS_KEY, {}).items()):
        reconnects.add_metric([camera], float(value))
    people = CounterMetricFamily(
        "binarycop_people",
        "People counted once each when their track is confirmed, by mask position",
        labels=["camera", "zone", "mask_class"],
    )
    for name, value in sorted(counts.get(PEOPLE_KEY, {}).items()):
        people.add_metric(name.split("|"), float(value))
    visible = GaugeMetricFamily(
        "binarycop_faces_visible",
        "Faces in view now (confirmed tracks), by mask position",
        labels=["camera", "zone", "mask_class"],
    )
    for name, value in sorted(counts.get(VISIBLE_KEY, {}).items()):
        camera = name.split("|", 1)[0]
        if now - float(seen.get(camera, 0)) < STALE_AFTER_SECONDS:
            visible.add_metric(name.split("|"), float(value))
    build = GaugeMetricFamily(
        "binarycop_build_info",
        "Version, classifier backend and model of running ingesters",
        labels=["version", "backend", "model"],
    )
    for name, reported in sorted(counts.get(BUILD_KEY, {}).items()):
        if now - float(reported) < STALE_AFTER_SECONDS:
            build.add_metric(name.split("|"), 1.0)
    return [faces, people, visible, frames, up, reconnects, build]


class SnapshotCollector:
    """A collector over the latest snapshot (refreshed by the server before each exposition)."""

    def __init__(self):
        self.counts: dict[str, dict[str, str]] = {}

    def collect(self):
        yield from metric_families(self.counts)


def make_registry() -> tuple[CollectorRegistry, SnapshotCollector]:
    registry = CollectorRegistry(auto_describe=False)
    collector = SnapshotCollector()
    registry.register(collector)
    return registry, collector
