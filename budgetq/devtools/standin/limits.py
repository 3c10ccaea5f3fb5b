"""The stand-in's per-minute rate limits: ``RateLimits`` and the ``SlidingWindowLimiter`` enforcing them.

Requests, input tokens and output tokens per minute, like the API's, over a sliding window; the
limiter also writes the ``anthropic-ratelimit-*`` response headers.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from budgetq.devtools.standin.mapping import JSONDict, from_mapping


@dataclass
class RateLimits:
    """Per-minute limits like the API's (None: unlimited), over a sliding window of ``window_s``."""

    rpm_limit: int | None = None
    input_tpm_limit: int | None = None
    output_tpm_limit: int | None = None
    window_s: float = 60.0

    @property
    def enabled(self) -> bool:
        return any(v is not None for v in (self.rpm_limit, self.input_tpm_limit, self.output_tpm_limit))

    def to_dict(self) -> JSONDict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RateLimits:
        limits: RateLimits = from_mapping(cls, data)
        return limits


@dataclass
class _Usage:
    at: float
    requests: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Admission:
    admitted: bool
    ticket: _Usage | None = None
    retry_after: int = 0
    exceeded: str | None = None  # "requests", "input_tokens" or "output_tokens"


_DIMENSIONS = (
    ("requests", "rpm_limit"),
    ("input_tokens", "input_tpm_limit"),
    ("output_tokens", "output_tpm_limit"),
)


@dataclass
class SlidingWindowLimiter:
    """Admits a request when, over the last ``window_s`` seconds, requests, input tokens (uncached
    input plus cache writes) and output tokens (reserved at ``max_tokens``, settled to the actual
    count) stay within their limits."""

    limits: RateLimits
    clock: Callable[[], float] = time.monotonic
    _events: list[_Usage] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _prune(self, now: float) -> None:
        self._events = [e for e in self._events if e.at > now - self.limits.window_s]

    def try_admit(self, input_tokens: int, output_reserve: int) -> Admission:
        if not self.limits.enabled:
            # Nothing to enforce or report (set_limits makes a new limiter): keeping every event of
            # the window anyway cost a scan of thousands of them per call at the bench's rates.
            return Admission(True, ticket=_Usage(self.clock(), 1, input_tokens, output_reserve))
        with self._lock:
            now = self.clock()
            self._prune(now)
            want = _Usage(now, 1, input_tokens, output_reserve)
            waits: list[tuple[float, str]] = []
            for dim, limit_name in _DIMENSIONS:
                limit: int | None = getattr(self.limits, limit_name)
                wait = None if limit is None else self._wait(dim, getattr(want, dim), limit, now)
                if wait is not None:
                    waits.append((wait, dim))
            if waits:
                wait, dim = max(waits)
                return Admission(False, retry_after=max(1, math.ceil(wait)), exceeded=dim)
            self._events.append(want)
            return Admission(True, ticket=want)

    def _wait(self, dim: str, cost: int, limit: int, now: float) -> float | None:
        """Seconds until ``cost`` fits under ``limit``, or None if it fits now."""
        used = sum(getattr(e, dim) for e in self._events)
        if used + cost <= limit:
            return None
        if cost > limit:
            return self.limits.window_s
        freed = 0
        for event in self._events:  # oldest first
            freed += getattr(event, dim)
            if used - freed + cost <= limit:
                return event.at + self.limits.window_s - now
        return self.limits.window_s

    def settle(self, ticket: _Usage | None, output_tokens: int) -> None:
        with self._lock:
            if ticket is not None:
                ticket.output_tokens = output_tokens

    def reset(self) -> None:
        with self._lock:
            self._events.clear()

    def headers(self, exhausted: str | None = None, reset_in_s: float = 0.0) -> dict[str, str]:
        """The ``anthropic-ratelimit-*`` headers of the limits that are set, as the API sends them:
        ``-limit``, ``-remaining`` and ``-reset`` (RFC 3339, when the dimension is fully replenished)
        per dimension, and ``tokens-*`` for the most restrictive token limit. ``exhausted`` names a
        dimension to report spent for ``reset_in_s`` more seconds (a 429 not of this limiter's making)."""
        if not self.limits.enabled:
            return {}
        with self._lock:
            now = self.clock()
            self._prune(now)
            out: dict[str, str] = {}
            tightest: tuple[float, int, int, float] | None = None  # (share left, limit, left, reset)
            for dim, limit_name in _DIMENSIONS:
                limit: int | None = getattr(self.limits, limit_name)
                if limit is None:
                    continue
                used = sum(getattr(e, dim) for e in self._events)
                newest = max((e.at for e in self._events if getattr(e, dim)), default=None)
                reset_in = 0.0 if newest is None else max(0.0, newest + self.limits.window_s - now)
                left = max(0, limit - used)
                if dim == exhausted:
                    left, reset_in = 0, max(reset_in, reset_in_s)
                name = "anthropic-ratelimit-" + dim.replace("_", "-")
                out |= {f"{name}-limit": str(limit), f"{name}-remaining": str(left)}
                out[f"{name}-reset"] = _rfc3339(reset_in)
                if dim != "requests" and (tightest is None or left / limit < tightest[0]):
                    tightest = (left / limit, limit, left, reset_in)
            if tightest is not None:
                _, limit, left, reset_in = tightest
                out |= {"anthropic-ratelimit-tokens-limit": str(limit)}
                out |= {"anthropic-ratelimit-tokens-remaining": str(left)}
                out["anthropic-ratelimit-tokens-reset"] = _rfc3339(reset_in)
            return out


def _rfc3339(seconds_from_now: float) -> str:
    """An instant ``seconds_from_now`` ahead, rounded up to the second as the API writes it."""
    return datetime.fromtimestamp(math.ceil(time.time() + seconds_from_now), UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
