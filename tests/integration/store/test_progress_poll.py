"""The live progress poll of a large run counts the open batches' members, not every issue row."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store import batches
from budgetq.adapters.store import runs as run_store
from budgetq.adapters.store.engine import transaction
from budgetq.services.planning import plan_run
from budgetq.settings import Settings
from tests.integration.pipeline import make_seed_set


def test_the_cheap_poll_counts_pending_issues_as_the_full_count_does(
    sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    # Given a run of 12 issues in 4 batches of 3, one of them answered and one claimed
    set_id = make_seed_set(sessions, f"poll-{uuid.uuid4().hex[:8]}", 12)
    planned = plan_run(
        sessions, test_settings.model_copy(update={"max_issues_per_call": 3}), set_id, kind="manual"
    )
    assert planned.run_id is not None and len(planned.batch_ids) == 4
    answered, claimed = planned.batch_ids[0], planned.batch_ids[1]
    with transaction(sessions) as session:
        assert batches.claim(session, claimed, 60) is not None
        session.execute(text("UPDATE batches SET status = 'succeeded' WHERE id = :b"), {"b": answered})
        session.execute(
            text(
                "UPDATE run_issues SET status = 'answered' WHERE run_id = :r AND issue_id IN "
                "(SELECT issue_id FROM batch_issues WHERE batch_id = :b)"
            ),
            {"r": planned.run_id, "b": answered},
        )

    # When it is polled both ways
    with transaction(sessions) as session:
        full = run_store.progress(session, planned.run_id)
        cheap = run_store.progress(session, planned.run_id, by_issue=False)

    # Then both see the same 9 issues waiting (a claimed batch's members are still pending) and the same
    # batches, and the cheap poll never read the answered ones
    assert full.issues == {"answered": 3, "pending": 9}
    assert cheap.issues == {"pending": 9}
    assert cheap.batches == full.batches
    assert cheap.batches_open == 3


def test_the_cheap_poll_reads_no_issue_row(sessions: sessionmaker[Session], test_settings: Settings) -> None:
    # Given a planned run
    set_id = make_seed_set(sessions, f"poll-plan-{uuid.uuid4().hex[:8]}", 6)
    planned = plan_run(sessions, test_settings, set_id, kind="manual")
    assert planned.run_id is not None

    # When another transaction holds run_issues locked against every reader
    with sessions() as locker:
        locker.execute(text("LOCK TABLE run_issues IN ACCESS EXCLUSIVE MODE"))

        # Then the cheap poll still answers (it reads no issue row), and the full count waits
        with sessions() as session:
            session.execute(text("SET LOCAL lock_timeout = '2s'"))
            cheap = run_store.progress(session, planned.run_id, by_issue=False)
            assert cheap.issues == {"pending": 6}
            with pytest.raises(sqlalchemy.exc.OperationalError, match="lock timeout"):
                run_store.progress(session, planned.run_id)
        locker.rollback()
