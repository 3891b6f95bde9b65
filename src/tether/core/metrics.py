"""What the server counts, in Prometheus' terms (served at `GET /metrics`).

Per transport (`http`, `ws`): responses by final status, prefilled and cached input tokens, each
turn's cache-hit ratio (cached / input tokens), its duration and its time to first output. Steers
by outcome. From the backend: bytes of KV snapshots held and snapshots evicted. From the
WebSocket shell: open connections. At scrape time: responses running, warm-ups answered whose
prefill still runs, asyncio tasks alive and the process's own figures (resident memory, CPU, open
files), which show a leak as a level that does not come back down. One registry per server, so
tests and several apps in one process do not collide.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tether.backends.base import CacheStats
from tether.protocol.response import Usage

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_RATIOS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.responses = Counter(
            "tether_responses", "Responses finished, by final status.", ["transport", "status"], registry=r
        )
        self.prefilled = Counter(
            "tether_prefilled_tokens", "Input tokens the model had to prefill.", ["transport"], registry=r
        )
        self.cached = Counter(
            "tether_cached_tokens", "Input tokens found already in the cache.", ["transport"], registry=r
        )
        self.hit_ratio = Histogram(
            "tether_turn_cache_hit_ratio",
            "Cached / input tokens of a turn.",
            ["transport"],
            buckets=_RATIOS,
            registry=r,
        )
        self.turn_seconds = Histogram(
            "tether_turn_seconds",
            "From response.created to the terminal event.",
            ["transport"],
            buckets=_SECONDS,
            registry=r,
        )
        self.first_output_seconds = Histogram(
            "tether_time_to_first_token_seconds",
            "From response.created to the first output delta.",
            ["transport"],
            buckets=_SECONDS,
            registry=r,
        )
        self.steers = Counter(
            "tether_steers",
            "Steers (WebSocket response.steer) by what became of them: accepted, then pending "
            "(waiting for tool output) and committed (a successor started with them), or the "
            "code of their failure.",
            ["outcome"],
            registry=r,
        )
        self.cache_misses = Counter(
            "tether_cache_misses",
            "Turns that missed the cache of the response they were compared with "
            "(prompt_cache_diagnostics), by reason.",
            ["reason"],
            registry=r,
        )
        self.websocket_connections = Gauge(
            "tether_websocket_connections", "Open WebSocket connections.", registry=r
        )
        ProcessCollector(registry=r)

    def turn_finished(
        self, transport: str, status: str, usage: Usage | None, seconds: float, first_output_s: float | None
    ) -> None:
        self.responses.labels(transport, status).inc()
        self.turn_seconds.labels(transport).observe(seconds)
        if first_output_s is not None:
            self.first_output_seconds.labels(transport).observe(first_output_s)
        if usage is not None and usage.input_tokens > 0:
            self.prefilled.labels(transport).inc(usage.input_tokens - usage.cached_tokens)
            self.cached.labels(transport).inc(usage.cached_tokens)
            self.hit_ratio.labels(transport).observe(usage.cached_tokens / usage.input_tokens)

    def cache_missed(self, reason: str) -> None:
        self.cache_misses.labels(reason).inc()

    def steered(self, outcome: str) -> None:
        self.steers.labels(outcome).inc()

    def watch_backend(self, stats: Callable[[], CacheStats]) -> None:
        self.registry.register(_BackendCollector(stats))

    def watch_running(self, running: Callable[[], int], prefilling: Callable[[], int]) -> None:
        self.registry.register(_RuntimeCollector(running, prefilling))

    def watch_loop_lag(self, seconds: Callable[[], float]) -> None:
        """The event loop's lag, which admission refuses new work by (`server/loop_lag.py`)."""

        def read() -> Metric:
            help_text = "How late this process's event loop runs (median, last second)."
            return GaugeMetricFamily("tether_event_loop_lag_seconds", help_text, value=seconds())

        self.registry.register(_Reading(read))


class _RuntimeCollector(Collector):
    """Reads what is alive inside the server at scrape time (scrapes run on the event loop)."""

    def __init__(self, running: Callable[[], int], prefilling: Callable[[], int]) -> None:
        self.running = running
        self.prefilling = prefilling

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("tether_running_responses", "Responses not yet ended.", value=self.running())
        yield GaugeMetricFamily(
            "tether_warm_up_prefills", "Warm-ups answered whose prefill still runs.", value=self.prefilling()
        )
        yield GaugeMetricFamily("tether_asyncio_tasks", "Tasks alive on the event loop.", value=_tasks())


class _Reading(Collector):
    """One metric, read at scrape time."""

    def __init__(self, read: Callable[[], Metric]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        yield self.read()


def _tasks() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # no loop in this thread (a scrape from elsewhere)
        return 0


class _BackendCollector(Collector):
    """Reads the backend's cache figures at scrape time."""

    def __init__(self, stats: Callable[[], CacheStats]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self.stats()
        yield GaugeMetricFamily(
            "tether_kv_snapshot_bytes",
            "Bytes of KV snapshots held for idle conversations.",
            value=stats.snapshot_bytes,
        )
        yield GaugeMetricFamily("tether_kv_snapshots", "KV snapshots held.", value=stats.snapshots)
        yield CounterMetricFamily(
            "tether_kv_snapshot_evictions",
            "KV snapshots evicted or too large to keep.",
            value=stats.evictions,
        )
        yield CounterMetricFamily(
            "tether_kv_snapshot_early_evictions",
            "KV snapshots evicted for room before the ttl their request asked for "
            "(prompt_cache_options.ttl) had passed.",
            value=stats.early_evictions,
        )
        yield CounterMetricFamily(
            "tether_kv_snapshot_copied_bytes",
            "Bytes of KV copied out to snapshots and back into the context.",
            value=stats.snapshot_bytes_copied,
        )
        yield GaugeMetricFamily(
            "tether_kv_sequences_resident",
            "Conversations the engine's context holds.",
            value=stats.sequences_resident,
        )
        heads = CounterMetricFamily(
            "tether_prompt_heads",
            "Prompts by how the conversation they continue was found: by the parent's id, by "
            "content (the longest shared history), or none (rendered whole); and where it was left: "
            "on the same WebSocket connection, or another (or HTTP).",
            labels=["found", "connection"],
        )
        for found, left, count in stats.prompt_heads:
            heads.add_metric([found, left], count)
        yield heads
        yield GaugeMetricFamily(
            "tether_engine_threads",
            "CPU threads the embedded engine's steps run on now (as many as other work leaves cores).",
            value=stats.threads,
        )
