"""Retries against the stand-in: a fault mix with a real worker process, the spend limit, a request the
API rejects, and a stream that breaks mid-way."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from itertools import islice, pairwise
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.llm.client import (
    STREAMING_THRESHOLD,
    Attempt,
    BudgetAwareLLMClient,
    CallRequest,
    ReplayMode,
)
from budgetq.adapters.queue.celery_app import make_celery
from budgetq.adapters.store.engine import transaction
from budgetq.devtools.scenario import seed_issues
from budgetq.devtools.standin.http import ApiFailure
from budgetq.devtools.standin.server import FaultPlan, StandIn
from budgetq.domain.answers import PromptIssue, validate
from budgetq.domain.prompt import build_prompt
from budgetq.errors import RetryableCallError
from budgetq.services.planning import enqueue, plan_run
from budgetq.settings import Settings
from tests.integration.pipeline import make_seed_set, wait_for_run
from tests.integration.worker.inline import assert_each_issue_settled_once, make_set, plan_and_drain

pytestmark = pytest.mark.integration

# The issue's fault mix: 20% 529, 10% 429 with retry-after 1-3 s, 5% 500, 5% dropped connections.
FAULT_MIX = FaultPlan(
    p_overloaded=0.20, p_rate_limited=0.10, p_server_error=0.05, p_drop=0.05, retry_after_range=(1, 3)
)
RETRYABLE = {429, 500, 529, None}


def _messages_log(standin: StandIn) -> list[dict[str, Any]]:
    return [e for e in standin.log() if e["path"] == "/v1/messages"]


def _start_run(sessions: sessionmaker[Session], settings: Settings, set_id: int) -> int:
    planned = plan_run(sessions, settings, set_id, kind="manual")
    assert planned.run_id is not None
    enqueue(make_celery(settings, settings.redis_url or ""), sessions, planned.batch_ids)
    return planned.run_id


def test_under_the_fault_mix_every_issue_is_answered_and_every_attempt_is_on_record(
    sessions: sessionmaker[Session], test_settings: Settings, start_worker: Any, standin: StandIn
) -> None:
    # Given 300 issues in batches of 10, a stand-in failing 40% of requests, and a real worker process
    standin.set_faults(FAULT_MIX)
    settings = test_settings.model_copy(update={"max_issues_per_call": 10})
    set_id = make_seed_set(sessions, f"faults-{uuid.uuid4().hex[:8]}", 300)
    start_worker(concurrency=8)

    # When the run is processed
    run_id = _start_run(sessions, settings, set_id)
    progress = wait_for_run(sessions, run_id, timeout_s=180)

    # Then every issue is answered, once
    assert progress.status == "succeeded", progress
    assert progress.issues == {"answered": 300}
    assert_each_issue_settled_once(sessions, run_id)

    # And the mix really happened: overloads, rate limits, server errors and drops
    log = _messages_log(standin)
    statuses = [e["status"] for e in log]
    assert {529, 429, 500, None} <= set(statuses), statuses

    # And per batch, attempts are retryable failures ending in one answer, and no retry came before
    # the retry-after of the 429 it followed (server timestamps on both sides)
    attempts: dict[tuple[int, ...], list[dict[str, Any]]] = defaultdict(list)
    for entry in log:
        attempts[tuple(entry["issue_ids"])].append(entry)
    assert len(attempts) == 30
    waited_after_429 = 0
    for entries in attempts.values():
        assert [e["status"] for e in entries][-1] == 200
        assert all(e["status"] in RETRYABLE for e in entries[:-1])
        for before, after in pairwise(entries):
            if before["status"] == 429:
                assert after["received_at"] >= before["responded_at"] + before["retry_after"], (before, after)
                waited_after_429 += 1
    assert waited_after_429 > 0

    # And llm_calls holds one row per HTTP attempt: the same request ids as the stand-in's log, and as
    # many rows without a request id as dropped connections, each with the status the stand-in sent
    with transaction(sessions) as session:
        rows = session.execute(
            text("SELECT request_id, http_status FROM llm_calls WHERE run_id = :run"), {"run": run_id}
        ).all()
    answered = {e["request_id"]: e["status"] for e in log if e["status"] is not None}
    assert len(rows) == len(log)
    assert {r.request_id for r in rows if r.request_id is not None} == set(answered)
    assert sum(r.request_id is None for r in rows) == sum("drop" in e["faults"] for e in log) > 0
    assert all(r.http_status == answered[r.request_id] for r in rows if r.request_id is not None)


def test_a_spend_limit_stops_the_run_with_a_clear_message_instead_of_hammering(
    sessions: sessionmaker[Session], test_settings: Settings, standin: StandIn
) -> None:
    # Given an organisation over its spend limit, and 100 issues in 10 batches
    standin.set_faults(FaultPlan(spend_limit=True))
    settings = test_settings.model_copy(update={"max_issues_per_call": 10})
    set_id = make_seed_set(sessions, f"spend-{uuid.uuid4().hex[:8]}", 100)

    # When the worker's batch processing runs the batches one after another
    planned, outcomes = plan_and_drain(sessions, settings, set_id)
    assert planned.run_id is not None

    # Then the first call's 429 stops the run, saying why and what to do; no other batch is claimed
    assert outcomes == {"run-stopped": 1, "not-claimed": 9}
    with transaction(sessions) as session:
        run = session.execute(
            text("SELECT status, stop_reason FROM runs WHERE id = :run"), {"run": planned.run_id}
        ).one()
    assert run.status == "stopped"
    assert "spend limit is reached" in run.stop_reason and "raise the limit" in run.stop_reason
    # And every issue failed with that reason; none is left pending
    rows = assert_each_issue_settled_once(sessions, planned.run_id)
    assert {r.status for r in rows} == {"failed"}
    assert all("spend limit" in r.reason for r in rows)
    # And exactly one request reached the API: nothing was retried or sent after the stop
    assert len(_messages_log(standin)) == 1


def test_a_request_the_api_rejects_as_invalid_is_never_sent_again(
    sessions: sessionmaker[Session],
    test_settings: Settings,
    standin: StandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given 40 issues in batches of 10, one of which the API rejects with a 400 whenever it is sent
    marker = f"POISON-{uuid.uuid4().hex[:6]}"
    texts = [i.text for i in islice(seed_issues(), 39)] + [f"orders.total is negative ({marker})"]
    set_id = make_set(sessions, texts)
    answer = standin._messages

    def reject_poisoned(body: bytes, entry: dict[str, Any]) -> Any:
        if marker.encode() in body:
            entry["issue_ids"] = [int(i) for i in re.findall(r'<issue id=\\"(\d+)\\"', body.decode())]
            raise ApiFailure(400, "invalid_request_error", "messages.0.content: this text is not accepted")
        return answer(body, entry)

    monkeypatch.setattr(standin, "_messages", reject_poisoned)
    settings = test_settings.model_copy(update={"max_issues_per_call": 10})

    # When the run is processed
    planned, outcomes = plan_and_drain(sessions, settings, set_id)
    assert planned.run_id is not None

    # Then the rejected batch was sent exactly once and failed with the API's reason
    rejected = [e for e in _messages_log(standin) if e["status"] == 400]
    assert len(rejected) == 1 and outcomes["failed"] == 1
    poisoned = set(rejected[0]["issue_ids"])
    later = [e for e in _messages_log(standin) if e["seq"] > rejected[0]["seq"]]
    assert all(set(e["issue_ids"]) != poisoned for e in later)
    rows = assert_each_issue_settled_once(sessions, planned.run_id)
    failed = {r.issue_id: r.reason for r in rows if r.status == "failed"}
    assert set(failed) == poisoned
    assert all("400 invalid_request_error" in r and "not retried" in r for r in failed.values())
    # And the other batches were answered
    assert sum(r.status == "answered" for r in rows) == 30


def test_a_large_max_tokens_call_streams_and_an_overload_mid_stream_is_retried(standin: StandIn) -> None:
    # Given a call whose max_tokens is above the streaming threshold, and a stand-in whose streams
    # break with an overloaded_error event after message_start (the SDK raises it with HTTP 200)
    issues = [PromptIssue(9000 + i, 10, t.text) for i, t in enumerate(islice(seed_issues(), 5))]
    prompt = build_prompt(issues, 1.35)
    request = CallRequest(
        model="claude-sonnet-4-6",
        system=prompt.system,
        user=prompt.user,
        max_tokens=STREAMING_THRESHOLD + 1_000,
        estimated_input_tokens=prompt.estimated_input_tokens,
        tools=(prompt.tool,),
        tool_choice=prompt.tool_choice,
    )
    settings = Settings(retry_base_s=0.01, retry_max_backoff_s=0.05, retry_max_attempts=3)
    client = BudgetAwareLLMClient(
        mode=ReplayMode.MOCK_TOOLS, model="claude-sonnet-4-6", settings=settings, base_url=standin.url
    )
    standin.set_faults(FaultPlan(p_stream_overloaded=1.0))
    failed: list[Attempt] = []

    # When it is sent, then each broken stream is retried, and the last error surfaces as retryable
    with pytest.raises(RetryableCallError, match="overloaded_error"):
        client.send(request, on_attempt=failed.append)
    assert [(a.http_status, a.error_type) for a in failed] == [(200, "overloaded_error")] * 3
    assert all(a.request_id for a in failed)

    # When the stand-in streams normally again, then the streamed answer is complete
    standin.set_faults(FaultPlan())
    result = client.send(request)
    assert validate(result.tool_input, [i.issue_id for i in issues]).complete
    log = _messages_log(standin)
    assert len(log) == 4 and all(e["stream"] for e in log)
    assert result.request_id == log[-1]["request_id"]
