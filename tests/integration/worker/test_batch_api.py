"""The batch-api run mode end to end: PostgreSQL, Redis, real worker processes and the stand-in's
Message Batches API through the anthropic SDK. The test plays the beat: it sends the poll task."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.queue.celery_app import POLL_MESSAGE_BATCHES, make_celery
from budgetq.adapters.store import runs as run_store
from budgetq.adapters.store.engine import transaction
from budgetq.devtools.standin.server import BatchBehaviour
from budgetq.services.planning import enqueue, plan_run
from budgetq.settings import Settings
from tests.integration.pipeline import make_seed_set
from tests.integration.worker.conftest import OwnDatabase

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def sessions(own_database: OwnDatabase) -> sessionmaker[Session]:
    """A database of the test's own: a poll submits every waiting batch-api run of its database, and a
    run another test left waiting went to this test's stand-in (its Message Batch wrote the prompt cache
    the test counts on writing)."""
    return own_database.sessions


@pytest.fixture
def test_settings(test_settings: Settings, own_database: OwnDatabase) -> Settings:
    return test_settings.model_copy(update={"database_url": own_database.url})


@pytest.fixture
def start_worker(own_start_worker: Callable[..., Any]) -> Callable[..., Any]:
    """Workers on the test's own database."""
    return own_start_worker


def _app(settings: Settings) -> Celery:
    return make_celery(settings, settings.redis_url or "")


def _drive(app: Celery, sessions: sessionmaker[Session], run_id: int, timeout_s: float = 60) -> str:
    """Be the beat: send the poll task until the run leaves 'running'; its final status."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.send_task(POLL_MESSAGE_BATCHES)
        time.sleep(0.4)
        with transaction(sessions) as session:
            status = run_store.progress(session, run_id).status
        if status != "running":
            return status
    raise AssertionError(f"run {run_id} still running after {timeout_s}s: {_summary(sessions, run_id)}")


def _rows(sessions: sessionmaker[Session], sql: str, run_id: int) -> list[tuple[Any, ...]]:
    with transaction(sessions) as session:
        return [tuple(r) for r in session.execute(text(sql), {"run": run_id})]


def _snapshot(sessions: sessionmaker[Session], run_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a run wrote, in a stable order."""
    return {
        "results": _rows(sessions, "SELECT issue_id, batch_id, llm_call_id, category FROM results "
                         "WHERE run_id = :run ORDER BY issue_id", run_id),
        "issues": _rows(sessions, "SELECT issue_id, status, reason FROM run_issues WHERE run_id = :run "
                        "ORDER BY issue_id", run_id),
        "batches": _rows(sessions, "SELECT id, status, api_mode, failures, last_error FROM batches "
                         "WHERE run_id = :run ORDER BY id", run_id),
        "calls": _rows(sessions, "SELECT id, batch_id, status, message_batch_id, cost_usd FROM llm_calls "
                       "WHERE run_id = :run ORDER BY id", run_id),
        "message_batches": _rows(sessions, "SELECT id, api_id, status, ingested FROM message_batches "
                                 "WHERE run_id = :run ORDER BY id", run_id),
    }  # fmt: skip


def _summary(sessions: sessionmaker[Session], run_id: int) -> dict[str, object]:
    """Counts of what a run wrote, and its Message Batches, for failure messages."""
    snapshot = _snapshot(sessions, run_id)
    counts = {k: len(v) for k, v in snapshot.items()}
    return {**counts, "message_batches": snapshot["message_batches"], "batches": snapshot["batches"][:10]}


_UNSENT = """
SELECT count(*) FROM batches b
WHERE b.run_id = :run AND b.status IN ('queued', 'running') AND NOT EXISTS (
    SELECT 1 FROM message_batch_requests r JOIN message_batches m ON m.id = r.message_batch_id
    WHERE r.batch_id = b.id AND m.status = 'in_progress'
)
"""


