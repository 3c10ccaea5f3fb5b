"""Every request a Message Batch create may have sent has its ``llm_calls`` row (issue 17, point 7b): a
worker SIGKILLed after its create reached the API but before the id came back leaves rows ``unknown``,
whose worst case the cost views show beside the billed spend. Real worker processes, PostgreSQL,
Redis and the stand-in's Message Batches API through the anthropic SDK; the test plays the beat.
"""

from __future__ import annotations

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
from budgetq.adapters.store.engine import transaction
from budgetq.devtools.standin.server import BatchBehaviour
from budgetq.services.planning import enqueue, plan_run
from budgetq.settings import Settings
from tests.integration.pipeline import make_seed_set
from tests.integration.worker.conftest import OwnDatabase

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ISSUES, PER_CALL = 40, 10  # 4 batches, the 4 requests of one Message Batch


def _rows(sessions: sessionmaker[Session], sql: str, run_id: int) -> list[tuple[Any, ...]]:
    with transaction(sessions) as session:
        return [tuple(r) for r in session.execute(text(sql), {"run": run_id})]


def _accepted(standin: Any) -> int:
    """The requests of every Message Batch the stand-in created (whether its id reached anyone)."""
    return sum(sum(b["request_counts"].values()) for b in standin.batches.summary())


def test_a_worker_killed_after_its_create_reached_the_api_leaves_a_row_for_every_request_sent(
    own_database: OwnDatabase,
    test_settings: Settings,
    start_worker: Callable[..., Any],
    standin: Any,
) -> None:
    # Given a stand-in that creates a Message Batch at once but answers the create 60 s later, workers
    # whose submissions are given up 3 s after they stop renewing, and a batch-api run of 4 batches
    sessions = own_database.sessions
    settings = test_settings.model_copy(
        update={"max_issues_per_call": PER_CALL, "database_url": own_database.url}
    )
    env = {"BUDGETQ_DATABASE_URL": own_database.url, "BUDGETQ_MESSAGE_BATCH_SUBMIT_LEASE_S": "3"}
    standin.batches.set_behaviour(BatchBehaviour(create_delay_s=60.0))
    worker = start_worker(concurrency=2, **env)
    set_id = make_seed_set(sessions, f"unknown-{uuid.uuid4().hex[:8]}", ISSUES)
    planned = plan_run(sessions, settings, set_id, kind="manual", api_mode="batch-api")
    assert planned.run_id is not None and len(planned.batch_ids) == ISSUES // PER_CALL
    run_id = planned.run_id
    app: Celery = make_celery(settings, settings.redis_url or "")

    # When the run is enqueued and its worker is SIGKILLed once the create reached the API (the Message
    # Batch exists, its id never came back)
    enqueue(app, sessions, planned.batch_ids)
    deadline = time.monotonic() + 30
    nudge = time.monotonic() + 1
    while not standin.batches.summary():
        assert time.monotonic() < deadline, "no Message Batch was created"
        time.sleep(0.05)
        if time.monotonic() > nudge:
            # The submit task may have found the batches still locked by the enqueuer and left them to
            # the next poll: be the beat until the create is sent.
            app.send_task(POLL_MESSAGE_BATCHES)
            nudge = time.monotonic() + 1
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    in_flight = _rows(sessions, "SELECT status, message_batch_id, service_tier, unknown_usd > 0 "
                      "FROM llm_calls WHERE run_id = :run", run_id)  # fmt: skip

    # And another worker takes over, the beat polling, with creates now answered at once
    standin.batches.set_behaviour(BatchBehaviour())
    start_worker(concurrency=2, **env)
    deadline = time.monotonic() + 60
    status = "running"
    while status == "running":
        assert time.monotonic() < deadline, _rows(
            sessions, "SELECT * FROM batches WHERE run_id = :run", run_id
        )
        app.send_task(POLL_MESSAGE_BATCHES)
        time.sleep(0.4)
        ((status,),) = _rows(sessions, "SELECT status FROM runs WHERE id = :run", run_id)

    # Then the run succeeded, and the stand-in accepted every request twice (the first Message Batch
    # lost with its worker: paid, as the docs admit)
    assert status == "succeeded"
    accepted = _accepted(standin)
    assert accepted == 2 * len(planned.batch_ids)
    # And every request it accepted is one llm_calls row: answered (ok) or unknown, none pending; the
    # rows of the lost create were written before it was sent (pending, at the batch rate)
    calls = _rows(sessions, "SELECT batch_id, status, service_tier, unknown_usd, message_batch_id "
                  "FROM llm_calls WHERE run_id = :run ORDER BY id", run_id)  # fmt: skip
    assert len(calls) == accepted, calls
    assert sorted(s for _, s, _, _, _ in calls) == ["ok"] * 4 + ["unknown"] * 4, calls
    assert in_flight == [("pending", None, "batch", True)] * 4
    assert all(t == "batch" for _, _, t, _, _ in calls)
    # And the unknown rows' worst case is their requests' reservations, kept unknown, and is what the
    # cost views show as unknown spend beside the cost (billed, were this not the stand-in)
    kept = _rows(sessions, "SELECT sum(amount_usd) FROM spend_reservations WHERE run_id = :run "
                 "AND status = 'unknown'", run_id)[0][0]  # fmt: skip
    unknown = sum((u for _, s, _, u, _ in calls if s == "unknown"), Decimal(0))
    assert kept is not None and unknown == kept > 0
    view = _rows(sessions, "SELECT unknown_usd, cost_usd FROM cost_by_run WHERE run_id = :run", run_id)
    assert view[0][0] == unknown and view[0][1] > 0
    spend = _rows(
        sessions, "SELECT unknown_attempts, unknown_usd FROM unknown_spend WHERE run_id = :run", run_id
    )
    assert spend == [(4, unknown)]


