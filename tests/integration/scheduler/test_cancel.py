"""`budgetq cancel` on a running 2,000-issue run: a real worker process, a stand-in with latency.

No batch is called after the cancel commits, the calls in flight finish and are recorded, and
`reprocess --failed-only` takes exactly the cancelled rest; the results then hold each issue once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store.engine import transaction
from tests.integration.conftest import Budgetq
from tests.integration.pipeline import make_seed_set, wait_for_run

ISSUES = 2000


@pytest.fixture
def budgetq(
    run_budgetq: Budgetq, monkeypatch: pytest.MonkeyPatch, settings_env: dict[str, str], tmp_path: Path
) -> Budgetq:
    """`budgetq ARGS` on the test servers and the test's stand-in; batches go to the test's workers."""
    for key, value in settings_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BUDGETQ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BUDGETQ_MAX_ISSUES_PER_CALL", "20")
    return run_budgetq


def _scalar(sessions: sessionmaker[Session], sql: str, **params: Any) -> Any:
    with transaction(sessions) as session:
        return session.scalar(text(sql), params)


def _batches_called_after(
    sessions: sessionmaker[Session], log: list[Any], run_id: int, at: float
) -> set[int]:
    """The batches of ``run_id`` whose issues reached the stand-in's /v1/messages after ``at`` (epoch s)."""
    issue_ids = {
        i for e in log if e["path"] == "/v1/messages" and e["received_at"] > at for i in e["issue_ids"]
    }
    if not issue_ids:
        return set()
    with transaction(sessions) as session:
        rows = session.execute(
            text(
                "SELECT DISTINCT bi.batch_id FROM batch_issues bi JOIN batches b ON b.id = bi.batch_id "
                "WHERE b.run_id = :r AND bi.issue_id = ANY(:ids)"
            ),
            {"r": run_id, "ids": list(issue_ids)},
        ).scalars()
        return set(rows)