def _wait_submitted(sessions: sessionmaker[Session], run_id: int, timeout_s: float = 30) -> int:
    """Wait until every batch of the run is in a confirmed Message Batch; how many Message Batches."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with transaction(sessions) as session:
            # A batch still queued, or claimed by the submitter but not yet in a Message Batch the API
            # confirmed (the submitter creates its Message Batches one after another).
            unsent = session.scalar(text(_UNSENT), {"run": run_id})
            states = session.scalars(
                text("SELECT status FROM message_batches WHERE run_id = :run"), {"run": run_id}
            ).all()
        if states and not unsent and all(s == "in_progress" for s in states):
            return len(states)
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} not submitted after {timeout_s}s: {_summary(sessions, run_id)}")


def test_a_nightly_batch_api_run_answers_every_issue_once_across_a_worker_restart(
    sessions: sessionmaker[Session],
    test_settings: Settings,
    start_worker: Callable[..., Any],
    standin: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given 500 seed issues, nightly runs in batch-api mode, Message Batches that take 2 s to process
    # and at most 2 requests per Message Batch (so the run needs several)
    set_id = make_seed_set(sessions, f"nightly-batch-{uuid.uuid4().hex[:8]}", 500)
    monkeypatch.setenv("BUDGETQ_NIGHTLY_API_MODE", "batch-api")
    settings = Settings()
    standin.batches.set_behaviour(BatchBehaviour(processing_delay_s=2.0))
    worker = start_worker(concurrency=2, BUDGETQ_MESSAGE_BATCH_MAX_REQUESTS="2")

    # When the nightly run is planned and enqueued, and its worker is killed once the Message Batches
    # are submitted (before any result is ingested)
    planned = plan_run(sessions, settings, set_id, kind="nightly", nightly_date=dt.date(2026, 11, 30))
    assert planned.run_id is not None
    run_id = planned.run_id
    app = _app(settings)
    enqueue(app, sessions, planned.batch_ids)
    message_batches = _wait_submitted(sessions, run_id)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    assert _rows(sessions, "SELECT count(*) FROM results WHERE run_id = :run", run_id) == [(0,)]
    start_worker(concurrency=2)
    status = _drive(app, sessions, run_id)

    # Then the run succeeded with exactly one result per issue, from the Message Batches
    assert status == "succeeded"
    assert message_batches == -(-len(planned.batch_ids) // 2)
    per_issue = _rows(
        sessions,
        "SELECT i.id, count(r.id) FROM issues i LEFT JOIN results r ON r.issue_id = i.id AND r.run_id = :run "
        f"WHERE i.set_id = {set_id} GROUP BY i.id",
        run_id,
    )
    assert len(per_issue) == 500 and all(n == 1 for _, n in per_issue)
    # And one llm_calls row per request, each tagged with its Message Batch and billed at the batch tier
    calls = _rows(
        sessions,
        "SELECT batch_id, message_batch_id, service_tier, status FROM llm_calls WHERE run_id = :run",
        run_id,
    )
    assert len(calls) == len(planned.batch_ids) == len({c[0] for c in calls})
    assert all(c[1] and c[1].startswith("msgbatch_") and c[2] == "batch" and c[3] == "ok" for c in calls)
    # The run ends with its last batch's settlement; the poller closes its Message Batch in the next
    # transaction, so under load that close may come a moment after the run ended.
    deadline = time.monotonic() + 20
    snapshot = _snapshot(sessions, run_id)
    while not all(m[2] == "ingested" for m in snapshot["message_batches"]) and time.monotonic() < deadline:
        time.sleep(0.2)
        snapshot = _snapshot(sessions, run_id)
    assert all(m[2] == "ingested" for m in snapshot["message_batches"])

    # When the same results are ingested again (as by a poller that died before marking them ingested)
    with transaction(sessions) as session:
        session.execute(
            text("UPDATE message_batches SET status = 'in_progress' WHERE run_id = :run"), {"run": run_id}
        )
    app.send_task(POLL_MESSAGE_BATCHES)
    deadline = time.monotonic() + 30
    while _rows(sessions, "SELECT count(*) FROM message_batches WHERE run_id = :run AND status <> 'ingested'",
                run_id) != [(0,)]:  # fmt: skip
        assert time.monotonic() < deadline, _snapshot(sessions, run_id)
        time.sleep(0.2)

    # Then nothing changed but the Message Batches' own bookkeeping
    again = _snapshot(sessions, run_id)
    assert {k: v for k, v in again.items() if k != "message_batches"} == {
        k: v for k, v in snapshot.items() if k != "message_batches"
    }


def _total_cost(sessions: sessionmaker[Session], run_id: int) -> tuple[Decimal, tuple[int, ...]]:
    (row,) = _rows(
        sessions,
        "SELECT sum(cost_usd), sum(input_tokens), sum(output_tokens), sum(cache_read_input_tokens), "
        "sum(cache_creation_input_tokens + cache_creation_1h_input_tokens), count(*) "
        "FROM llm_calls WHERE run_id = :run",
        run_id,
    )
    return Decimal(row[0]), tuple(int(v) for v in row[1:])


def test_the_same_work_costs_half_in_batch_api_mode(
    sessions: sessionmaker[Session],
    test_settings: Settings,
    start_worker: Callable[..., Any],
    standin: Any,
) -> None:
    # Given one set, planned at a fixed calibration so both runs pack it alike
    set_id = make_seed_set(sessions, f"half-{uuid.uuid4().hex[:8]}", 800)
    settings = test_settings.model_copy(update={"calibration": 1.35})
    start_worker(concurrency=1)  # one call at a time: the first writes the cache, the others read it
    app = _app(settings)

    # When it runs synchronously, then in batch-api mode, against the same stand-in (its cache emptied)
    sync = plan_run(sessions, settings, set_id, kind="manual", api_mode="sync")
    assert sync.run_id is not None
    enqueue(app, sessions, sync.batch_ids)
    assert _drive(app, sessions, sync.run_id) == "succeeded"
    standin.reset()
    batch = plan_run(sessions, settings, set_id, kind="manual", api_mode="batch-api")
    assert batch.run_id is not None
    assert [b.issue_ids for b in sync.plan.batches] == [b.issue_ids for b in batch.plan.batches]
    enqueue(app, sessions, batch.batch_ids)
    assert _drive(app, sessions, batch.run_id) == "succeeded"

    # Then they billed the same tokens, and the batch-api run cost half (to the cent): only the first
    # request's cache write differs, at the 1-hour rate the batch requests ask for
    sync_cost, sync_tokens = _total_cost(sessions, sync.run_id)
    batch_cost, batch_tokens = _total_cost(sessions, batch.run_id)
    assert sync_tokens == batch_tokens
    assert abs(batch_cost - sync_cost / 2) < Decimal("0.01"), (sync_cost, batch_cost)
    # And the cost views say the same
    views = dict(_rows(sessions, "SELECT run_id, cost_usd FROM cost_by_run WHERE run_id IN (:run, "
                       f"{batch.run_id})", sync.run_id))  # fmt: skip
    assert views == {sync.run_id: sync_cost, batch.run_id: batch_cost}
    tiers = _rows(sessions, "SELECT DISTINCT service_tier FROM llm_calls WHERE run_id = :run", batch.run_id)
    assert tiers == [("batch",)]
    writes = _rows(
        sessions,
        "SELECT sum(cache_creation_input_tokens), sum(cache_creation_1h_input_tokens) FROM llm_calls "
        "WHERE run_id = :run",
        batch.run_id,
    )
    assert writes[0][0] == 0 and writes[0][1] > 0


def _run_batch_api(sessions: sessionmaker[Session], settings: Settings, set_id: int) -> tuple[int, str]:
    """Plan a batch-api run of the set, enqueue it, drive it to its end: (run id, final status)."""
    planned = plan_run(sessions, settings, set_id, kind="manual", api_mode="batch-api")
    assert planned.run_id is not None
    app = _app(settings)
    enqueue(app, sessions, planned.batch_ids)
    return planned.run_id, _drive(app, sessions, planned.run_id)


def _assert_each_issue_ends_once(
    sessions: sessionmaker[Session], run_id: int, n: int
) -> list[tuple[Any, ...]]:
    """Every issue of the run ended answered, or failed with a reason; one result per answered issue."""
    issues = _rows(sessions, "SELECT status, reason FROM run_issues WHERE run_id = :run", run_id)
    assert len(issues) == n
    assert all(s == "answered" or (s == "failed" and r) for s, r in issues), issues
    results = _rows(
        sessions, "SELECT count(*), count(DISTINCT issue_id) FROM results WHERE run_id = :run", run_id
    )
    assert results[0][0] == results[0][1] == sum(s == "answered" for s, _ in issues)
    return issues


def test_errored_and_expired_requests_go_into_the_runs_next_message_batch(
    sessions: sessionmaker[Session], test_settings: Settings, start_worker: Callable[..., Any], standin: Any
) -> None:
    # Given Message Batches where a third of the requests error and a quarter expire, the default retry
    # path (resubmit), and batches of 20 issues that may fail twice
    set_id = make_seed_set(sessions, f"resubmit-{uuid.uuid4().hex[:8]}", 300)
    standin.batches.set_behaviour(BatchBehaviour(errored_rate=0.35, expired_rate=0.25, seed=11))
    start_worker(concurrency=2, BUDGETQ_BATCH_MAX_FAILURES="2")
    settings = test_settings.model_copy(update={"max_issues_per_call": 20})

    # When a batch-api run goes through
    run_id, status = _run_batch_api(sessions, settings, set_id)

    # Then every issue ends answered, or failed with a reason, exactly once
    issues = _assert_each_issue_ends_once(sessions, run_id, 300)
    assert status == ("succeeded" if all(s == "answered" for s, _ in issues) else "failed")
    # And the errored and expired requests are in llm_calls with their error, and were resubmitted
    calls = _rows(
        sessions, "SELECT status, error_type, message_batch_id FROM llm_calls WHERE run_id = :run", run_id
    )
    assert {"api_error", "expired"} <= {e for s, e, _ in calls if s != "ok"}
    assert all(m for _, _, m in calls)  # no synchronous call
    assert _rows(sessions, "SELECT count(*) > 1 FROM message_batches WHERE run_id = :run", run_id) == [
        (True,)
    ]

    # When every request expires, on a set of 8 issues in batches of 4
    small = make_seed_set(sessions, f"expire-{uuid.uuid4().hex[:8]}", 8)
    standin.batches.set_behaviour(BatchBehaviour(expired_rate=1.0))
    run_id, status = _run_batch_api(sessions, settings.model_copy(update={"max_issues_per_call": 4}), small)

    # Then the run fails, every issue with the reason, after retries and halving down to single issues
    assert status == "failed"
    issues = _assert_each_issue_ends_once(sessions, run_id, 8)
    assert all(s == "failed" and "expired" in r for s, r in issues), issues


def test_errored_and_expired_requests_go_to_synchronous_calls_when_configured(
    sessions: sessionmaker[Session], test_settings: Settings, start_worker: Callable[..., Any], standin: Any
) -> None:
    # Given Message Batches where a third of the requests error and a quarter expire, and the sync path
    set_id = make_seed_set(sessions, f"sync-path-{uuid.uuid4().hex[:8]}", 300)
    standin.batches.set_behaviour(BatchBehaviour(errored_rate=0.35, expired_rate=0.25, seed=11))
    start_worker(concurrency=2, BUDGETQ_MESSAGE_BATCH_RETRY_PATH="sync")
    settings = test_settings.model_copy(update={"max_issues_per_call": 20})

    # When a batch-api run goes through
    run_id, status = _run_batch_api(sessions, settings, set_id)

    # Then every issue is answered exactly once: the failed requests by synchronous calls
    assert status == "succeeded"
    issues = _assert_each_issue_ends_once(sessions, run_id, 300)
    assert all(s == "answered" for s, _ in issues)
    calls = _rows(
        sessions, "SELECT status, error_type, message_batch_id FROM llm_calls WHERE run_id = :run", run_id
    )
    assert {"api_error", "expired"} <= {e for s, e, m in calls if s != "ok" and m}
    synchronous = [c for c in calls if c[2] is None]
    assert synchronous and all(s == "ok" for s, _, _ in synchronous)
    # And none was sent in a second Message Batch (the run's first submission may itself go out as more
    # than one when a poll's submit and the run's own overlap; each batch is in one of them)
    resent = _rows(sessions, "SELECT batch_id FROM llm_calls WHERE run_id = :run AND message_batch_id IS NOT "
                   "NULL GROUP BY batch_id HAVING count(DISTINCT message_batch_id) > 1", run_id)  # fmt: skip
    assert resent == []
    tiers = _rows(sessions, "SELECT DISTINCT message_batch_id IS NULL, service_tier FROM llm_calls "
                  "WHERE run_id = :run AND status = 'ok' ORDER BY 1", run_id)  # fmt: skip
    assert tiers == [(False, "batch"), (True, "standard")]


def test_the_batch_api_path_keeps_the_same_guard_as_synchronous_calls(
    own_database: OwnDatabase,
    test_settings: Settings,
    start_worker: Callable[..., Any],
    make_standin: Callable[..., Any],
) -> None:
    # Given a stand-in billing 2 tokens per cl100k token in a 33,400-token window, and a batch-api run
    # planned at calibration 1.0 (far too low), so planned batches fill up to a guard they really break
    standin = make_standin(token_ratio=2.0, context_window=33_400)
    sessions = own_database.sessions
    settings = test_settings.model_copy(
        update={
            "database_url": own_database.url,
            "anthropic_base_url": standin.url,
            "calibration": 1.0,
            "context_window": 33_400,
            "max_tokens_per_call": 16_000,
            "output_tokens_per_issue": 160,
            "max_issues_per_call": 1_000,
        }
    )
    set_id = make_seed_set(sessions, f"guard-{uuid.uuid4().hex[:8]}", 400)
    start_worker(concurrency=2, BUDGETQ_DATABASE_URL=own_database.url, ANTHROPIC_BASE_URL=standin.url)

    # When it goes through
    run_id, status = _run_batch_api(sessions, settings, set_id)

    # Then every issue is answered, no request broke the guard, and batches were halved by their count
    assert status == "succeeded"
    assert all(s == "answered" for s, _ in _assert_each_issue_ends_once(sessions, run_id, 400))
    (calls,) = _rows(
        sessions,
        "SELECT count(*), count(*) FILTER (WHERE billed_input_tokens + max_tokens > 0.75 * context_window), "
        "count(*) FILTER (WHERE message_batch_id IS NULL) FROM llm_calls WHERE run_id = :run",
        run_id,
    )
    assert calls[0] > 0 and calls[1] == 0 and calls[2] == 0
    splits = _rows(
        sessions, "SELECT count(*) FROM batches WHERE run_id = :run AND status = 'split' "
        "AND last_error LIKE 'counted input %exceeds the guard%'", run_id,
    )  # fmt: skip
    assert splits[0][0] > 0


def _spend_rows(sessions: sessionmaker[Session], run_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """The run's spend figures and reservations, in a stable order."""
    return {
        "run": _rows(sessions, "SELECT spent_usd, reserved_usd FROM runs WHERE id = :run", run_id),
        "reservations": _rows(sessions, "SELECT id, batch_id, amount_usd, actual_usd, status "
                              "FROM spend_reservations WHERE run_id = :run ORDER BY id", run_id),
    }  # fmt: skip


