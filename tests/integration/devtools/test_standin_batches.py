"""The stand-in's Message Batches API, driven by the real anthropic SDK (create, retrieve, results)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from budgetq.devtools.standin.server import BatchBehaviour, StandIn, StandInConfig
from budgetq.domain import answers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

MODEL = "claude-sonnet-4-6"


def _params(first_id: int, n: int = 3) -> dict[str, Any]:
    issues = [
        answers.PromptIssue(first_id + i, 10, f"orders.customer_id is NULL in load {i}") for i in range(n)
    ]
    return {
        "model": MODEL,
        "max_tokens": 2048,
        "system": [
            {
                "type": "text",
                "text": answers.SYSTEM_PROMPT,
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            }
        ],
        "tools": [answers.tool_definition()],
        "tool_choice": {"type": "tool", "name": answers.TOOL_NAME},
        "messages": [{"role": "user", "content": answers.render_issues(issues)}],
    }


def _requests(n: int) -> list[dict[str, Any]]:
    return [{"custom_id": f"b{k + 1}", "params": _params(1000 + 10 * k)} for k in range(n)]


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn(StandInConfig(seed=3)) as server:
        yield server


@pytest.fixture
def client(standin: StandIn) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="standin", base_url=standin.url, max_retries=0)


def test_a_message_batch_is_in_progress_then_ends_with_one_batch_priced_result_per_request(
    standin: StandIn, client: anthropic.Anthropic
) -> None:
    # Given Message Batches that take 0.5 s to process
    standin.batches.set_behaviour(BatchBehaviour(processing_delay_s=0.5))

    # When five requests are submitted
    created = client.messages.batches.create(requests=_requests(5))  # type: ignore[arg-type]

    # Then the batch is in progress, all five processing, no results yet
    assert created.id.startswith("msgbatch_") and created.type == "message_batch"
    assert created.processing_status == "in_progress" and created.results_url is None
    assert created.request_counts.processing == 5 and created.ended_at is None
    assert (created.expires_at - created.created_at).total_seconds() == 24 * 3600
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        list(client.messages.batches.results(created.id))

    # When it is retrieved after its processing delay
    time.sleep(0.6)
    ended = client.messages.batches.retrieve(created.id)

    # Then it ended with five successes, whose results answer each request's issues at the batch tier
    assert ended.processing_status == "ended" and ended.ended_at is not None
    assert ended.request_counts.succeeded == 5 and ended.request_counts.processing == 0
    assert ended.results_url == f"{standin.url}/v1/messages/batches/{created.id}/results"
    results = {r.custom_id: r.result for r in client.messages.batches.results(created.id)}
    assert sorted(results) == [f"b{k}" for k in range(1, 6)]
    for k, result in enumerate(results[f"b{k + 1}"] for k in range(5)):
        assert result.type == "succeeded"
        block = result.message.content[0]
        assert block.type == "tool_use"
        ids = [1000 + 10 * k + i for i in range(3)]
        assert answers.validate(block.input, ids).complete
        assert result.message.usage.service_tier == "batch"
    # And the first request wrote the system prompt to the 1-hour cache, the others read it
    usages = sorted(
        (r.message.usage for r in results.values()), key=lambda u: -(u.cache_creation_input_tokens or 0)
    )
    assert usages[0].cache_creation is not None and usages[0].cache_creation.ephemeral_1h_input_tokens > 0
    assert all(u.cache_read_input_tokens == usages[0].cache_creation_input_tokens for u in usages[1:])
    # And each request was answered by the Messages endpoint, as a synchronous call is
    assert len([e for e in standin.log() if e["path"] == "/v1/messages"]) == 5


def test_errored_and_expired_entries_are_drawn_from_the_seed(
    client: anthropic.Anthropic, standin: StandIn
) -> None:
    # Given Message Batches where 30% of the requests error and 20% expire
    standin.batches.set_behaviour(BatchBehaviour(errored_rate=0.3, expired_rate=0.2, seed=5))

    # When 40 requests are submitted and retrieved
    batch = client.messages.batches.create(requests=_requests(40))  # type: ignore[arg-type]
    counts = client.messages.batches.retrieve(batch.id).request_counts
    results = list(client.messages.batches.results(batch.id))

    # Then the tallies match the results, with some of each kind
    kinds = [r.result.type for r in results]
    assert counts.errored == kinds.count("errored") > 0
    assert counts.expired == kinds.count("expired") > 0
    assert counts.succeeded == kinds.count("succeeded") > 0
    assert counts.errored + counts.expired + counts.succeeded == 40
    # And an errored entry carries the API's error response
    errored = next(r.result for r in results if r.result.type == "errored")
    assert errored.error.type == "error" and errored.error.error.type == "api_error"
    # And the same seed draws the same entries again
    standin.reset()
    again = client.messages.batches.create(requests=_requests(40))  # type: ignore[arg-type]
    client.messages.batches.retrieve(again.id)
    redrawn = {r.custom_id: r.result.type for r in client.messages.batches.results(again.id)}
    assert redrawn == {r.custom_id: r.result.type for r in results}


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([], "requests"),
        (
            [{"custom_id": "b1", "params": _params(1)}, {"custom_id": "b1", "params": _params(2)}],
            "not unique",
        ),
        ([{"custom_id": "has space", "params": _params(1)}], "custom_id"),
        ([{"custom_id": "b1", "params": {**_params(1), "stream": True}}], "stream"),
        ([{"custom_id": "b1", "params": {"model": MODEL}}], "params"),
    ],
)
def test_an_invalid_message_batch_is_a_bad_request(
    client: anthropic.Anthropic, requests: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(anthropic.BadRequestError, match=message):
        client.messages.batches.create(requests=requests)  # type: ignore[arg-type]


def test_an_unknown_message_batch_is_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve("msgbatch_01nothere")


def test_canceling_ends_the_unprocessed_requests_as_canceled(
    client: anthropic.Anthropic, standin: StandIn
) -> None:
    # Given a Message Batch still in progress
    standin.batches.set_behaviour(BatchBehaviour(processing_delay_s=30))
    batch = client.messages.batches.create(requests=_requests(3))  # type: ignore[arg-type]

    # When it is canceled
    canceled = client.messages.batches.cancel(batch.id)

    # Then it ends with every request canceled, and lists among the batches
    assert canceled.processing_status == "ended" and canceled.cancel_initiated_at is not None
    assert canceled.request_counts.canceled == 3
    assert {r.result.type for r in client.messages.batches.results(batch.id)} == {"canceled"}
    assert [b.id for b in client.messages.batches.list()] == [batch.id]


def test_the_admin_endpoint_sets_the_batch_behaviour(standin: StandIn) -> None:
    # When the behaviour is posted, Then it is in force and shown with the batches
    body = json.dumps({"processing_delay_s": 2.5, "expired_rate": 0.1}).encode()
    request = urllib.request.Request(f"{standin.url}/_standin/batches", data=body, method="POST")
    with urllib.request.urlopen(request) as reply:
        assert json.load(reply)["processing_delay_s"] == 2.5
    assert standin.batches.behaviour == BatchBehaviour(processing_delay_s=2.5, expired_rate=0.1)
    with urllib.request.urlopen(f"{standin.url}/_standin/batches") as reply:
        assert json.load(reply) == {
            "behaviour": standin.batches.behaviour.to_dict(),
            "batches": [],
            "create_attempts": 0,
        }
    bad = urllib.request.Request(
        f"{standin.url}/_standin/batches", data=b'{"expired_rate": 2}', method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(bad)
    assert info.value.code == 400


@pytest.mark.parametrize(
    ("statuses", "creates", "created"),
    [((400,), 1, False), ((404,), 1, False), ((529, 500), 3, True), ((429,), 2, True)],
)
def test_a_message_batch_create_is_retried_only_when_the_retry_policy_says_so(
    standin: StandIn, statuses: tuple[int, ...], creates: int, created: bool
) -> None:
    # Given the adapter's Message Batches client on the stand-in, whose next creates answer ``statuses``
    from budgetq.adapters.llm.client import BudgetAwareLLMClient
    from budgetq.adapters.llm.message_batches import MessageBatchesClient
    from budgetq.domain.calls import ReplayMode
    from budgetq.errors import LLMCallError, NonRetryableCallError
    from budgetq.settings import Settings

    standin.batches.set_behaviour(BatchBehaviour(create_statuses=statuses))
    settings = Settings(mode="standin", anthropic_base_url=standin.url, retry_base_s=0.001)
    llm = BudgetAwareLLMClient(mode=ReplayMode.MOCK_TOOLS, model=MODEL, settings=settings, api_key="standin")
    batches = MessageBatchesClient(llm, sleep=lambda _: None)

    # When it creates a Message Batch
    try:
        state = batches.create(_requests(2))
        error: LLMCallError | None = None
    except LLMCallError as exc:
        state, error = None, exc

    # Then a refusal (4xx but 408/409/429) is not sent again; an overload, a 5xx or a 429 is retried
    assert standin.batches.create_attempts == creates
    assert (state is not None) is created
    if not created:
        assert isinstance(error, NonRetryableCallError) and error.status == statuses[0]
