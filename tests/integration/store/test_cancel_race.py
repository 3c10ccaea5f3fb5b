"""A cancel against batches claimed just before it: their next attempt is refused at the spend gate and
they end cancelled; a claim after the cancel gets nothing; --failed-only then selects every issue."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store import batches, lifecycle, spend
from budgetq.adapters.store.engine import transaction
from budgetq.adapters.store.selection import count_selected
from budgetq.domain.selector import Selector, SelectorKind
from budgetq.errors import NotFoundError, RunCancelledError
from budgetq.services.planning import plan_run
from budgetq.settings import Settings
from tests.integration.pipeline import make_seed_set


def test_a_batch_claimed_before_the_cancel_sends_no_further_attempt(
    sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    # Given a run of three one-issue batches, the first claimed by a worker
    set_id = make_seed_set(sessions, f"race-{uuid.uuid4().hex[:8]}", 3)
    settings = test_settings.model_copy(update={"max_issues_per_call": 1})
    planned = plan_run(sessions, settings, set_id, kind="manual")
    run_id, (first, second, _) = planned.run_id, planned.batch_ids
    assert run_id is not None
    with transaction(sessions) as session:
        claim = batches.claim(session, first, 60)
    assert claim is not None

    # When the run is cancelled
    with transaction(sessions) as session:
        done = lifecycle.cancel_run(session, run_id, "cancelled by a test")
    assert (done.batches_cancelled, done.issues_cancelled, done.batches_in_flight) == (2, 2, 1)

    # Then the claimed batch's next attempt is refused before anything is sent, and it ends cancelled
    with pytest.raises(RunCancelledError, match=f"run {run_id} was cancelled"):
        with transaction(sessions) as session:
            spend.reserve(session, run_id, first, Decimal("0.01"), None)
    with transaction(sessions) as session:
        lifecycle.end_cancelled(session, claim, "run cancelled before this attempt")
        # And a claim after the cancel gets nothing
        assert batches.claim(session, second, 60) is None
        statuses = session.execute(
            text("SELECT status, count(*) FROM batches WHERE run_id = :r GROUP BY status"), {"r": run_id}
        ).all()
        reserved = session.scalar(text("SELECT reserved_usd FROM runs WHERE id = :r"), {"r": run_id})
        # And --failed-only takes the three cancelled issues
        assert count_selected(session, set_id, Selector(SelectorKind.FAILED)) == 3
    assert [tuple(s) for s in statuses] == [("cancelled", 3)]
    assert reserved == 0

    # And a second cancel says the run already ended
    with pytest.raises(NotFoundError, match="already ended \\(cancelled\\)"):
        with transaction(sessions) as session:
            lifecycle.cancel_run(session, run_id, "again")
