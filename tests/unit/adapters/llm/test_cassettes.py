"""Cassettes: the file format and keying, and record → replay through the client without a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from budgetq.adapters.llm.cassettes import CassetteLibrary, cassette_key
from budgetq.adapters.llm.client import BudgetAwareLLMClient, CallRequest, ReplayMode
from budgetq.errors import CassetteMissingError, RetryableCallError
from budgetq.settings import Settings

MODEL = "claude-haiku-4-5"
PARAMS = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def test_the_key_is_stable_and_depends_on_endpoint_and_every_parameter() -> None:
    # Given the same parameters in another key order
    reordered = {"messages": PARAMS["messages"], "max_tokens": 10, "model": MODEL}

    # Then the key is the same; another endpoint or value gives another key
    assert cassette_key("messages", PARAMS) == cassette_key("messages", reordered)
    assert cassette_key("messages", PARAMS) != cassette_key("count_tokens", PARAMS)
    assert cassette_key("messages", PARAMS) != cassette_key("messages", PARAMS | {"max_tokens": 11})
    with pytest.raises(ValueError, match="unknown endpoint"):
        cassette_key("complete", PARAMS)


def test_interactions_replay_in_recorded_order_then_the_last_repeats(tmp_path: Path) -> None:
    # Given a request recorded failing once, then answered
    recorder = CassetteLibrary(tmp_path)
    recorder.record("messages", PARAMS, {"kind": "error", "status": 529})
    recorder.record("messages", PARAMS, {"kind": "message", "request_id": "req_2"})

    # When another process replays it
    player = CassetteLibrary(tmp_path)
    served = [player.next("messages", PARAMS) for _ in range(3)]

    # Then it meets the failure, then the answer, and the answer again once exhausted
    assert [s["kind"] if s else None for s in served] == ["error", "message", "message"]
    # And a request never recorded has no cassette
    assert player.next("messages", PARAMS | {"max_tokens": 99}) is None
    # And the file is one readable JSON document named by the key
    document = json.loads(recorder.path(cassette_key("messages", PARAMS)).read_text())
    assert document["version"] == 1 and document["request"] == PARAMS and len(document["interactions"]) == 2


def test_recording_again_in_a_new_process_replaces_the_old_cassette(tmp_path: Path) -> None:
    # Given a cassette recorded by an earlier process
    CassetteLibrary(tmp_path).record("messages", PARAMS, {"kind": "message", "request_id": "old"})

    # When a new process records the same request
    CassetteLibrary(tmp_path).record("messages", PARAMS, {"kind": "message", "request_id": "new"})

    # Then only the new recording is served
    served = CassetteLibrary(tmp_path).next("messages", PARAMS)
    assert served is not None and served["request_id"] == "new"


def _answer(request: httpx2.Request) -> httpx2.Response:
    if request.url.path.endswith("count_tokens"):
        return httpx2.Response(200, json={"input_tokens": 77})
    body: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": {"diagnoses": [1, 2]}}],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 1000, "output_tokens": 50, "cache_read_input_tokens": 3000},
    }
    return httpx2.Response(200, json=body, headers={"request-id": "req_live"})


def test_a_recorded_call_replays_with_no_network_and_the_same_answer_and_cost(tmp_path: Path) -> None:
    # Given a client in record mode in front of an (in-memory) API, and one that replays the folder
    settings = Settings(cassette_dir=tmp_path, retry_base_s=0.01)
    calls: list[str] = []

    def api(request: httpx2.Request) -> httpx2.Response:
        calls.append(request.url.path)
        return _answer(request)

    sdk = anthropic.Anthropic(
        api_key="k",
        base_url="http://api.test",
        max_retries=0,
        http_client=anthropic.DefaultHttpxClient(transport=httpx2.MockTransport(api)),
    )
    recorder = BudgetAwareLLMClient(mode=ReplayMode.RECORD, model=MODEL, settings=settings, sdk=sdk)
    player = BudgetAwareLLMClient(mode=ReplayMode.REPLAY, model=MODEL, settings=settings)
    request = CallRequest(model=MODEL, system="s", user="u", max_tokens=100, estimated_input_tokens=90)

    # When a count and a call are recorded, then replayed
    recorded = (recorder.count_tokens(request), recorder.send(request))
    replayed = (player.count_tokens(request), player.send(request))

    # Then the replay gives the same count, answer, usage, cost and request id, without any request
    assert calls == ["/v1/messages/count_tokens", "/v1/messages"]
    assert replayed[0] == recorded[0] == 77
    for field in ("tool_input", "stop_reason", "usage", "cost_usd", "request_id"):
        assert getattr(replayed[1], field) == getattr(recorded[1], field)
    # And a request that was never recorded fails without a network call, saying how to fix it
    other = CallRequest(model=MODEL, system="s", user="other", max_tokens=100, estimated_input_tokens=90)
    with pytest.raises(CassetteMissingError, match="BUDGETQ_MODE=record"):
        player.send(other)


def test_a_recorded_failure_is_met_again_on_replay(tmp_path: Path) -> None:
    # Given a cassette in which the API was overloaded once, then answered
    request = CallRequest(model=MODEL, system="s", user="u", max_tokens=100, estimated_input_tokens=90)
    library = CassetteLibrary(tmp_path)
    failure = {"kind": "error", "status": 529, "error_type": "overloaded_error", "message": "Overloaded"}
    library.record("messages", request.params(), failure)
    answer = _answer(httpx2.Request("POST", "http://api.test/v1/messages")).json()
    library.record("messages", request.params(), {"kind": "message", "request_id": "r", "message": answer})

    # When replayed with retries, then the failure is retried like a live one and the answer follows
    sleeps: list[float] = []
    player = BudgetAwareLLMClient(
        mode=ReplayMode.REPLAY, model=MODEL, settings=Settings(cassette_dir=tmp_path), sleep=sleeps.append
    )
    failed: list[object] = []
    result = player.send(request, on_attempt=failed.append)
    assert len(failed) == 1 and len(sleeps) == 1
    assert result.attempts[-1].number == 2

    # And with one attempt allowed, the recorded failure is what the caller sees
    strict = BudgetAwareLLMClient(
        mode=ReplayMode.REPLAY,
        model=MODEL,
        settings=Settings(cassette_dir=tmp_path, retry_max_attempts=1),
        cassettes=CassetteLibrary(tmp_path),
    )
    with pytest.raises(RetryableCallError, match="overloaded_error"):
        strict.send(request)
