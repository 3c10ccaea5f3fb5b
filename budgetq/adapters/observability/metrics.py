"""Prometheus metrics of workers and the scheduler, and the HTTP endpoint that exposes them.

Each process serves its own registry on ``BUDGETQ_METRICS_PORT`` (workers run the threads pool: one
process, one registry). Counters are per process; Prometheus sums them across workers. Queue depth is
read from the broker at scrape time, so it is right even when no task is running.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("budgetq.metrics")

CALLS = Counter(
    "budgetq_llm_calls",
    "Messages API attempts, by model and outcome (ok, retryable_error, error, prompt_too_long, spend_limit).",
    ["model", "outcome"],
)
TOKENS = Counter(
    "budgetq_llm_tokens",
    "Tokens of answered attempts, by model and kind (input, cache_write, cache_read, output).",
    ["model", "kind"],
)
COST = Counter(
    "budgetq_llm_cost_usd",
    "Cost of the attempts at list price, in USD, by model and whether it was billed.",
    ["model", "billed"],
)
RETRIES = Counter("budgetq_llm_retries", "Attempts after a batch's first attempt, by model.", ["model"])
UTILIZATION = Histogram(
    "budgetq_llm_call_utilization",
    "(billed input + max_tokens) / context window of each answered attempt; the guard is 0.75.",
    ["model"],
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0),
)
LATENCY = Histogram(
    "budgetq_llm_call_seconds",
    "Wall time of each attempt, by model.",
    ["model"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120, 300),
)
LEASE_EXPIRIES = Counter(
    "budgetq_lease_expiries",
    "Batch leases that expired: lost by a worker (source=worker) or reclaimed by the reaper (source=reaper).",
    ["source"],
)
RATE_LIMIT_WAITS = Counter(
    "budgetq_rate_limit_waits",
    "Times a call waited for the rate limit: our shared limiter (source=limiter) or an API 429 (source=api).",
    ["source"],
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "budgetq_rate_limit_wait_seconds",
    "Seconds spent waiting for the rate limit (for API 429s: the retry-after the server asked for).",
    ["source"],
)
BATCHES = Counter(
    "budgetq_batches",
    "Batches a worker finished processing, by what happened (succeeded, split, …).",
    ["result"],
)


@dataclass(frozen=True)
class AttemptFigures:
    """What one attempt did, as the metrics need it (no SDK or ORM types)."""

    model: str
    outcome: str
    retry: bool
    seconds: float
    billed: bool
    cost_usd: float
    input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0
    utilization: float | None = None
    http_status: int | None = None
    retry_after_s: float | None = None


def observe_attempt(a: AttemptFigures) -> None:
    """Count one attempt: its outcome, tokens, cost, utilization, latency and any 429 wait."""
    CALLS.labels(a.model, a.outcome).inc()
    if a.retry:
        RETRIES.labels(a.model).inc()
    LATENCY.labels(a.model).observe(max(a.seconds, 0.0))
    COST.labels(a.model, "true" if a.billed else "false").inc(a.cost_usd)
    for kind, n in (
        ("input", a.input_tokens),
        ("cache_write", a.cache_write_tokens),
        ("cache_read", a.cache_read_tokens),
        ("output", a.output_tokens),
    ):
        if n:
            TOKENS.labels(a.model, kind).inc(n)
    if a.utilization is not None:
        UTILIZATION.labels(a.model).observe(a.utilization)
    if a.http_status == 429:
        observe_rate_limit_wait("api", a.retry_after_s or 0.0)


def observe_rate_limit_wait(source: str, seconds: float) -> None:
    """Count one wait for the rate limit and how long it was."""
    RATE_LIMIT_WAITS.labels(source).inc()
    RATE_LIMIT_WAIT_SECONDS.labels(source).inc(max(seconds, 0.0))


def observe_lease_expiry(source: str, n: int = 1) -> None:
    """Count ``n`` expired leases (``worker``: this worker lost one; ``reaper``: it reclaimed them)."""
    if n:
        LEASE_EXPIRIES.labels(source).inc(n)


def observe_batch(result: str) -> None:
    """Count one batch processed, by its result word (succeeded, partial, split, released, failed …)."""
    BATCHES.labels(result).inc()


class QueueDepthCollector(Collector):
    """``budgetq_queue_depth{queue}``: messages waiting in each broker queue, read when scraped."""

    def __init__(self, depths: Callable[[], Iterable[tuple[str, int]]]) -> None:
        self._depths = depths

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Read the depths now; a broker that does not answer leaves the gauge out of this scrape."""
        family = GaugeMetricFamily(
            "budgetq_queue_depth", "Messages waiting in a broker queue.", labels=["queue"]
        )
        try:
            for queue, depth in self._depths():
                family.add_metric([queue], depth)
        except Exception:  # noqa: BLE001 - a scrape must not fail because the broker is away
            log.warning("queue depth unavailable", exc_info=True)
            return
        yield family


def redis_queue_depths(redis_url: str, queues: tuple[str, ...]) -> Callable[[], list[tuple[str, int]]]:
    """A reader of the lengths of Celery's Redis lists for ``queues``."""
    import redis

    client = redis.Redis.from_url(redis_url.replace("redis+socket://", "unix://"), socket_timeout=2)

    def depths() -> list[tuple[str, int]]:
        return [(q, int(client.llen(q))) for q in queues]

    return depths


_served: set[int] = set()


def serve(
    port: int, redis_url: str | None = None, queues: tuple[str, ...] = (), *, host: str = "127.0.0.1"
) -> None:
    """Expose this process's metrics on ``host``:``port`` (once per port), with queue depth when a Redis
    is given; the default host is this machine only."""
    if port in _served:
        return
    if redis_url and queues and redis_url.startswith(("redis://", "rediss://", "redis+socket://", "unix://")):
        REGISTRY.register(QueueDepthCollector(redis_queue_depths(redis_url, queues)))
    start_http_server(port, addr=host)
    _served.add(port)
    log.info("metrics on %s:%s", host, port, extra={"event": "metrics_started", "port": port, "host": host})
