"""One issue set flows end to end: PostgreSQL, Redis, a Celery worker process and the stand-in."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store.engine import transaction
from budgetq.services.planning import plan_run
from budgetq.settings import Settings
from tests.integration.pipeline import make_seed_set, run_on_workers


def test_a_seed_subset_is_answered_once_per_issue_within_the_guard(
    sessions: sessionmaker[Session], test_settings: Settings, start_worker: Any, standin: Any
) -> None:
    # Given 600 issues of the seed scenario and a running worker process
    set_id = make_seed_set(sessions, f"spine-{uuid.uuid4().hex[:8]}", 600)
    start_worker(concurrency=4)

    # When the scheduler plans the set and enqueues its batches
    planned, progress = run_on_workers(sessions, test_settings, set_id)

    # Then every issue has exactly one result and no call broke the 75% guard
    assert progress.status == "succeeded", progress
    with transaction(sessions) as session:
        per_issue = session.execute(
            text(
                "SELECT i.id, count(r.id) FROM issues i LEFT JOIN results r ON r.issue_id = i.id "
                "AND r.run_id = :run WHERE i.set_id = :set GROUP BY i.id"
            ),
            {"run": planned.run_id, "set": set_id},
        ).all()
        over_guard = session.scalar(
            text(
                "SELECT count(*) FROM llm_calls WHERE run_id = :run "
                "AND billed_input_tokens + max_tokens > 0.75 * context_window"
            ),
            {"run": planned.run_id},
        )
        calls = session.execute(
            text("SELECT request_id, status FROM llm_calls WHERE run_id = :run"), {"run": planned.run_id}
        ).all()
    assert len(per_issue) == 600
    assert all(count == 1 for _, count in per_issue)
    assert over_guard == 0
    # And each call's request id is one the stand-in really answered
    served = {entry["request_id"] for entry in standin.log()}
    assert calls and all(request_id in served for request_id, _ in calls)


def test_batches_are_queued_in_priority_order(
    sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    # Given the seed scenario's mix of priorities
    set_id = make_seed_set(sessions, f"order-{uuid.uuid4().hex[:8]}", 1000)

    # When it is planned
    planned = plan_run(sessions, test_settings, set_id, kind="manual")

    # Then the batch ids come highest priority first, and every issue is in exactly one batch
    with transaction(sessions) as session:
        rows = session.execute(
            text("SELECT id, priority FROM batches WHERE run_id = :run ORDER BY seq"), {"run": planned.run_id}
        ).all()
        members = session.scalar(
            text(
                "SELECT count(DISTINCT bi.issue_id) FROM batch_issues bi "
                "JOIN batches b ON b.id = bi.batch_id WHERE b.run_id = :run"
            ),
            {"run": planned.run_id},
        )
    assert [r.id for r in rows] == list(planned.batch_ids)
    priorities = [r.priority for r in rows]
    assert priorities == sorted(priorities, reverse=True)
    assert members == 1000
