"""Rate limits with the Messages API's semantics, as plain values (the Redis limiter enforces them).

Three per-minute dimensions: requests, input tokens and output tokens. Input tokens are what the
API counts against its input limit: uncached input plus cache writes; cache reads do not count.
Output tokens are reserved at ``max_tokens`` when a request is admitted and corrected to the
actual count when its answer arrives. The API announces its own limits in ``anthropic-ratelimit-*``
response headers; a learned limit can only lower a configured one, never raise it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from budgetq.domain.pricing import Usage

DIMENSIONS = ("requests", "input_tokens", "output_tokens")
_HEADER_PREFIX = "anthropic-ratelimit-"
# The header families a 429 may report exhausted; ``tokens`` is the most restrictive token limit.
_HEADER_FAMILIES = ("requests", "tokens", "input-tokens", "output-tokens")


@dataclass(frozen=True)
class RateLimits:
    """Per-window limits (None: unlimited) over a sliding window of ``window_s`` seconds."""

    requests: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    window_s: float = 60.0

    def of(self, dimension: str) -> int | None:
        """The limit of one dimension."""
        value: int | None = getattr(self, dimension)
        return value

    @property
    def enabled(self) -> bool:
        """True when at least one dimension is limited."""
        return any(self.of(d) is not None for d in DIMENSIONS)


@dataclass(frozen=True)
class RequestCost:
    """What one request counts against the limits."""

    requests: int
    input_tokens: int
    output_tokens: int

    def of(self, dimension: str) -> int:
        """The cost in one dimension."""
        value: int = getattr(self, dimension)
        return value


def admission_cost(estimated_input_tokens: int, max_tokens: int) -> RequestCost:
    """What a request reserves before it is sent: its estimated input and all of ``max_tokens``."""
    return RequestCost(1, max(0, estimated_input_tokens), max(0, max_tokens))


def actual_cost(usage: Usage | None) -> RequestCost:
    """What a request really counted: uncached input plus cache writes (not reads), actual output.

    No usage (an error reply, a dropped connection) counts the request but no tokens, as the API does
    for rejected requests; the conservative choice for a dropped connection is made by the caller.
    """
    if usage is None:
        return RequestCost(1, 0, 0)
    written = usage.cache_creation_5m + usage.cache_creation_1h
    return RequestCost(1, usage.input_tokens + written, usage.output_tokens)


@dataclass(frozen=True)
class AnnouncedLimit:
    """What the API announced for one dimension: its limit and what remains of it now."""

    dimension: str
    limit: int
    remaining: int | None


def announced_limits(headers: Mapping[str, str] | None) -> tuple[AnnouncedLimit, ...]:
    """The limits announced by ``anthropic-ratelimit-{requests,input-tokens,output-tokens}-*`` headers."""
    if not headers:
        return ()
    lowered = {k.lower(): v for k, v in headers.items()}
    found: list[AnnouncedLimit] = []
    for dimension in DIMENSIONS:
        name = _HEADER_PREFIX + dimension.replace("_", "-")
        limit = _int(lowered.get(f"{name}-limit"))
        if limit is None or limit <= 0:
            continue
        found.append(AnnouncedLimit(dimension, limit, _int(lowered.get(f"{name}-remaining"))))
    return tuple(found)


def _int(value: str | None) -> int | None:
    """A header's whole number, or None when it is absent or not a finite number (``1e400``, ``nan``):
    a header the API garbles must never break the handling of the answer it came with."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if math.isfinite(number) else None


def hold_off_seconds(
    headers: Mapping[str, str] | None, retry_after_s: float | None, now: float
) -> float | None:
    """How long every client of the organisation should send nothing after a 429: its ``retry-after``
    when it has one (earlier retries fail), else until the latest ``anthropic-ratelimit-*-reset`` (RFC
    3339) among the limits it reports exhausted (``-remaining: 0``); None when it says neither.
    ``now`` is the Unix time the reply arrived."""
    if retry_after_s is not None:
        return max(0.0, retry_after_s)
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    waits: list[float] = []
    for family in _HEADER_FAMILIES:
        name = _HEADER_PREFIX + family
        reset = _instant(lowered.get(f"{name}-reset"))
        if _int(lowered.get(f"{name}-remaining")) == 0 and reset is not None:
            waits.append(reset - now)
    return max(0.0, *waits) if waits else None


def _instant(value: str | None) -> float | None:
    """The Unix time of an RFC 3339 timestamp (``2025-08-21T12:40:59Z``), or None."""
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def effective_limits(configured: RateLimits, learned: Mapping[str, int]) -> RateLimits:
    """The configured limits, each lowered to the learned one when the API announced less."""
    values: dict[str, int | None] = {}
    for dimension in DIMENSIONS:
        mine, theirs = configured.of(dimension), learned.get(dimension)
        if mine is None or theirs is None:
            values[dimension] = mine if theirs is None else theirs
        else:
            values[dimension] = min(mine, theirs)
    return RateLimits(
        requests=values["requests"],
        input_tokens=values["input_tokens"],
        output_tokens=values["output_tokens"],
        window_s=configured.window_s,
    )


def unseen_usage(announced: AnnouncedLimit, counted: int) -> int:
    """Usage the API sees that our window does not (other clients of the same organisation).

    ``counted`` is what our window holds; the API's figure is ``limit - remaining``. Only a clear
    excess counts (over 5% of the limit), so that timing noise between the two views is ignored.
    """
    if announced.remaining is None:
        return 0
    theirs = announced.limit - announced.remaining
    excess = theirs - counted
    return excess if excess > math.ceil(0.05 * announced.limit) else 0


@dataclass(frozen=True)
class WindowFigures:
    """How a stream of admitted requests sat against a limit: the fullest window and the rate achieved."""

    limit: int
    window_s: float
    max_window: int
    achieved_per_window: float
    calls: int
    rejected: int

    @property
    def rate_rejected(self) -> float:
        """The share of calls the API refused (429)."""
        return self.rejected / self.calls if self.calls else 0.0


def max_in_window(events: Sequence[tuple[float, int]], window_s: float) -> int:
    """The most counted within any window ``(t - window_s, t]`` of ``(time, amount)`` events."""
    ordered = sorted(events)
    total = best = left = 0
    for at, amount in ordered:
        total += amount
        while ordered[left][0] <= at - window_s:
            total -= ordered[left][1]
            left += 1
        best = max(best, total)
    return best


def window_figures(
    events: Sequence[tuple[float, int, bool]], limit: int, window_s: float, start: float, windows: int
) -> WindowFigures:
    """Figures of ``(time, counted, rejected)`` events over ``windows`` whole windows from ``start``."""
    end = start + windows * window_s
    inside = [(at, counted, rejected) for at, counted, rejected in events if start <= at < end]
    admitted = [(at, counted) for at, counted, rejected in inside if not rejected]
    return WindowFigures(
        limit=limit,
        window_s=window_s,
        max_window=max_in_window(admitted, window_s),
        achieved_per_window=sum(c for _, c in admitted) / windows if windows else 0.0,
        calls=len(inside),
        rejected=sum(1 for _, _, rejected in inside if rejected),
    )
