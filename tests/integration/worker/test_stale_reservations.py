"""Reservations that never settle do not hold a capped run forever: a reservation still held long
after it was made is given up as unknown (counted, no longer waited for), and an unknown one is
released after ``BUDGETQ_UNKNOWN_RESERVATION_TTL_S`` (its worst case stays in the cost views)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store import spend as spend_store
from budgetq.adapters.store.engine import transaction
from budgetq.domain.settle import Outcome
from budgetq.services.planning import plan_run
from budgetq.settings import Settings
from scheduler.reaper import reap_once
from tests.integration.pipeline import make_seed_set
from tests.integration.worker.inline import InlineQueue
from worker.process import BatchProcessor
from worker.resources import Resources

CAP = Decimal("1.000000")


def _run_with_a_stuck_reservation(sessions: sessionmaker[Session], settings: Settings) -> tuple[int, int]:
    """A capped one-batch run, most of whose cap is held by a reservation made two hours ago that
    nothing will settle (its settlement was lost); the run and its batch."""
    set_id = make_seed_set(sessions, f"stale-{uuid.uuid4().hex[:8]}", 3)
    planned = plan_run(sessions, settings, set_id, kind="manual")
    assert planned.run_id is not None and len(planned.batch_ids) == 1
    with transaction(sessions) as session:
        session.execute(
            text("UPDATE runs SET spend_cap_usd = :c WHERE id = :r"), {"c": CAP, "r": planned.run_id}
        )
        stuck = spend_store.reserve(session, planned.run_id, None, CAP - Decimal("0.000100"), None)
        session.execute(
            text("UPDATE spend_reservations SET created_at = now() - interval '2 hours' WHERE id = :i"),
            {"i": stuck.id},
        )
    return planned.run_id, planned.batch_ids[0]


def test_a_capped_run_waiting_only_on_a_stale_reservation_ends_with_a_reason(
    sessions: sessionmaker[Session], test_settings: Settings, standin: Any
) -> None:
    # Given a capped run whose only batch cannot fit beside a reservation stuck held for two hours
    settings = test_settings.model_copy(update={"unknown_reservation_ttl_s": 3600.0})
    run_id, batch_id = _run_with_a_stuck_reservation(sessions, settings)
    queue = InlineQueue()
    processor = BatchProcessor(Resources(settings, queue))  # type: ignore[arg-type]
    assert processor.process(batch_id) == Outcome.WAITING_FOR_CAP

    # When the reaper passes and the batch is tried again
    reap_once(sessions, queue, settings)  # type: ignore[arg-type]
    outcome = processor.process(batch_id)

    # Then the stale reservation is no longer waited for: the run stops, with the cap's figures
    assert outcome == Outcome.RUN_STOPPED
    with transaction(sessions) as session:
        status, reason = session.execute(
            text("SELECT status, stop_reason FROM runs WHERE id = :r"), {"r": run_id}
        ).one()
        stuck = session.scalar(
            text("SELECT status FROM spend_reservations WHERE run_id = :r AND batch_id IS NULL"),
            {"r": run_id},
        )
    assert status == "stopped" and "spend cap reached" in reason, (status, reason)
    assert "of outcomes unknown" in reason, reason
    assert stuck == "unknown"


def test_an_unknown_reservation_is_released_after_its_ttl(
    sessions: sessionmaker[Session], test_settings: Settings, standin: Any
) -> None:
    # Given a reservation given up as unknown two hours ago, and a TTL of one hour
    settings = test_settings.model_copy(update={"unknown_reservation_ttl_s": 3600.0})
    run_id, _ = _run_with_a_stuck_reservation(sessions, settings)
    with transaction(sessions) as session:
        session.execute(
            text(
                "UPDATE spend_reservations SET status = 'unknown', settled_at = now() - interval '2 hours' "
                "WHERE run_id = :r"
            ),
            {"r": run_id},
        )

    # When the reaper passes
    reap_once(sessions, InlineQueue(), settings)  # type: ignore[arg-type]

    # Then it is released: the run's cap has its room back
    with transaction(sessions) as session:
        status = session.scalar(
            text("SELECT status FROM spend_reservations WHERE run_id = :r"), {"r": run_id}
        )
        reserved = session.scalar(text("SELECT reserved_usd FROM runs WHERE id = :r"), {"r": run_id})
    assert status == "released"
    assert reserved == 0
