"""A REPROCESS message delivered twice (acks_late: its worker died after the run was written) plans one
run, not two: the task's request key is its message id (docs/failure-semantics.md)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.queue.celery_app import REPROCESS, make_celery
from budgetq.adapters.store import issues as issue_store
from budgetq.adapters.store.engine import transaction
from budgetq.adapters.store.models import Batch, Run
from budgetq.settings import Settings
from scheduler import tasks

pytestmark = pytest.mark.integration


def test_a_redelivered_reprocess_message_starts_one_run(
    sessions: sessionmaker[Session], test_settings: Settings, broker_url: str
) -> None:
    # Given a set, and the scheduler's real REPROCESS task on the test broker
    with transaction(sessions) as session:
        set_id = issue_store.create_set(session, f"redeliver-{uuid.uuid4().hex[:8]}")
        issue_store.insert_issues(
            session,
            set_id,
            [issue_store.NewIssue(10, f"orders.amount null in row batch {i}", None) for i in range(5)],
        )
    app = make_celery(test_settings, broker_url, name="test-scheduler")
    tasks.register(app, test_settings)
    message_id = str(uuid.uuid4())

    # When the same message (same task id) runs twice, as Redis redelivers an unacknowledged task
    first = app.tasks[REPROCESS].apply(args=[set_id, None], task_id=message_id).get()
    second = app.tasks[REPROCESS].apply(args=[set_id, None], task_id=message_id).get()
    # And a new request (another message) asks again
    third = app.tasks[REPROCESS].apply(args=[set_id, None], task_id=str(uuid.uuid4())).get()

    # Then the redelivery returns the first run and writes nothing; the new request gets its own run
    with transaction(sessions) as session:
        runs = session.scalar(select(func.count()).select_from(Run).where(Run.set_id == set_id))
        batches = session.scalar(
            select(func.count())
            .select_from(Batch)
            .join(Run, Run.id == Batch.run_id)
            .where(Run.set_id == set_id)
        )
    assert first is not None and second == first and third not in (None, first)
    assert runs == 2
    assert batches == 2