def test_a_create_that_got_no_answer_leaves_its_requests_unknown_and_sends_them_once_more(
    own_database: OwnDatabase,
    test_settings: Settings,
    start_worker: Callable[..., Any],
    standin: Any,
) -> None:
    # Given a stand-in that creates a Message Batch at once but answers the create after 6 s, a worker
    # whose calls time out after 2 s, and a batch-api run of 4 batches
    sessions = own_database.sessions
    settings = test_settings.model_copy(
        update={"max_issues_per_call": PER_CALL, "database_url": own_database.url}
    )
    standin.batches.set_behaviour(BatchBehaviour(create_delay_s=6.0))
    start_worker(concurrency=2, BUDGETQ_DATABASE_URL=own_database.url, BUDGETQ_CALL_TIMEOUT_S="2")
    set_id = make_seed_set(sessions, f"no-answer-{uuid.uuid4().hex[:8]}", ISSUES)
    planned = plan_run(sessions, settings, set_id, kind="manual", api_mode="batch-api")
    assert planned.run_id is not None
    run_id = planned.run_id
    app: Celery = make_celery(settings, settings.redis_url or "")

    # When the run goes through, creates answered at once from the first one on (the beat polling)
    enqueue(app, sessions, planned.batch_ids)
    deadline = time.monotonic() + 60
    status = "running"
    while status == "running":
        assert time.monotonic() < deadline, standin.batches.create_log
        if standin.batches.summary() and standin.batches.behaviour.create_delay_s:
            standin.batches.set_behaviour(BatchBehaviour())
        app.send_task(POLL_MESSAGE_BATCHES)
        time.sleep(0.4)
        ((status,),) = _rows(sessions, "SELECT status FROM runs WHERE id = :run", run_id)

    # Then the unanswered create was not tried again within its call (it may exist: it does), its
    # requests went out once more in the next poll's create, and both are in llm_calls: 4 rows unknown
    # (that create may be billed), their reservations kept unknown, and 4 answered
    assert status == "succeeded"
    assert [len(ids) for _, ids in standin.batches.create_log] == [4, 4]
    assert _accepted(standin) == 8
    calls = _rows(sessions, "SELECT status, unknown_usd > 0 FROM llm_calls WHERE run_id = :run", run_id)
    assert sorted(calls) == [("ok", False)] * 4 + [("unknown", True)] * 4
    reservations = _rows(sessions, "SELECT status, count(*) FROM spend_reservations WHERE run_id = :run "
                         "GROUP BY status ORDER BY status", run_id)  # fmt: skip
    assert reservations == [("settled", 4), ("unknown", 4)]
