"""The distributed rate limit: a sliding-window log in Redis, shared by every worker process.

Each admitted request is an entry in a sorted set scored by the Redis server's clock (one clock for
all hosts), with its cost in requests, input tokens and output tokens; running sums per dimension
are kept beside it. One Lua script expires old entries, checks every limit and either records the
request or answers how long until enough of the window frees up: admission is atomic across
workers, and a refused worker sleeps exactly that long instead of polling. After the reply, the
entry is corrected to what the request really counted (output reserved at ``max_tokens`` becomes
the actual output; input becomes uncached input plus cache writes, cache reads excluded).

Cache reads do not count against the API's input limit, so a request whose prompt prefix (model,
tools, system prompt) the API holds in its cache reserves only the rest of its estimate: each reply
that read or wrote the cache notes the prefix's size in Redis for the cache's lifetime.

An entry stays in our window ``skew_s`` longer than the API's window, so a request admitted the
moment an old one leaves our window never reaches the API before that one leaves the API's.

A 429 that still happens (another client of the organisation, limits we were not told of) holds
the whole fleet: the worker that got it writes "nothing until T" in Redis (T from its
``retry-after``, else the reset of the limits it reports exhausted, at most ``max_hold_s``), and
the admission script makes every worker wait until T before it admits anything.

If Redis cannot be reached, ``acquire`` keeps trying and finally raises RateLimitUnavailableError:
the limiter blocks, it never lets requests through unchecked.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from redis.commands.core import Script

from budgetq.adapters.observability.metrics import observe_rate_limit_wait
from budgetq.adapters.ratelimit.cached_prefix import cache_ttl_seconds, prefix_key
from budgetq.adapters.ratelimit.scripts import ADMIT, HOLD, SETTLE
from budgetq.domain.limits import (
    DIMENSIONS,
    RateLimits,
    RequestCost,
    actual_cost,
    admission_cost,
    announced_limits,
    hold_off_seconds,
    unseen_usage,
)
from budgetq.domain.pricing import Usage
from budgetq.domain.statuses import CallOutcome
from budgetq.errors import RateLimitUnavailableError, RequestOverRateLimitError
from budgetq.settings import Settings

log = logging.getLogger("budgetq.ratelimit")

_DIM_KEYS = {"requests": "r", "input_tokens": "i", "output_tokens": "o"}


def redis_url_for_client(url: str) -> str:
    """A URL redis-py understands (kombu's ``redis+socket://`` is redis-py's ``unix://``)."""
    return url.replace("redis+socket://", "unix://", 1)


@dataclass(frozen=True)
class Ticket:
    """An admitted request's entry in the window."""

    entry_id: str
    cost: RequestCost


class _Attempt(Protocol):
    """What the limiter reads from an attempt (``budgetq.adapters.llm.client.Attempt`` has these)."""

    @property
    def usage(self) -> Usage | None: ...

    @property
    def http_status(self) -> int | None: ...

    @property
    def outcome(self) -> CallOutcome: ...

    @property
    def retry_after_s(self) -> float | None: ...


class RedisRateLimiter:
    """Requests, input and output tokens per window, for one model, across every worker."""

    def __init__(
        self,
        client: redis.Redis,
        model: str,
        limits: RateLimits,
        *,
        skew_s: float = 1.0,
        max_wait_s: float = 300.0,
        max_hold_s: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.limits = limits
        self.max_wait_s = max_wait_s
        self.max_hold_s = max_hold_s
        self._window_ms = int((limits.window_s + skew_s) * 1000)
        base = self._base = f"budgetq:ratelimit:{{{model}}}"
        self._keys = [f"{base}:log", f"{base}:costs", f"{base}:sums", f"{base}:learned"]
        self._hold_key = f"{base}:hold"
        self._admit: Script = client.register_script(ADMIT)
        self._settle: Script = client.register_script(SETTLE)
        self._hold: Script = client.register_script(HOLD)
        self._sleep, self._clock = sleep, clock
        self._local = threading.local()

    @classmethod
    def from_settings(cls, settings: Settings, model: str) -> RedisRateLimiter:
        """The limiter for ``model`` on the configured Redis (the broker's unless set apart)."""
        url = settings.rate_limit_redis_url or settings.redis_url
        if not url:
            raise RateLimitUnavailableError("no Redis for the rate limit: set BUDGETQ_REDIS_URL")
        client = redis.Redis.from_url(
            redis_url_for_client(url),
            socket_timeout=5,
            socket_connect_timeout=2,
            health_check_interval=10,
        )
        limits = RateLimits(
            requests=settings.rate_limit_rpm,
            input_tokens=settings.rate_limit_input_tpm,
            output_tokens=settings.rate_limit_output_tpm,
            window_s=settings.rate_limit_window_s,
        )
        return cls(
            client,
            model,
            limits,
            skew_s=settings.rate_limit_skew_s,
            max_wait_s=settings.rate_limit_max_wait_s,
            # A longer retry-after sends the batch back to the queue (adapters/llm/retries); a hold never
            # outlasts one wait, so a held batch waits instead of bouncing through the queue.
            max_hold_s=min(settings.retry_after_cap_s, settings.rate_limit_max_wait_s),
        )

    def acquire(self, cost: RequestCost, cached_prefix_key: str | None = None) -> Ticket:
        """Wait until ``cost`` fits every limit and record it; raise when Redis stays unreachable.

        ``cached_prefix_key`` names the request's cacheable prompt prefix: while the API holds it in
        its cache, the tokens it will read from there are not reserved as input.
        """
        entry_id = uuid.uuid4().hex
        deadline = self._clock() + self.max_wait_s
        backoff = 0.05
        while True:
            try:
                outcome, value = self._run_admit(cost, entry_id, cached_prefix_key)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if self._clock() >= deadline:
                    raise RateLimitUnavailableError(
                        f"the rate limiter's Redis was unreachable for {self.max_wait_s:.1f}s ({exc}); "
                        "no request was sent. Bring Redis back; the batch will be retried"
                    ) from exc
                log.warning("rate limiter: Redis unreachable (%s); waiting, not sending", exc)
                self._sleep(min(backoff, max(0.0, deadline - self._clock())))
                backoff = min(backoff * 2, 2.0)
                continue
            if outcome == 1:
                return Ticket(entry_id, cost)
            if outcome == -1:
                dimension = DIMENSIONS[value - 1]
                raise RequestOverRateLimitError(
                    f"a request needing {cost.of(dimension)} {dimension} can never fit the limit of "
                    f"{self.limits.of(dimension)} per {self.limits.window_s:.0f}s; lower max_tokens or the "
                    "batch size, or raise the limit"
                )
            if self._clock() + value / 1000 > deadline:
                raise RateLimitUnavailableError(
                    f"waited {self.max_wait_s:.0f}s for the rate limit without a free slot; "
                    "the batch will be retried"
                )
            observe_rate_limit_wait("held" if outcome == 2 else "limiter", value / 1000)
            self._sleep(value / 1000)

    def _run_admit(
        self, cost: RequestCost, entry_id: str, cached_prefix_key: str | None, *, unchecked: bool = False
    ) -> tuple[int, int]:
        limits = [-1, -1, -1] if unchecked else [self.limits.of(d) for d in DIMENSIONS]
        args: list[Any] = [self._window_ms, *[-1 if v is None else v for v in limits]]
        args += [cost.requests, cost.input_tokens, cost.output_tokens, entry_id, self._window_ms * 2]
        # Unchecked: recorded whatever the limits say, so neither learned limits nor a hold apply.
        learned = self._keys[3] + (":none" if unchecked else "")
        hold = self._hold_key + (":none" if unchecked else "")
        cached = self._cached_key(cached_prefix_key)
        outcome, value = self._admit(keys=[*self._keys[:3], learned, cached, hold], args=args)
        return int(outcome), int(value)

    def _cached_key(self, prefix_key: str | None) -> str:
        return f"{self._base}:cached:{prefix_key or 'none'}"

    def settle(self, ticket: Ticket, cost: RequestCost) -> None:
        """Correct an admitted request's entry to what it really counted (best effort)."""
        try:
            self._settle(
                keys=self._keys[1:3],
                args=[ticket.entry_id, cost.requests, cost.input_tokens, cost.output_tokens],
            )
        except redis.RedisError as exc:
            # The entry keeps its reservation, which is never less than the truth: safe to leave.
            log.warning("rate limiter: could not correct an entry (%s); it keeps its reservation", exc)

    def hold(self, seconds: float) -> float:
        """Admit nothing, for every worker, for ``seconds`` (at most ``max_hold_s``; a later hold
        already set stays); return the seconds the hold now lasts, 0 if Redis could not be told."""
        milliseconds = int(min(seconds, self.max_hold_s) * 1000)
        if milliseconds <= 0:
            return 0.0
        try:
            left = int(self._hold(keys=[self._hold_key], args=[milliseconds]))
        except redis.RedisError as exc:
            # This worker's own retry still waits for the retry-after; only the others are not told.
            log.warning("rate limiter: could not hold the other workers after a 429 (%s)", exc)
            return 0.0
        log.warning("rate limiter: the API answered 429; no worker sends for %.1fs", left / 1000)
        return left / 1000

    def remember_cached(self, prefix_key: str, tokens: int, ttl_s: float) -> None:
        """Note that the API now holds ``tokens`` of a prompt prefix in its cache for ``ttl_s``."""
        try:
            self.client.set(self._cached_key(prefix_key), tokens, px=int(ttl_s * 1000))
        except redis.RedisError as exc:
            log.warning("rate limiter: could not note a cached prefix (%s)", exc)

    def learn(self, headers: Mapping[str, str] | None) -> None:
        """Adopt the limits the API announces, and count usage it sees that our window does not."""
        announced = announced_limits(headers)
        if not announced:
            return
        try:
            sums = self.client.hgetall(self._keys[2])
            pipe = self.client.pipeline()
            for a in announced:
                pipe.hset(self._keys[3], _DIM_KEYS[a.dimension], a.limit)
            pipe.pexpire(self._keys[3], 3_600_000)
            pipe.execute()
            for a in announced:
                counted = int(sums.get(_DIM_KEYS[a.dimension].encode(), 0))
                unseen = unseen_usage(a, counted)
                if unseen:
                    cost = RequestCost(**{d: unseen if d == a.dimension else 0 for d in DIMENSIONS})
                    self._run_admit(cost, "unseen-" + uuid.uuid4().hex, None, unchecked=True)
        except redis.RedisError as exc:
            log.warning("rate limiter: could not record the API's limits (%s)", exc)

    # --- the gate hook of BudgetAwareLLMClient ----------------------------------------------

    def before_attempt(self, request: Any) -> None:
        """Acquire the request's admission cost before an HTTP attempt (blocks until it fits)."""
        cost = admission_cost(request.estimated_input_tokens, request.max_tokens)
        self._local.ticket = self.acquire(cost, prefix_key(request))

    def cancel(self, request: Any) -> None:
        """Give back the admission of an attempt that was never sent."""
        ticket: Ticket | None = getattr(self._local, "ticket", None)
        self._local.ticket = None
        if ticket is not None:
            self.settle(ticket, RequestCost(0, 0, 0))

    def after_attempt(self, request: Any, attempt: _Attempt) -> None:
        """Correct the entry to the attempt's actual usage, note a cached prefix, learn from headers;
        after a 429, hold every worker for as long as the API asks."""
        ticket: Ticket | None = getattr(self._local, "ticket", None)
        self._local.ticket = None
        if ticket is not None and (attempt.usage is not None or attempt.http_status is not None):
            # A reply arrived: count what it says. No reply (dropped, timed out): keep the reservation.
            self.settle(ticket, actual_cost(attempt.usage))
        usage, key = attempt.usage, prefix_key(request)
        if usage is not None and key is not None:
            cached = usage.cache_read + usage.cache_creation_5m + usage.cache_creation_1h
            if cached:
                self.remember_cached(key, cached, cache_ttl_seconds(request.cache_ttl))
        headers = getattr(attempt, "headers", None)
        self.learn(headers)
        # A spend-limit 429 is not about rate: waiting does not help, and the run stops anyway.
        if attempt.http_status == 429 and attempt.outcome is not CallOutcome.SPEND_LIMIT:
            seconds = hold_off_seconds(headers, attempt.retry_after_s, time.time())
            if seconds:
                self.hold(seconds)
