"""Counts out: Redis as the aggregation bus, Prometheus exposition from it."""

from stats.exporter import SnapshotCollector, make_registry, metric_families
from stats.redis_store import CountRecorder, read_counts
from stats.schema import DEFAULT_ZONE

__all__ = ["DEFAULT_ZONE", "CountRecorder", "SnapshotCollector", "make_registry", "metric_families", "read_counts"]
