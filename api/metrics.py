"""Prometheus metrics of one app instance (its own registry, so several apps can live in a process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core.db import PoolUsage

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _DerivedCollector(Collector):
    """Cache hit ratio and per-shard pool usage, computed at scrape time."""

    def __init__(self, metrics: Metrics, pool_usage: Callable[[], list[PoolUsage]]) -> None:
        self.metrics = metrics
        self.pool_usage = pool_usage

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ratio = GaugeMetricFamily(
            "lakehouse_cache_hit_ratio", "Cache hits / (hits + misses) since start, per cache", labels=["cache"]
        )
        for cache, (hits, misses) in self.metrics.cache_counts().items():
            total = hits + misses
            ratio.add_metric([cache], hits / total if total else 0.0)
        yield ratio
        pools = GaugeMetricFamily(
            "lakehouse_db_pool_connections", "Connections of each shard pool by state", labels=["shard", "state"]
        )
        for usage in self.pool_usage():
            shard = str(usage.shard)
            pools.add_metric([shard, "open"], usage.size)
            pools.add_metric([shard, "idle"], usage.available)
            pools.add_metric([shard, "in_use"], usage.size - usage.available)
            pools.add_metric([shard, "waiting"], usage.waiting)
            pools.add_metric([shard, "max"], usage.max_size)
        yield pools


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_latency = Histogram(
            "lakehouse_http_request_duration_seconds",
            "Request latency by route template, method and status",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cache_requests = Counter(
            "lakehouse_cache_requests",
            "Cache-aside lookups by cache and result (hit, miss, error, bypass)",
            ["cache", "result"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "lakehouse_rate_limit_rejections",
            "Requests refused with 429, by bucket scope",
            ["scope"],
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "lakehouse_redis_errors",
            "Redis operations that failed, by operation (the API degraded to PostgreSQL or failed open)",
            ["operation"],
            registry=self.registry,
        )
        self.redis_up = Gauge("lakehouse_redis_up", "1 while Redis answers, 0 while degraded", registry=self.registry)
        self.redis_up.set(1)
        self.analytics_dropped = Counter(
            "lakehouse_analytics_events_dropped_total",
            "Analytics events dropped because the buffer was full (Kafka unreachable for long)",
            registry=self.registry,
        )
        self.ws_connections = Gauge("lakehouse_ws_connections", "Open notification WebSockets", registry=self.registry)

    def attach_pools(self, pool_usage: Callable[[], list[PoolUsage]]) -> None:
        self.registry.register(_DerivedCollector(self, pool_usage))

    def cache_counts(self) -> dict[str, tuple[float, float]]:
        counts: dict[str, list[float]] = {}
        for metric in self.cache_requests.collect():
            for sample in metric.samples:
                if not sample.name.endswith("_total"):
                    continue
                cache, result = sample.labels["cache"], sample.labels["result"]
                pair = counts.setdefault(cache, [0.0, 0.0])
                if result == "hit":
                    pair[0] += sample.value
                elif result in ("miss", "error"):
                    pair[1] += sample.value
        return {cache: (hits, misses) for cache, (hits, misses) in counts.items()}