def test_cancel_stops_queued_batches_records_those_in_flight_and_reprocess_takes_the_rest(
    budgetq: Budgetq,
    sessions: sessionmaker[Session],
    standin: Any,
    start_worker: Callable[..., Any],
) -> None:
    # Given a running 2,000-issue run (100 batches) on a real worker, against a stand-in taking 0.4 s a call
    standin.config.latency_s = 0.4
    name = f"cancel-{uuid.uuid4().hex[:8]}"
    set_id = make_seed_set(sessions, name, ISSUES)
    start_worker(concurrency=4)
    started = budgetq("run", name, "--no-wait", "--workers", "0")
    assert started.code == 0, started
    run_id = _scalar(sessions, "SELECT max(id) FROM runs WHERE set_id = :s", s=set_id)
    deadline = time.monotonic() + 60
    while (
        _scalar(sessions, "SELECT count(*) FROM batches WHERE run_id = :r AND status = 'succeeded'", r=run_id)
        < 8
    ):
        assert time.monotonic() < deadline, "the worker answered fewer than 8 batches in 60 s"
        time.sleep(0.1)

    # When it is cancelled
    cancelled = budgetq("cancel", str(run_id))
    committed = time.time()  # the cancel's transaction committed before the command returned
    in_flight = set(
        _scalar(
            sessions, "SELECT array_agg(id) FROM batches WHERE run_id = :r AND status = 'running'", r=run_id
        )
        or []
    )

    # Then it says what it did
    assert cancelled.code == 0, cancelled
    assert f"run {run_id} cancelled:" in cancelled.stdout
    # And once the calls in flight are done, no batch but those was called after the cancel committed
    deadline = time.monotonic() + 60
    while _scalar(
        sessions, "SELECT count(*) FROM batches WHERE run_id = :r AND status = 'running'", r=run_id
    ):
        assert time.monotonic() < deadline, "batches still running 60 s after the cancel"
        time.sleep(0.2)
    time.sleep(1.0)  # tasks still queued in Redis are delivered and refused
    assert _batches_called_after(sessions, standin.log(), run_id, committed) <= in_flight
    with transaction(sessions) as session:
        statuses = {
            s: n
            for s, n in session.execute(
                text("SELECT status, count(*) FROM batches WHERE run_id = :r GROUP BY status"), {"r": run_id}
            )
        }
        issues = dict(
            session.execute(
                text("SELECT status, count(*) FROM run_issues WHERE run_id = :r GROUP BY status"),
                {"r": run_id},
            ).all()
        )
        called_cancelled = session.scalar(
            text(
                "SELECT count(*) FROM llm_calls c JOIN batches b ON b.id = c.batch_id "
                "WHERE b.run_id = :r AND b.status = 'cancelled'"
            ),
            {"r": run_id},
        )
        results = session.scalar(text("SELECT count(*) FROM results WHERE run_id = :r"), {"r": run_id})
        run_status = session.scalar(text("SELECT status FROM runs WHERE id = :r"), {"r": run_id})
    assert run_status == "cancelled"
    assert set(statuses) <= {"succeeded", "cancelled"} and statuses.get("cancelled", 0) > 0, statuses
    assert called_cancelled == 0  # a cancelled batch was never called
    # In-flight calls were recorded: every answered issue has its result; none is pending or lost
    assert set(issues) <= {"answered", "cancelled"} and sum(issues.values()) == ISSUES, issues
    assert results == issues["answered"]

    # When the rest is reprocessed
    again = budgetq("reprocess", name, "--failed-only", "--no-wait", "--workers", "0")
    assert again.code == 0, again
    assert f"{issues['cancelled']:,} issues in" in again.stdout, again.stdout
    reprocess_id = _scalar(sessions, "SELECT max(id) FROM runs WHERE set_id = :s", s=set_id)
    standin.config.latency_s = 0.0
    assert wait_for_run(sessions, reprocess_id, timeout_s=120).status == "succeeded"

    # Then the set's results hold every issue once, answered
    exported = budgetq("results", name, "--format", "jsonl")
    assert exported.code == 0, exported
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(rows) == ISSUES and len({r["issue_id"] for r in rows}) == ISSUES
    assert {r["status"] for r in rows} == {"answered"} and all(r["diagnosis"] for r in rows)
    assert {r["run_id"] for r in rows} == {run_id, reprocess_id}


def test_a_cancelled_batch_api_run_submits_nothing(
    budgetq: Budgetq,
    sessions: sessionmaker[Session],
    standin: Any,
    start_worker: Callable[..., Any],
    test_settings: Any,
) -> None:
    # Given a planned batch-api run whose batches are queued, not yet submitted
    from budgetq.adapters.queue.celery_app import POLL_MESSAGE_BATCHES, make_celery
    from budgetq.services.planning import enqueue, plan_run

    set_id = make_seed_set(sessions, f"cancel-mb-{uuid.uuid4().hex[:8]}", 200)
    planned = plan_run(sessions, test_settings, set_id, kind="manual", api_mode="batch-api")
    assert planned.run_id is not None

    # When it is cancelled, and then its tasks reach a worker and the poll runs
    cancelled = budgetq("cancel", str(planned.run_id))
    assert cancelled.code == 0, cancelled
    start_worker(concurrency=2)
    app = make_celery(test_settings, test_settings.redis_url or "")
    enqueue(app, sessions, planned.batch_ids)
    for _ in range(5):
        app.send_task(POLL_MESSAGE_BATCHES)
        time.sleep(0.5)

    # Then no Message Batch was created and every batch ended cancelled
    assert [e["path"] for e in standin.log() if "batches" in e["path"] or e["path"] == "/v1/messages"] == []
    assert (
        _scalar(
            sessions,
            "SELECT count(*) FROM batches WHERE run_id = :r AND status <> 'cancelled'",
            r=planned.run_id,
        )
        == 0
    )
    assert _scalar(sessions, "SELECT count(*) FROM message_batches WHERE run_id = :r", r=planned.run_id) == 0
