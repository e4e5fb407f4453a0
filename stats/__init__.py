"""Counts out: Redis as the aggregation bus, Prometheus exposition from it."""

from stats.exporter import SnapshotCollector, make_registry, metric_families
from stats.redis_store import DEFAULT_ZONE, CountRecorder, read_counts

__all__ = ["DEFAULT_ZONE", "CountRecorder", "SnapshotCollector", "make_registry", "metric_families", "read_counts"]
