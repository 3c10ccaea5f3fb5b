"""A 429 holds the whole fleet: what one worker's reply says reaches every limiter through Redis.

Two workers are two ``RedisRateLimiter`` instances on their own Redis connections, sharing the
model's keys; worker A calls the stand-in through the real SDK (``BudgetAwareLLMClient``), so the
429's headers travel the same path as in production.
"""

from __future__ import annotations

import datetime as dt
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from budgetq.adapters.llm.client import BudgetAwareLLMClient, CallRequest, ReplayMode
from budgetq.adapters.ratelimit.limiter import RedisRateLimiter, redis_url_for_client
from budgetq.devtools.standin.server import FaultPlan, StandIn
from budgetq.domain.answers import PromptIssue
from budgetq.domain.limits import RateLimits, RequestCost
from budgetq.domain.prompt import build_prompt
from budgetq.domain.statuses import CallOutcome
from budgetq.errors import RetryableCallError, SpendLimitReachedError
from budgetq.settings import Settings

MODEL = "claude-haiku-4-5"


@dataclass
class Worker:
    """One worker's limiter (its own Redis connection) and the waits it asked for."""

    limiter: RedisRateLimiter
    waits: list[float] = field(default_factory=list)


@pytest.fixture
def fleet(redis_url: str) -> Iterator[Any]:
    """A factory of workers whose limiters share one model's keys (a fresh name per test)."""
    key = f"test-hold-{uuid.uuid4().hex[:8]}"
    clients: list[redis.Redis] = []

    def worker() -> Worker:
        client = redis.Redis.from_url(redis_url_for_client(redis_url))
        clients.append(client)
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            time.sleep(seconds)

        limits = RateLimits(requests=1_000, window_s=60)
        return Worker(RedisRateLimiter(client, key, limits, skew_s=0.0, sleep=sleep), waits)

    yield worker
    for client in clients:
        client.close()


def _client(standin: StandIn, worker: Worker) -> BudgetAwareLLMClient:
    settings = Settings(retry_max_attempts=1)  # the 429 surfaces instead of being retried here
    return BudgetAwareLLMClient(
        mode=ReplayMode.MOCK_TOOLS, model=MODEL, settings=settings, base_url=standin.url, gate=worker.limiter
    )


def _request() -> CallRequest:
    prompt = build_prompt([PromptIssue(1, 10, "The login page times out after the upgrade.")], 1.3)
    return CallRequest(
        model=MODEL,
        system=prompt.system,
        user=prompt.user,
        max_tokens=500,
        estimated_input_tokens=prompt.estimated_input_tokens,
        tools=(prompt.tool,),
        tool_choice=prompt.tool_choice,
    )


def test_a_429_holds_every_worker_until_its_retry_after(standin: StandIn, fleet: Any) -> None:
    # Given two workers, and an API answering 429 with retry-after: 2
    a, b = fleet(), fleet()
    standin.set_faults(FaultPlan(p_rate_limited=1.0, retry_after_range=(2, 2)))

    # When worker A's call gets the 429, and the API would then answer again
    with pytest.raises(RetryableCallError):
        _client(standin, a).send(_request())
    standin.set_faults(FaultPlan())
    # ... and worker B sends right after
    _client(standin, b).send(_request())

    # Then B's limiter held it back: its request reached the API only once the retry-after had passed
    refused, answered = standin.log()
    assert refused["status"] == 429 and answered["status"] == 200
    assert answered["received_at"] - refused["responded_at"] >= 1.9
    assert b.waits and 1.0 <= sum(b.waits) <= 2.1


def test_an_overloaded_529_holds_nobody(standin: StandIn, fleet: Any) -> None:
    # Given two workers, and an API answering 529 (overloaded, not a rate limit)
    a, b = fleet(), fleet()
    standin.set_faults(FaultPlan(p_overloaded=1.0, retry_after_range=(2, 2)))

    # When worker A's call fails, then worker B sends
    with pytest.raises(RetryableCallError):
        _client(standin, a).send(_request())
    standin.set_faults(FaultPlan())
    _client(standin, b).send(_request())

    # Then B went at once
    assert b.waits == []


