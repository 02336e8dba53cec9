"""Prometheus metrics, one registry per app (so that several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
FIRST_BYTE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class _PoolCollector(Collector):
    def __init__(self) -> None:
        self.pool: asyncpg.Pool | None = None

    def collect(self) -> Iterable[Metric]:
        size = GaugeMetricFamily(
            "learner_export_pool_connections", "Database connections of the pool", labels=["state"]
        )
        if self.pool is not None:
            total, idle = self.pool.get_size(), self.pool.get_idle_size()
            size.add_metric(["in_use"], total - idle)
            size.add_metric(["idle"], idle)
            size.add_metric(["max"], self.pool.get_max_size())
        yield size


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.in_flight = Gauge(
            "learner_export_exports_in_flight", "Exports streaming now", ["format"], registry=r
        )
        self.exports = Counter(
            "learner_export_exports", "Exports ended, by outcome", ["format", "outcome"], registry=r
        )
        self.rows = Counter("learner_export_rows", "Rows sent", ["format"], registry=r)
        self.bytes = Counter(
            "learner_export_bytes", "Bytes sent (after compression)", ["format"], registry=r
        )
        self.duration = Histogram(
            "learner_export_duration_seconds",
            "From request to the end of the export",
            ["format"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.first_byte = Histogram(
            "learner_export_first_byte_seconds",
            "From request to the first body bytes",
            ["format"],
            buckets=FIRST_BYTE_BUCKETS,
            registry=r,
        )
        self.failures = Counter(
            "learner_export_failures",
            "Exports that failed, before or after streaming started",
            ["kind"],
            registry=r,
        )
        self._pool = _PoolCollector()
        r.register(self._pool)

    def watch_pool(self, pool: asyncpg.Pool) -> None:
        self._pool.pool = pool
