"""The Redis rate limiter on a real Redis: admission, waiting, correction, learned limits, Redis down."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from budgetq.adapters.ratelimit.limiter import RedisRateLimiter, redis_url_for_client
from budgetq.domain.limits import RateLimits, RequestCost
from budgetq.errors import RateLimitUnavailableError, RequestOverRateLimitError


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    """A redis-py client on the test Redis."""
    return redis.Redis.from_url(redis_url_for_client(redis_url))


def limiter(client: redis.Redis, limits: RateLimits, sleeps: list[float] | None = None) -> RedisRateLimiter:
    """A limiter on a model name of its own, recording the waits it asks for."""
    waits = sleeps if sleeps is not None else []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    return RedisRateLimiter(client, f"test-{uuid.uuid4().hex[:8]}", limits, skew_s=0.0, sleep=sleep)


def test_requests_beyond_the_input_limit_wait_until_the_window_frees(client: redis.Redis) -> None:
    # Given a limit of 1,000 input tokens per 1.5 s window
    waits: list[float] = []
    rl = limiter(client, RateLimits(input_tokens=1_000, window_s=1.5), waits)

    # When four requests of 300 input tokens are acquired back to back
    started = time.monotonic()
    for _ in range(3):
        rl.acquire(RequestCost(1, 300, 0))
    first_three = time.monotonic() - started
    rl.acquire(RequestCost(1, 300, 0))
    fourth = time.monotonic() - started

    # Then three go at once and the fourth is told to wait for the first to leave the window
    assert waits and first_three < 0.5
    assert 1.0 < waits[0] <= 1.6
    assert fourth >= 1.4


def test_output_reserved_at_max_tokens_is_corrected_to_the_actual(client: redis.Redis) -> None:
    # Given an output limit of 4,000 per 30 s, and a request holding 4,000 (its max_tokens)
    waits: list[float] = []
    rl = limiter(client, RateLimits(output_tokens=4_000, window_s=30), waits)
    ticket = rl.acquire(RequestCost(1, 0, 4_000))

    # When its answer had 500 output tokens
    rl.settle(ticket, RequestCost(1, 0, 500))

    # Then another request reserving 3,500 goes at once
    rl.acquire(RequestCost(1, 0, 3_500))
    assert waits == []


def test_a_limit_announced_in_headers_lowers_the_configured_one(client: redis.Redis) -> None:
    # Given a limiter allowing 10 requests per 30 s, told by the API that the limit is 2
    waits: list[float] = []
    rl = limiter(client, RateLimits(requests=10, window_s=30), waits)
    rl.learn({"anthropic-ratelimit-requests-limit": "2", "anthropic-ratelimit-requests-remaining": "2"})
    rl.max_wait_s = 0.5

    # When three requests are acquired
    rl.acquire(RequestCost(1, 0, 0))
    rl.acquire(RequestCost(1, 0, 0))

    # Then the third must wait longer than we allow, so it is refused, not sent
    with pytest.raises(RateLimitUnavailableError, match="without a free slot"):
        rl.acquire(RequestCost(1, 0, 0))


def test_a_request_larger_than_the_limit_is_refused_outright(client: redis.Redis) -> None:
    # Given an input limit of 1,000 per window; then a request of 1,001 can never be admitted
    rl = limiter(client, RateLimits(input_tokens=1_000, window_s=30))
    with pytest.raises(RequestOverRateLimitError, match="1001 input_tokens can never fit"):
        rl.acquire(RequestCost(1, 1_001, 0))


def test_with_redis_unreachable_the_limiter_blocks_and_never_admits() -> None:
    # Given a limiter whose Redis does not answer, allowed to wait 2 s
    dead = redis.Redis(
        unix_socket_path="/nonexistent/redis.sock", socket_connect_timeout=0.1, retry=Retry(NoBackoff(), 0)
    )
    waits: list[float] = []
    rl = limiter(dead, RateLimits(requests=100, window_s=60), waits)
    rl.max_wait_s = 2.0

    # When a request is acquired
    started = time.monotonic()
    with pytest.raises(RateLimitUnavailableError, match="unreachable"):
        rl.acquire(RequestCost(1, 10, 10))

    # Then it waited (several tries) before refusing, and nothing was admitted
    assert len(waits) >= 2
    assert time.monotonic() - started >= 2.0


def test_a_prefix_the_api_holds_in_its_cache_is_not_reserved_as_input(client: redis.Redis) -> None:
    # Given an input limit of 3,000 per 30 s, and a 1,500-token prompt prefix the API has cached
    waits: list[float] = []
    rl = limiter(client, RateLimits(input_tokens=3_000, window_s=30), waits)
    rl.remember_cached("prefix-a", 1_500, ttl_s=300)

    # When three requests estimated at 2,000 input tokens, of which the cached prefix, are acquired
    for _ in range(3):
        rl.acquire(RequestCost(1, 2_000, 0), cached_prefix_key="prefix-a")

    # Then each reserved only its 500 uncached tokens, so all three went at once
    assert waits == []
    # And a request with another prefix reserves its whole estimate, and must wait
    rl.max_wait_s = 0.2
    with pytest.raises(RateLimitUnavailableError):
        rl.acquire(RequestCost(1, 2_000, 0), cached_prefix_key="prefix-b")