def test_a_spend_limit_429_holds_nobody(standin: StandIn, fleet: Any) -> None:
    # Given two workers, and an API whose 429 says the organisation's spend limit is reached
    a, b = fleet(), fleet()
    standin.set_faults(FaultPlan(spend_limit=True))

    # When worker A's call gets it (the run stops; waiting would not help), then worker B sends
    with pytest.raises(SpendLimitReachedError):
        _client(standin, a).send(_request())
    standin.set_faults(FaultPlan())
    _client(standin, b).send(_request())

    # Then B went at once
    assert b.waits == []


@dataclass(frozen=True)
class _Reply:
    """A failed attempt as the limiter sees it."""

    http_status: int | None
    outcome: CallOutcome
    retry_after_s: float | None
    headers: dict[str, str] | None
    usage: None = None


def test_a_429_without_retry_after_holds_until_the_reset_of_the_spent_limit(fleet: Any) -> None:
    # Given two workers, and a 429 with no retry-after whose headers say the output-token limit is
    # spent until the next whole second at least 2 s from now (and requests are not)
    a, b = fleet(), fleet()
    reset = math.ceil(time.time() + 2)
    stamp = dt.datetime.fromtimestamp(reset, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "anthropic-ratelimit-requests-remaining": "40",
        "anthropic-ratelimit-requests-reset": stamp,
        "anthropic-ratelimit-output-tokens-remaining": "0",
        "anthropic-ratelimit-output-tokens-reset": stamp,
    }

    # When worker A's limiter sees that reply, and worker B acquires
    a.limiter.after_attempt(_request(), _Reply(429, CallOutcome.RETRYABLE_ERROR, None, headers))
    b.limiter.acquire(RequestCost(1, 100, 100))

    # Then B was admitted only at the reset
    assert time.time() >= reset - 0.1
    assert b.waits and sum(b.waits) >= 1.5


def test_a_hold_is_capped_and_a_later_hold_is_kept(fleet: Any) -> None:
    # Given a limiter that holds at most 3 s
    a = fleet()
    a.limiter.max_hold_s = 3.0

    # When the API asks for an hour, then for one second
    first = a.limiter.hold(3_600)
    second = a.limiter.hold(1)

    # Then the fleet is held 3 s, and the shorter request does not cut that short
    assert 2.9 <= first <= 3.0
    assert 2.5 <= second <= 3.0


def test_the_standin_reports_the_spent_limit_on_a_429() -> None:
    # Given a stand-in allowing 2 requests a minute, 1,000,000 input and 5,000 output tokens
    from budgetq.devtools.standin.server import RateLimits as StandInLimits
    from budgetq.devtools.standin.server import StandInConfig

    limits = StandInLimits(rpm_limit=2, input_tpm_limit=1_000_000, output_tpm_limit=5_000)
    with StandIn(StandInConfig(limits=limits)) as server:
        client = BudgetAwareLLMClient(
            mode=ReplayMode.MOCK_TOOLS,
            model=MODEL,
            settings=Settings(retry_max_attempts=1),
            base_url=server.url,
        )
        # When three requests are sent
        client.send(_request())
        client.send(_request())
        failed: list[Any] = []
        with pytest.raises(RetryableCallError):
            client.send(_request(), on_attempt=failed.append)

    # Then the 429 says requests are spent until a reset at least its retry-after away, and carries
    # the most restrictive token limit (output, 5,000) as tokens-*
    (attempt,) = failed
    h = attempt.headers
    assert attempt.http_status == 429 and attempt.retry_after_s is not None
    assert h["anthropic-ratelimit-requests-remaining"] == "0"
    reset = dt.datetime.fromisoformat(h["anthropic-ratelimit-requests-reset"]).timestamp()
    assert reset >= attempt.finished_at.timestamp() + attempt.retry_after_s - 1
    assert h["anthropic-ratelimit-tokens-limit"] == "5000"
    assert int(h["anthropic-ratelimit-tokens-remaining"]) < 5_000
