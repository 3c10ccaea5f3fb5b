"""The daily cap is the day's (issue 17 point 3): stored with the day's row, the lowest configured cap
wins, and spend counts on the day the attempt settles, with a reservation open across midnight still
counted on the new day. Real PostgreSQL, its ``now()`` set by a test clock (tests/integration/db_clock)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store import spend as spend_store
from budgetq.errors import SpendCapExceededError
from tests.integration.db_clock import at, clocked_engine, clocked_sessions, unused_day
from tests.integration.store.test_spend_caps import new_run

UTC = dt.UTC


@pytest.fixture
def clocked(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions whose ``now()`` the test sets."""
    engine: Engine = clocked_engine(database_url)
    yield clocked_sessions(engine)
    engine.dispose()


def _moment(day: dt.date, hh: int, mm: int, ss: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=UTC)


def test_an_attempt_that_straddles_midnight_counts_on_both_days_while_open_and_on_the_new_day_once_settled(
    clocked: sessionmaker[Session],
) -> None:
    # Given a run without a cap, a daily cap of 1.50 and a day of its own
    run_id = new_run(clocked, None)
    day = unused_day()
    cap = Decimal("1.50")

    # When an attempt reserves 1.00 a second before midnight UTC
    with at(clocked, _moment(day, 23, 59, 59)) as session:
        reservation = spend_store.reserve(session, run_id, None, Decimal("1.00"), cap)
    assert reservation.day == day

    # Then, just after midnight and still in flight, it counts against the new day too: 1.00 more is refused
    with pytest.raises(SpendCapExceededError, match=f"day {day + dt.timedelta(days=1)}"):
        with at(clocked, _moment(day + dt.timedelta(days=1), 0, 0, 1)) as session:
            spend_store.reserve(session, run_id, None, Decimal("1.00"), cap)

    # When it settles after midnight at 0.90
    with at(clocked, _moment(day + dt.timedelta(days=1), 0, 0, 2)) as session:
        assert spend_store.settle(session, reservation, Decimal("0.90"))

    # Then the 0.90 counts on the day it settled: 0.70 more does not fit the new day, 0.60 does
    with pytest.raises(SpendCapExceededError):
        with at(clocked, _moment(day + dt.timedelta(days=1), 0, 0, 3)) as session:
            spend_store.reserve(session, run_id, None, Decimal("0.70"), cap)
    with at(clocked, _moment(day + dt.timedelta(days=1), 0, 0, 4)) as session:
        spend_store.reserve(session, run_id, None, Decimal("0.60"), cap)
    # And the day it was reserved on is left with nothing spent and nothing held
    with at(clocked, _moment(day + dt.timedelta(days=1), 0, 0, 5)) as session:
        spent, reserved = session.execute(
            text("SELECT spent_usd, reserved_usd FROM daily_spend WHERE day = :d"), {"d": day}
        ).one()
    assert (spent, reserved) == (0, 0)


def test_two_workers_with_different_daily_caps_both_obey_the_lowest(clocked: sessionmaker[Session]) -> None:
    # Given a day of its own, worker A configured with a daily cap of 1.00 and worker B with 0.50
    run_id = new_run(clocked, None)
    noon = _moment(unused_day(), 12, 0, 0)
    a_cap, b_cap = Decimal("1.00"), Decimal("0.50")

    # When A reserves 0.30, then B tries 0.30
    with at(clocked, noon) as session:
        spend_store.reserve(session, run_id, None, Decimal("0.30"), a_cap)
    with pytest.raises(SpendCapExceededError, match=r"> cap 0\.50"):
        with at(clocked, noon) as session:
            spend_store.reserve(session, run_id, None, Decimal("0.30"), b_cap)

    # Then A, under its own setting of 1.00, is held to the day's 0.50 as well, and so is a worker
    # configured without any daily cap
    for cap in (a_cap, None):
        with pytest.raises(SpendCapExceededError, match=r"> cap 0\.50"):
            with at(clocked, noon) as session:
                spend_store.reserve(session, run_id, None, Decimal("0.30"), cap)
    with at(clocked, noon) as session:
        stored = session.scalar(text("SELECT cap_usd FROM daily_spend WHERE day = :d"), {"d": noon.date()})
    assert stored == b_cap
