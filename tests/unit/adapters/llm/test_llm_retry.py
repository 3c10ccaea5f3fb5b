"""The retry policy of every call, without a server: classification, waits, bounds.

Classification is checked on plain failures; the whole path (SDK → translate → tenacity → one
provenance attempt each) is checked with the real anthropic SDK over an in-memory transport that
answers from a script, and a fake sleep that records every wait instead of waiting.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx2
import pytest
from tenacity import RetryCallState

from budgetq.adapters.llm.client import Attempt, BudgetAwareLLMClient, CallRequest, ReplayMode
from budgetq.adapters.llm.retries import (
    ApiFailure,
    classify,
    full_jitter_wait,
    retry_after_seconds,
    retryable,
)
from budgetq.domain.statuses import CallOutcome
from budgetq.errors import (
    LLMCallError,
    NonRetryableCallError,
    PromptTooLongError,
    RetryableCallError,
    SpendLimitReachedError,
)
from budgetq.settings import Settings

MODEL = "claude-haiku-4-5"


# --- classification ------------------------------------------------------------------------------

CLASSIFICATION = [
    # (case, failure, expected error class)
    ("408 request timeout", ApiFailure(408, "timeout_error", "Request timeout"), RetryableCallError),
    ("409 conflict", ApiFailure(409, "conflict_error", "Conflict"), RetryableCallError),
    ("429 rate limit", ApiFailure(429, "rate_limit_error", "per-minute limit"), RetryableCallError),
    ("500 api error", ApiFailure(500, "api_error", "Internal server error"), RetryableCallError),
    ("502 bad gateway", ApiFailure(502, "api_error", "Bad gateway"), RetryableCallError),
    ("503 unavailable", ApiFailure(503, "api_error", "Unavailable"), RetryableCallError),
    ("504 gateway timeout", ApiFailure(504, "api_error", "Gateway timeout"), RetryableCallError),
    ("529 overloaded", ApiFailure(529, "overloaded_error", "Overloaded"), RetryableCallError),
    ("599 any other 5xx", ApiFailure(599, "api_error", "odd"), RetryableCallError),
    ("overloaded mid-stream (200)", ApiFailure(200, "overloaded_error", "Overloaded"), RetryableCallError),
    ("api error mid-stream (200)", ApiFailure(200, "api_error", "Internal"), RetryableCallError),
    ("dropped connection", ApiFailure(None, "connection_error", "peer closed"), RetryableCallError),
    ("timeout", ApiFailure(None, "timeout", "timed out"), RetryableCallError),
    ("400 invalid request", ApiFailure(400, "invalid_request_error", "bad field"), NonRetryableCallError),
    ("401 authentication", ApiFailure(401, "authentication_error", "bad key"), NonRetryableCallError),
    ("403 permission", ApiFailure(403, "permission_error", "forbidden"), NonRetryableCallError),
    ("404 not found", ApiFailure(404, "not_found_error", "no such model"), NonRetryableCallError),
    ("invalid request mid-stream", ApiFailure(200, "invalid_request_error", "bad"), NonRetryableCallError),
    ("unknown exception", ApiFailure(None, "KeyError", "unexpected"), NonRetryableCallError),
    ("413 too large", ApiFailure(413, "request_too_large", "Request exceeds"), PromptTooLongError),
    (
        "400 prompt is too long",
        ApiFailure(400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
        PromptTooLongError,
    ),
    (
        "429 enforced spend limit (error code)",
        ApiFailure(429, "rate_limit_error", "usage limits", error_code="enforced_spend_limit_reached"),
        SpendLimitReachedError,
    ),
    (
        "429 whose message names the spend limit",
        ApiFailure(429, "rate_limit_error", "Your workspace spend limit has been reached"),
        SpendLimitReachedError,
    ),
    (
        "400 credit balance too low",
        ApiFailure(400, "invalid_request_error", "Your credit balance is too low to access the API"),
        SpendLimitReachedError,
    ),
]


@pytest.mark.parametrize(("case", "failure", "expected"), CLASSIFICATION, ids=[c[0] for c in CLASSIFICATION])
def test_each_failure_is_classified_by_status_and_error_type(
    case: str, failure: ApiFailure, expected: type[LLMCallError]
) -> None:
    # Given a failure as the API reports it, when classified
    error = classify(failure)

    # Then it is exactly the expected kind (subclasses would mean another decision)
    assert type(error) is expected, case
    assert error.status == failure.status
    assert error.error_type == failure.error_type


# --- waits ---------------------------------------------------------------------------------------


def _state(attempt_number: int, exc: BaseException | None) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt_number
    if exc is not None:
        state.set_exception((type(exc), exc, None))
    return state


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    # Given the policy's wait with base 1 s and a 60 s cap, and a seeded random source
    wait = full_jitter_wait(base=1.0, cap=60.0, retry_after_cap=300.0, rng=random.Random(7))
    overloaded = RetryableCallError("529", status=529)

    for attempt_number, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (9, 60.0), (20, 60.0)):
        # When many waits are drawn after that attempt
        waits = [wait(_state(attempt_number, overloaded)) for _ in range(400)]

        # Then every wait lies in [0, min(cap, base * 2**(n-1))] and they spread over that whole range
        assert all(0 <= w <= ceiling for w in waits)
        assert min(waits) < 0.1 * ceiling
        assert max(waits) > 0.9 * ceiling


@pytest.mark.parametrize("retry_after", [1.0, 2.5, 61.0, 120.0, 300.0])
def test_a_retry_after_is_never_cut_short_up_to_its_cap(retry_after: float) -> None:
    # Given a 429 that asks for a wait (also above 60 s), and a cap of 300 s
    wait = full_jitter_wait(base=0.05, cap=0.5, retry_after_cap=300.0, rng=random.Random(1))
    limited = RetryableCallError("429", status=429, retry_after=retry_after)

    # When the waits after it are drawn, then none is shorter than the server asked
    assert all(wait(_state(n, limited)) >= retry_after for n in range(1, 8))
    # And the request is retried in the call
    assert retryable(limited, retry_after_cap=300.0)


def test_a_retry_after_beyond_the_cap_is_not_waited_for_in_the_call() -> None:
    # Given a 429 asking for longer than the cap
    limited = RetryableCallError("429", status=429, retry_after=900.0)

    # Then the call gives up (the worker queues the batch again with that countdown) instead of waiting
    assert not retryable(limited, retry_after_cap=300.0)
    # And nothing but a retryable error is ever retried
    assert not retryable(NonRetryableCallError("400", status=400), retry_after_cap=300.0)
    assert not retryable(ValueError("bug"), retry_after_cap=300.0)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "120"}, 120.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}, 30.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_is_read_from_milliseconds_seconds_or_a_date(
    headers: dict[str, str], expected: float | None
) -> None:
    # Given a clock 30 s before the date in the header
    now = 1445412480.0  # 2015-10-21 07:28:00 UTC

    # Then the wait is read in the API's order of precedence
    assert retry_after_seconds(headers, now=now) == expected


# --- the whole call path, over a scripted transport ----------------------------------------------

Reply = Callable[[httpx2.Request], httpx2.Response]


def _message_body(request_id: str) -> dict[str, Any]:
    return {
        "id": "msg_" + request_id,
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": {"ok": True}}],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 100, "output_tokens": 20},
    }


def ok(request_id: str) -> Reply:
    return lambda _: httpx2.Response(200, json=_message_body(request_id), headers={"request-id": request_id})


def fail(status: int, etype: str, message: str, request_id: str, **headers: str) -> Reply:
    body: dict[str, Any] = {"type": "error", "error": {"type": etype, "message": message}}
    all_headers = {"request-id": request_id} | {k.replace("_", "-"): v for k, v in headers.items()}
    return lambda _: httpx2.Response(status, json=body, headers=all_headers)


def drop() -> Reply:
    def reply(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.RemoteProtocolError("Server disconnected without sending a response.", request=request)

    return reply


class Script:
    """An in-memory Messages API: answers the scripted replies in order and counts requests."""

    def __init__(self, replies: list[Reply]) -> None:
        self._replies: Iterator[Reply] = iter(replies)
        self.requests = 0

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests += 1
        return next(self._replies)(request)


def _client(script: Script, sleeps: list[float], **settings: Any) -> BudgetAwareLLMClient:
    sdk = anthropic.Anthropic(
        api_key="test",
        base_url="http://api.test",
        max_retries=0,
        http_client=anthropic.DefaultHttpxClient(transport=httpx2.MockTransport(script)),
    )
    defaults: dict[str, Any] = {"retry_base_s": 0.5, "retry_max_backoff_s": 8.0, "retry_max_attempts": 8}
    return BudgetAwareLLMClient(
        mode=ReplayMode.LIVE_TOOLS,
        model=MODEL,
        settings=Settings(**(defaults | settings)),
        sleep=sleeps.append,
        sdk=sdk,
    )


REQUEST = CallRequest(model=MODEL, system="s", user="u", max_tokens=100, estimated_input_tokens=90)


def test_a_fault_mix_is_retried_until_answered_with_one_attempt_record_each() -> None:
    # Given an API that is overloaded, rate-limits with retry-after 2 s, errors, drops, then answers
    script = Script(
        [
            fail(529, "overloaded_error", "Overloaded", "req_1"),
            fail(429, "rate_limit_error", "slow down", "req_2", retry_after="2"),
            fail(500, "api_error", "Internal", "req_3"),
            drop(),
            fail(429, "rate_limit_error", "slow down", "req_5", retry_after_ms="1500"),
            ok("req_6"),
        ]
    )
    sleeps: list[float] = []
    seen: list[Attempt] = []

    # When the request is sent
    result = _client(script, sleeps).send(REQUEST, on_attempt=seen.append)

    # Then it is answered on the sixth request, each failed attempt reported once with its request id
    assert script.requests == 6
    assert result.request_id == "req_6" and result.attempts[-1].number == 6
    assert [a.request_id for a in seen] == ["req_1", "req_2", "req_3", None, "req_5"]
    assert [a.http_status for a in seen] == [529, 429, 500, None, 429]
    assert all(a.outcome is CallOutcome.RETRYABLE_ERROR for a in seen)
    # And no retry came before its retry-after
    assert len(sleeps) == 5
    assert sleeps[1] >= 2.0 and sleeps[4] >= 1.5


@pytest.mark.parametrize(
    ("status", "etype", "message", "expected"),
    [
        (400, "invalid_request_error", "messages: bad", NonRetryableCallError),
        (401, "authentication_error", "invalid x-api-key", NonRetryableCallError),
        (403, "permission_error", "not allowed", NonRetryableCallError),
        (404, "not_found_error", "model: claude-nope", NonRetryableCallError),
        (413, "request_too_large", "Request exceeds the maximum size", PromptTooLongError),
        (400, "invalid_request_error", "prompt is too long: 300000 tokens > 200000", PromptTooLongError),
    ],
)
def test_a_non_retryable_error_is_sent_exactly_once(
    status: int, etype: str, message: str, expected: type[LLMCallError]
) -> None:
    # Given an API that fails the request, then would answer
    script = Script([fail(status, etype, message, "req_1"), ok("req_2")])
    sleeps: list[float] = []
    seen: list[Attempt] = []

    # When the request is sent, then the error is raised after one request and no wait
    with pytest.raises(expected) as raised:
        _client(script, sleeps).send(REQUEST, on_attempt=seen.append)
    assert type(raised.value) is expected
    assert script.requests == 1 and sleeps == []
    # And the attempt is recorded with its request id
    assert [(a.http_status, a.request_id) for a in seen] == [(status, "req_1")]


def test_a_spend_limit_429_stops_at_once_with_a_clear_message() -> None:
    # Given the API's 429 for an organisation over its spend limit
    body = {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": "You have reached your API usage limits.",
            "details": {"error_code": "enforced_spend_limit_reached"},
        },
    }
    script = Script([lambda _: httpx2.Response(429, json=body, headers={"request-id": "req_1"}), ok("req_2")])

    # When sent, then it is not retried and the message says what to do
    with pytest.raises(SpendLimitReachedError, match="spend limit is reached.*raise the limit"):
        _client(script, []).send(REQUEST)
    assert script.requests == 1


def test_retries_stop_after_the_attempt_limit() -> None:
    # Given an API that is always overloaded and a limit of 4 attempts
    script = Script([fail(529, "overloaded_error", "Overloaded", f"req_{i}") for i in range(10)])
    sleeps: list[float] = []

    # When sent, then it gives up with the last error after exactly 4 requests and 3 waits
    with pytest.raises(RetryableCallError):
        _client(script, sleeps, retry_max_attempts=4).send(REQUEST)
    assert script.requests == 4 and len(sleeps) == 3


def test_a_wait_that_would_end_past_the_time_budget_is_not_started() -> None:
    # Given a 30 s retry budget and a 429 asking for 45 s (within the retry-after cap)
    script = Script([fail(429, "rate_limit_error", "slow", "req_1", retry_after="45"), ok("req_2")])
    sleeps: list[float] = []

    # When sent, then the call gives up at once, carrying the server's wait for the queue's countdown
    with pytest.raises(RetryableCallError) as raised:
        _client(script, sleeps, retry_max_seconds=30.0).send(REQUEST)
    assert raised.value.retry_after == 45.0
    assert script.requests == 1 and sleeps == []


def test_count_tokens_is_retried_like_a_call() -> None:
    # Given a count_tokens endpoint that is overloaded once
    count = json.dumps({"input_tokens": 1234}).encode()
    script = Script(
        [fail(529, "overloaded_error", "Overloaded", "req_1"), lambda _: httpx2.Response(200, content=count)]
    )
    sleeps: list[float] = []

    # When the exact count is asked, then it comes on the second request
    assert _client(script, sleeps).count_tokens(REQUEST) == 1234
    assert script.requests == 2 and len(sleeps) == 1
