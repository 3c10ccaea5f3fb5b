"""The worker's spend cap on its real batch processing (in this process, against the stand-in)."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store.engine import transaction
from budgetq.domain.catalog import get_model, prices_on
from budgetq.domain.spend import reservation_for
from budgetq.services.planning import plan_run
from budgetq.settings import Settings
from tests.integration.pipeline import make_seed_set
from tests.integration.worker.inline import assert_each_issue_settled_once, drain


def capped_run(
    sessions: sessionmaker[Session], settings: Settings, cap_in_calls: float
) -> tuple[int, list[int]]:
    """A run of 8 one-issue batches whose cap is ``cap_in_calls`` times the smallest worst case."""
    set_id = make_seed_set(sessions, f"cap-{uuid.uuid4().hex[:8]}", 8)
    planned = plan_run(
        sessions, settings.model_copy(update={"max_issues_per_call": 1}), set_id, kind="manual"
    )
    assert planned.run_id is not None
    with transaction(sessions) as session:
        max_tokens = session.scalar(
            text("SELECT max(max_tokens) FROM batches WHERE run_id = :r"), {"r": planned.run_id}
        )
        least = reservation_for(0, max_tokens, prices_on(get_model(settings.model), date.today()))
        session.execute(
            text("UPDATE runs SET spend_cap_usd = :c WHERE id = :r"),
            {"c": (least * Decimal(cap_in_calls)).quantize(Decimal("0.000001")), "r": planned.run_id},
        )
    return planned.run_id, list(planned.batch_ids)


def test_a_cap_below_one_call_stops_the_run_before_anything_is_sent(
    sessions: sessionmaker[Session], test_settings: Settings, standin: Any
) -> None:
    # Given a run of 8 batches whose cap is half of one call's worst case
    run_id, batch_ids = capped_run(sessions, test_settings, 0.5)

    # When the worker processes its batches
    outcomes = drain(test_settings, batch_ids)

    # Then the first stops the run and the others are not even claimed; nothing reached the API
    assert outcomes == {"run-stopped": 1, "not-claimed": 7}
    assert [e for e in standin.log() if e["path"] == "/v1/messages"] == []
    # And the run says why with the figures, and every issue failed with that reason
    with transaction(sessions) as session:
        run = session.execute(
            text("SELECT status, stop_reason, spent_usd, reserved_usd FROM runs WHERE id = :r"), {"r": run_id}
        ).one()
    assert run.status == "stopped"
    assert run.stop_reason.startswith(f"spend cap reached (run {run_id}): spent 0.000000 + reserved 0.000000")
    assert (run.spent_usd, run.reserved_usd) == (0, 0)
    rows = assert_each_issue_settled_once(sessions, run_id)
    assert {r.reason for r in rows} == {run.stop_reason}


def test_each_call_settles_to_its_actual_cost_within_the_cap(
    sessions: sessionmaker[Session], test_settings: Settings, standin: Any
) -> None:
    # Given a run of 8 batches whose cap fits one call's worst case (and a little more)
    run_id, batch_ids = capped_run(sessions, test_settings, 1.5)

    # When the worker processes them one after another
    outcomes = drain(test_settings, batch_ids)

    # Then each call reserved its worst case, settled to its actual cost, and freed the rest for the next:
    # all 8 are answered, and the run spent exactly what its calls cost
    assert outcomes == {"succeeded": 8}
    assert_each_issue_settled_once(sessions, run_id)
    with transaction(sessions) as session:
        run = session.execute(
            text("SELECT status, spent_usd, reserved_usd, spend_cap_usd FROM runs WHERE id = :r"),
            {"r": run_id},
        ).one()
        billed = session.scalar(text("SELECT sum(cost_usd) FROM llm_calls WHERE run_id = :r"), {"r": run_id})
        statuses = session.scalars(
            text("SELECT DISTINCT status FROM spend_reservations WHERE run_id = :r"), {"r": run_id}
        ).all()
    assert run.status == "succeeded"
    assert (run.spent_usd, run.reserved_usd) == (billed, 0)
    assert run.spent_usd <= run.spend_cap_usd
    assert statuses == ["settled"]
