"""Message Batches as data: custom ids, request entries, grouping under the API's limits, API modes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from budgetq.adapters.llm.client import CallRequest
from budgetq.adapters.llm.retries import ApiFailure
from budgetq.adapters.queue.celery_app import LLM_QUEUE, POLL_MESSAGE_BATCHES
from budgetq.domain.message_batches import (
    MAX_BYTES,
    MAX_REQUESTS,
    BatchRequest,
    CreateStep,
    after_create_failure,
    batch_id_of,
    body_bytes,
    custom_id,
    group,
    request_for,
    resolve_api_mode,
)
from budgetq.domain.statuses import ApiMode
from budgetq.errors import ConfigurationError, NonRetryableCallError
from budgetq.settings import Settings
from scheduler.message_batches import beat_entry


def _request(batch_id: int, size: int) -> BatchRequest:
    return BatchRequest(batch_id, {"custom_id": custom_id(batch_id), "params": {}}, size)


@pytest.mark.parametrize("batch_id", [1, 9, 123, 10**17, 999_999_999_999_999_999])
def test_a_custom_id_names_its_batch_and_reads_back(batch_id: int) -> None:
    # Given a batch id, When it becomes a custom_id, Then it reads back as the same id
    assert custom_id(batch_id) == f"b{batch_id}"
    assert batch_id_of(custom_id(batch_id)) == batch_id


@pytest.mark.parametrize("value", ["", "b", "b0", "b01", "b-1", "x12", "B12", "b12x", "b1 ", "b" + "9" * 19])
def test_a_custom_id_that_is_not_ours_names_no_batch(value: str) -> None:
    # Given a custom_id we never send, Then it names no batch
    assert batch_id_of(value) is None


def test_batch_ids_are_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        custom_id(0)


def test_a_request_carries_the_synchronous_params_with_extra_body_merged() -> None:
    # Given the params of a synchronous call (with a temperature, which travels in extra_body)
    call = CallRequest(
        model="claude-sonnet-4-6",
        system="sys",
        user="<issue>",
        max_tokens=100,
        estimated_input_tokens=10,
        temperature=0.2,
        cache_ttl="1h",
    )
    params = call.params()

    # When it becomes a Message Batch request
    request = request_for(42, {**params, "stream": True})

    # Then the entry is the custom id and the params as the API takes them, without stream
    assert request.batch_id == 42
    assert request.entry["custom_id"] == "b42"
    body = request.entry["params"]
    assert body["temperature"] == 0.2 and "extra_body" not in body and "stream" not in body
    assert body["system"] == [
        {"type": "text", "text": "sys", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    assert {k: v for k, v in body.items() if k != "temperature"} == {
        k: v for k, v in params.items() if k != "extra_body"
    }
    # And its size is its JSON plus the separator in the create body
    assert request.size_bytes == len(json.dumps(request.entry).encode()) + 2


def test_requests_are_grouped_in_order_by_count() -> None:
    # Given 7 requests and at most 3 per Message Batch
    requests = [_request(i, 100) for i in range(1, 8)]

    # When grouped
    groups = group(requests, max_requests=3)

    # Then they fill Message Batches of 3, 3 and 1, in order
    assert [[r.batch_id for r in g] for g in groups] == [[1, 2, 3], [4, 5, 6], [7]]


def test_requests_are_grouped_by_size() -> None:
    # Given requests of 40 bytes and room for 100 bytes, envelope included
    requests = [_request(i, 40) for i in range(1, 6)]

    # When grouped
    groups = group(requests, max_bytes=100)

    # Then two fit in each Message Batch (16 + 2 x 40 = 96), whatever the count limit
    assert [len(g) for g in groups] == [2, 2, 1]
    assert all(body_bytes(g) <= 100 for g in groups)


def test_a_request_larger_than_a_message_batch_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="BUDGETQ_MESSAGE_BATCH_MAX_BYTES"):
        group([_request(1, 10), _request(2, 200)], max_bytes=100)


@pytest.mark.parametrize("limits", [{"max_requests": 0}, {"max_requests": MAX_REQUESTS + 1}, {"max_bytes": 0},
                                    {"max_bytes": MAX_BYTES + 1}])  # fmt: skip
def test_limits_beyond_the_apis_are_refused(limits: dict[str, int]) -> None:
    with pytest.raises(ConfigurationError, match="Message Batch limits"):
        group([_request(1, 10)], **limits)


def test_no_requests_make_no_message_batch() -> None:
    assert group([]) == []


@given(
    sizes=st.lists(st.integers(min_value=1, max_value=500), max_size=60),
    max_requests=st.integers(min_value=1, max_value=10),
    max_bytes=st.integers(min_value=516, max_value=3000),
)
def test_grouping_keeps_every_request_once_in_order_within_both_limits(
    sizes: list[int], max_requests: int, max_bytes: int
) -> None:
    # Given any requests that each fit a Message Batch alone
    requests = [_request(i + 1, size) for i, size in enumerate(sizes)]

    # When grouped
    groups = group(requests, max_requests=max_requests, max_bytes=max_bytes)

    # Then every request appears once, in order, each group within both limits
    assert [r for g in groups for r in g] == requests
    assert all(1 <= len(g) <= max_requests and body_bytes(g) <= max_bytes for g in groups)
    # And a group ends only when the next request would break a limit (no Message Batch is wasted)
    for current, following in zip(groups, groups[1:], strict=False):
        nxt = following[0]
        assert len(current) == max_requests or body_bytes(current) + nxt.size_bytes > max_bytes


@pytest.mark.parametrize(
    ("explicit", "set_mode", "nightly", "nightly_default", "expected"),
    [
        ("batch-api", "sync", False, "sync", ApiMode.BATCH_API),  # the run's own choice wins
        (None, "batch-api", False, "sync", ApiMode.BATCH_API),  # then its issue set's
        (None, "sync", True, "batch-api", ApiMode.SYNC),
        (None, None, True, "batch-api", ApiMode.BATCH_API),  # then the nightly default, for nightly runs
        (None, None, False, "batch-api", ApiMode.SYNC),  # and sync for the others
    ],
)
def test_a_runs_api_mode_is_resolved_run_then_set_then_default(
    explicit: str | None, set_mode: str | None, nightly: bool, nightly_default: str, expected: ApiMode
) -> None:
    assert resolve_api_mode(explicit, set_mode, nightly=nightly, nightly_default=nightly_default) is expected


def test_an_unknown_api_mode_is_refused() -> None:
    with pytest.raises(ValueError):
        resolve_api_mode("async", None, nightly=False, nightly_default="sync")


def test_the_beat_polls_message_batches_on_the_llm_queue_at_the_configured_interval() -> None:
    # Given a poll interval of 20 s, Then the beat entry sends the poll task that often to the workers
    entry = beat_entry(Settings(message_batch_poll_s=20.0))["budgetq-poll-message-batches"]
    assert entry == {
        "task": POLL_MESSAGE_BATCHES,
        "schedule": 20.0,
        "options": {"queue": LLM_QUEUE, "expires": 20.0},
    }


@pytest.mark.parametrize(
    ("failure", "requests", "step"),
    [
        (ApiFailure(400, "invalid_request_error", "bad"), 4, CreateStep.FAIL),
        (ApiFailure(401, "authentication_error", "no key"), 4, CreateStep.FAIL),
        (ApiFailure(403, "permission_error", "no"), 4, CreateStep.FAIL),
        (ApiFailure(404, "not_found_error", "no"), 4, CreateStep.FAIL),
        (ApiFailure(422, "invalid_request_error", "no"), 4, CreateStep.FAIL),
        (ApiFailure(413, "request_too_large", "too big"), 4, CreateStep.HALVE),
        (ApiFailure(400, "invalid_request_error", "prompt is too long: 9 > 8"), 1, CreateStep.SPLIT),
        (ApiFailure(413, "request_too_large", "too big"), 1, CreateStep.SPLIT),
        (ApiFailure(429, "rate_limit_error", "slow down"), 4, CreateStep.WAIT),
        (ApiFailure(500, "api_error", "oops"), 4, CreateStep.WAIT),
        (ApiFailure(529, "overloaded_error", "busy"), 4, CreateStep.WAIT),
        (ApiFailure(400, "invalid_request_error", "credit balance is too low"), 4, CreateStep.STOP_RUN),
    ],
)
def test_a_failed_create_is_treated_as_a_synchronous_call_failed_with_the_same_status(
    failure: ApiFailure, requests: int, step: CreateStep
) -> None:
    # Given a failure as the retry policy classifies it, When a create of ``requests`` requests failed so
    # Then the step taken matches the synchronous path's handling of that status
    assert after_create_failure(failure.error(), requests) is step


def test_a_create_without_an_answer_waits_with_its_spend_kept_as_unknown() -> None:
    # Given a create that got no answer (the adapter raises it without a status: it may exist)
    error = NonRetryableCallError("creating a Message Batch got no answer", error_type="connection_error")
    # Then its requests wait for the next poll, maybe billed
    assert after_create_failure(error, 4) is CreateStep.WAIT_UNSEEN