def test_a_worker_killed_between_submit_and_ingest_leaves_its_reservations_to_be_settled_once(
    sessions: sessionmaker[Session],
    test_settings: Settings,
    start_worker: Callable[..., Any],
    standin: Any,
) -> None:
    # Given a capped batch-api run of 60 issues in batches of 10, Message Batches that take 2 s, and a
    # worker killed once they are submitted (their requests' spend reserved, no result ingested)
    set_id = make_seed_set(sessions, f"kill-cap-{uuid.uuid4().hex[:8]}", 60)
    standin.batches.set_behaviour(BatchBehaviour(processing_delay_s=2.0))
    settings = test_settings.model_copy(update={"max_issues_per_call": 10})
    worker = start_worker(concurrency=2)
    planned = plan_run(
        sessions, settings, set_id, kind="manual", api_mode="batch-api", spend_cap_usd=Decimal("50")
    )
    assert planned.run_id is not None
    run_id = planned.run_id
    app = _app(settings)
    enqueue(app, sessions, planned.batch_ids)
    _wait_submitted(sessions, run_id)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    held = _spend_rows(sessions, run_id)
    assert [r[4] for r in held["reservations"]] == ["held"] * len(planned.batch_ids)
    assert held["run"] == [(0, sum(r[2] for r in held["reservations"]))]

    # When another worker polls
    start_worker(concurrency=2)
    assert _drive(app, sessions, run_id) == "succeeded"

    # Then each reservation settled once, to the cost of its request's result, and nothing is held
    settled = _rows(
        sessions,
        "SELECT s.status, s.actual_usd = c.cost_usd FROM spend_reservations s JOIN message_batch_requests q "
        "ON q.spend_reservation_id = s.id JOIN message_batches m ON m.id = q.message_batch_id "
        "JOIN llm_calls c ON c.message_batch_id = m.api_id AND c.batch_id = q.batch_id WHERE s.run_id = :run",
        run_id,
    )
    assert settled == [("settled", True)] * len(planned.batch_ids)
    (billed,) = _rows(sessions, "SELECT sum(cost_usd) FROM llm_calls WHERE run_id = :run", run_id)
    spend = _spend_rows(sessions, run_id)
    assert spend["run"] == [(billed[0], 0)]

    # When the results are ingested again
    with transaction(sessions) as session:
        session.execute(
            text("UPDATE message_batches SET status = 'in_progress' WHERE run_id = :run"), {"run": run_id}
        )
    app.send_task(POLL_MESSAGE_BATCHES)
    deadline = time.monotonic() + 30
    while _rows(sessions, "SELECT count(*) FROM message_batches WHERE run_id = :run AND status <> 'ingested'",
                run_id) != [(0,)]:  # fmt: skip
        assert time.monotonic() < deadline, _snapshot(sessions, run_id)
        time.sleep(0.2)

    # Then no reservation moved and nothing more was spent
    assert _spend_rows(sessions, run_id) == spend
