"""Run completion without a lock on the run's row: the last two batches finishing at once still close
the run, and a reservation of an uncapped run on an uncapped day writes neither shared row."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store import batches, spend
from budgetq.adapters.store.completion import finish_if_done
from budgetq.adapters.store.engine import transaction
from budgetq.services.planning import plan_run
from budgetq.settings import Settings
from tests.integration.pipeline import make_seed_set


def _end_batch(session: Session, batch_id: int) -> None:
    """What a worker's settling transaction does to a batch it answered, by plain SQL."""
    session.execute(
        text(
            "UPDATE batches SET status = 'succeeded', lease_token = NULL, finished_at = now() WHERE id = :b"
        ),
        {"b": batch_id},
    )
    session.execute(
        text(
            "UPDATE run_issues SET status = 'answered' WHERE (run_id, issue_id) IN "
            "(SELECT b.run_id, bi.issue_id FROM batch_issues bi JOIN batches b ON b.id = bi.batch_id "
            "WHERE bi.batch_id = :b)"
        ),
        {"b": batch_id},
    )


def test_two_workers_finishing_the_last_two_batches_at_once_close_the_run(
    sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    # Given a run of two one-issue batches, both claimed
    set_id = make_seed_set(sessions, f"finish-{uuid.uuid4().hex[:8]}", 2)
    planned = plan_run(
        sessions, test_settings.model_copy(update={"max_issues_per_call": 1}), set_id, kind="manual"
    )
    run_id, (first, second) = planned.run_id, planned.batch_ids
    assert run_id is not None
    for batch_id in (first, second):
        with transaction(sessions) as session:
            assert batches.claim(session, batch_id, 60) is not None
    checked = threading.Event()
    errors: list[BaseException] = []

    # When each worker ends its batch and checks for the run's end before the other has committed: the
    # first checks, the second checks while the first is still open, then the first commits, then the second
    def first_worker() -> None:
        try:
            with transaction(sessions) as session:
                _end_batch(session, first)
                assert finish_if_done(session, run_id) is None
                checked.set()
                # Waits for the second worker's check (a lock on the run's row would make it wait for us).
                second_checked.wait(timeout=5)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    second_checked = threading.Event()

    def second_worker() -> None:
        try:
            checked.wait(timeout=5)
            with transaction(sessions) as session:
                _end_batch(session, second)
                second_checked.set()
                finish_if_done(session, run_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=first_worker), threading.Thread(target=second_worker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors

    # Then the run is closed, by one of them, once both committed
    with transaction(sessions) as session:
        status = session.scalar(text("SELECT status FROM runs WHERE id = :r"), {"r": run_id})
    assert status == "succeeded"


def test_an_uncapped_run_s_reservation_writes_neither_the_run_nor_the_day(
    sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    # Given a running run without a spend cap, today's row already there, and no daily cap
    set_id = make_seed_set(sessions, f"nowrite-{uuid.uuid4().hex[:8]}", 1)
    planned = plan_run(sessions, test_settings, set_id, kind="manual")
    run_id = planned.run_id
    assert run_id is not None
    with transaction(sessions) as session:
        spend.settle(session, spend.reserve(session, run_id, None, Decimal("0.01"), None), Decimal("0.005"))
    versions = (
        "SELECT (SELECT xmin::text FROM runs WHERE id = :r), "
        "(SELECT xmin::text FROM daily_spend WHERE day = :d)"
    )

    # When an attempt reserves, and settles at its cost
    with transaction(sessions) as session:
        reservation = spend.reserve(session, run_id, planned.batch_ids[0], Decimal("0.02"), None)
        before = tuple(session.execute(text(versions), {"r": run_id, "d": reservation.day}).one())
    with transaction(sessions) as session:
        assert spend.settle(session, reservation, Decimal("0.01"))
    with transaction(sessions) as session:
        after = tuple(session.execute(text(versions), {"r": run_id, "d": reservation.day}).one())
        settled = session.scalar(
            text("SELECT status FROM spend_reservations WHERE id = :i"), {"i": reservation.id}
        )

    # Then the ledger row settled, and neither the run's row nor the day's row has a new version
    assert settled == "settled"
    assert after == before
