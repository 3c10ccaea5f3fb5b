"""A run whose batches cannot be handed to a broker ends with the reason, instead of staying 'running'
with nobody to work on it (docs/failure-semantics.md, "The broker cannot be reached at enqueue")."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.queue.celery_app import make_celery
from budgetq.adapters.store import issues as issue_store
from budgetq.adapters.store.engine import transaction
from budgetq.errors import EnqueueError
from budgetq.services.ondemand import start_run
from budgetq.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_a_run_the_broker_never_got_is_stopped_with_the_reason(
    sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    # Given a set and a broker URL where nothing listens
    with transaction(sessions) as session:
        set_id = issue_store.create_set(session, f"nobroker-{uuid.uuid4().hex[:8]}")
        issue_store.insert_issues(
            session,
            set_id,
            [issue_store.NewIssue(10, f"orders.amount null, load {i}", None) for i in range(5)],
        )
    app = make_celery(test_settings, "redis://127.0.0.1:9/0")

    # When a run is started
    with pytest.raises(EnqueueError, match="broker could not be reached") as raised:
        start_run(sessions, test_settings, app, set_id)

    # Then the run is stopped with the reason, every issue failed with it, and nothing was called
    with transaction(sessions) as session:
        run = session.execute(
            text("SELECT id, status, stop_reason FROM runs WHERE set_id = :s"), {"s": set_id}
        ).one()
        issues = session.execute(
            text("SELECT status, count(*) FROM run_issues WHERE run_id = :r GROUP BY status"), {"r": run.id}
        ).all()
        calls = session.execute(
            text("SELECT count(*) FROM llm_calls WHERE run_id = :r"), {"r": run.id}
        ).scalar()
    assert run.status == "stopped" and "broker could not be reached" in run.stop_reason
    assert [tuple(i) for i in issues] == [("failed", 5)]
    assert calls == 0
    assert f"run {run.id} stopped" in str(raised.value)
