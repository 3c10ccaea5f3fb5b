"""Spend caps on real PostgreSQL: concurrent reservations never push spent + reserved over a cap."""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store import issues as issue_store
from budgetq.adapters.store import runs as run_store
from budgetq.adapters.store import spend as spend_store
from budgetq.adapters.store import spend_caps
from budgetq.adapters.store.engine import make_engine, make_sessions, transaction
from budgetq.adapters.store.models import SpendReservation
from budgetq.domain.statuses import RunKind
from budgetq.errors import SpendCapBusyError, SpendCapExceededError
from tests.integration.db_clock import at, clocked_engine, unused_day

RESERVATION = Decimal("0.250000")


def new_run(sessions: sessionmaker[Session], cap: Decimal | None) -> int:
    """An empty running run with spend cap ``cap``."""
    with transaction(sessions) as session:
        set_id = issue_store.create_set(session, f"spend-{uuid.uuid4().hex[:8]}")
        spec = run_store.RunSpec(
            set_id=set_id,
            kind=RunKind.MANUAL.value,
            mode="standin",
            model="claude-sonnet-4-6",
            max_tokens=1024,
            safe_utilization=0.75,
            context_window=200_000,
            calibration=1.35,
            spend_cap_usd=cap,
        )
        run_id = run_store.create_run(session, spec)
        assert run_id is not None
        session.execute(text("UPDATE runs SET status = 'running' WHERE id = :id"), {"id": run_id})
    return run_id


def test_64_concurrent_reservations_against_a_cap_for_10_admit_at_most_10(database_url: str) -> None:
    # Given a run whose cap holds exactly 10 reservations, and 64 threads with their own connections
    engine = make_engine(database_url, pool_size=66)
    sessions = make_sessions(engine)
    cap = RESERVATION * 10
    run_id = new_run(sessions, cap)
    start = threading.Barrier(64)
    admitted: list[spend_store.Reservation] = []
    refused: list[str] = []
    samples: list[tuple[Decimal, Decimal]] = []
    racing = threading.Event()
    racing.set()

    def reserve() -> None:
        start.wait()
        try:
            with transaction(sessions) as session:
                admitted.append(spend_store.reserve(session, run_id, None, RESERVATION, None))
        except SpendCapBusyError as exc:
            refused.append(str(exc))

    def sample() -> None:
        while racing.is_set():
            with transaction(sessions) as session:
                state = spend_caps.run_cap(session, run_id)
            samples.append((state.committed, cap))

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=reserve) for _ in range(64)]

    # When all 64 reserve at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    racing.clear()
    sampler.join()
    engine.dispose()

    # Then exactly 10 are admitted, 54 told to wait for the calls in flight, and no sample was over the cap
    assert len(admitted) == 10
    assert len(refused) == 54
    assert all(
        r.startswith(f"waiting for spend cap room (run {run_id}): spent 0.000000 + reserved") for r in refused
    )
    assert samples and all(committed <= c for committed, c in samples)
    with transaction(make_sessions(make_engine(database_url))) as session:
        final = spend_caps.run_cap(session, run_id)
    assert final.reserved == cap


def test_a_settled_reservation_becomes_the_actual_cost_once(sessions: sessionmaker[Session]) -> None:
    # Given a run with two held reservations
    run_id = new_run(sessions, Decimal("1"))
    with transaction(sessions) as session:
        first = spend_store.reserve(session, run_id, None, RESERVATION, None)
        second = spend_store.reserve(session, run_id, None, RESERVATION, None)

    # When the first settles at its actual cost (twice) and the second is released
    with transaction(sessions) as session:
        assert spend_store.settle(session, first, Decimal("0.012345"))
        assert not spend_store.settle(session, first, Decimal("0.012345"))
        assert spend_store.release(session, second)

    # Then the run has spent the actual cost and holds nothing
    with transaction(sessions) as session:
        state = spend_caps.run_cap(session, run_id)
        statuses = session.scalars(
            select(SpendReservation.status)
            .where(SpendReservation.run_id == run_id)
            .order_by(SpendReservation.id)
        ).all()
    assert (state.spent, state.reserved) == (Decimal("0.012345"), Decimal(0))
    assert statuses == ["settled", "released"]


def test_a_reservation_of_unknown_outcome_stays_counted(sessions: sessionmaker[Session]) -> None:
    # Given a run whose cap fits 2 reservations, one of which ends with an unknown outcome
    run_id = new_run(sessions, RESERVATION * 2)
    with transaction(sessions) as session:
        unknown = spend_store.reserve(session, run_id, None, RESERVATION, None)
        assert spend_store.keep(session, unknown)
        spend_store.reserve(session, run_id, None, RESERVATION, None)

    # When a third call tries to reserve
    # Then it is told to wait for the one in flight: the unknown one still counts
    with pytest.raises(SpendCapBusyError), transaction(sessions) as session:
        spend_store.reserve(session, run_id, None, RESERVATION, None)
    with transaction(sessions) as session:
        state = spend_caps.run_cap(session, run_id)
    assert (state.reserved, state.held) == (RESERVATION * 2, RESERVATION)


def test_a_cap_that_cannot_cover_a_call_even_after_the_calls_in_flight_is_exceeded(
    sessions: sessionmaker[Session],
) -> None:
    # Given a run that spent 0.9 of its cap of 1 and holds nothing in flight
    run_id = new_run(sessions, Decimal("1"))
    with transaction(sessions) as session:
        first = spend_store.reserve(session, run_id, None, Decimal("0.9"), None)
        spend_store.settle(session, first, Decimal("0.9"))

    # When a call needing 0.25 tries to reserve
    # Then the cap is exceeded for good, with every figure in the reason
    with pytest.raises(SpendCapExceededError) as refused, transaction(sessions) as session:
        spend_store.reserve(session, run_id, None, RESERVATION, None)
    assert not isinstance(refused.value, SpendCapBusyError)
    figures = "spent 0.900000 + reserved 0.000000 + needed 0.250000 > cap 1.000000"
    assert str(refused.value).startswith(f"spend cap reached (run {run_id}): {figures}")


def test_the_daily_cap_refuses_and_leaves_the_run_untouched(database_url: str) -> None:
    # Given a day of its own (a daily cap stays with its day: today's would bind the other tests) and a
    # daily cap leaving room for exactly one reservation; the run has a cap, so it keeps counters
    engine = clocked_engine(database_url)
    sessions = make_sessions(engine)
    noon = dt.datetime.combine(unused_day(), dt.time(12), tzinfo=dt.UTC)
    run_id = new_run(sessions, Decimal("100"))
    daily_cap = RESERVATION
    with at(sessions, noon) as session:
        day = spend_caps.today(session)
        spend_store.reserve(session, run_id, None, RESERVATION, daily_cap)

    # When the next reservation is tried under the same daily cap
    with pytest.raises(SpendCapBusyError, match=r"\(day \d{4}-\d{2}-\d{2}\)"), at(sessions, noon) as s:
        spend_store.reserve(s, run_id, None, RESERVATION, daily_cap)

    # Then the run's own reservation was rolled back with the day's refusal
    with at(sessions, noon) as session:
        assert spend_caps.run_cap(session, run_id).reserved == RESERVATION
        assert spend_caps.day_cap(session, day, daily_cap).committed == daily_cap
    engine.dispose()


def test_a_message_batch_s_requests_are_reserved_in_order_as_far_as_the_caps_go(
    sessions: sessionmaker[Session],
) -> None:
    # Given a run with a cap of 1
    run_id = new_run(sessions, Decimal("1"))

    # When five requests of a Message Batch reserve together, the last one cheap
    amounts = [Decimal("0.300000")] * 4 + [Decimal("0.050000")]
    with transaction(sessions) as session:
        held, refusal = spend_store.reserve_many(session, run_id, [(None, a) for a in amounts], None)

    # Then the first three are held, and the fourth is told to wait for them (the fifth, behind it, too)
    assert [r.amount for r in held] == [Decimal("0.3")] * 3
    assert isinstance(refusal, SpendCapBusyError)
    assert str(refusal).startswith(
        f"waiting for spend cap room (run {run_id}): spent 0.000000 + reserved 0.900000 + needed 0.300000 "
        "> cap 1.000000, of which 0.900000 is held by calls in flight"
    )
    with transaction(sessions) as session:
        state = spend_caps.run_cap(session, run_id)
        rows = session.scalars(
            select(SpendReservation.id).where(
                SpendReservation.run_id == run_id, SpendReservation.status == "held"
            )
        ).all()
    assert (state.reserved, state.held) == (Decimal("0.9"), Decimal("0.9"))
    assert sorted(rows) == sorted(r.id for r in held)

    # When they settle (about 0.8 spent in all), and the rest reserve again with nothing in flight
    with transaction(sessions) as session:
        for reservation in held:
            spend_store.settle(session, reservation, Decimal("0.266666"))
        again, refusal = spend_store.reserve_many(session, run_id, [(None, Decimal("0.300000"))], None)

    # Then the cap is reached for good, with the figures
    assert again == [] and refusal is not None and not isinstance(refusal, SpendCapBusyError)
    assert str(refusal).startswith(f"spend cap reached (run {run_id}): ")
    assert "+ needed 0.300000 > cap 1.000000" in str(refusal)


def test_the_daily_cap_limits_a_message_batch_s_reservations_too(database_url: str) -> None:
    # Given a run with a cap that never binds, a day of its own and a daily cap leaving room for one
    # request of 0.3
    engine = clocked_engine(database_url)
    sessions = make_sessions(engine)
    noon = dt.datetime.combine(unused_day(), dt.time(12), tzinfo=dt.UTC)
    run_id = new_run(sessions, Decimal("100"))
    daily_cap = Decimal("0.5")

    # When two requests reserve together
    with at(sessions, noon) as session:
        held, refusal = spend_store.reserve_many(
            session, run_id, [(None, Decimal("0.3")), (None, Decimal("0.3"))], daily_cap
        )

    # Then one is held, and the day's cap refused the other
    assert len(held) == 1
    assert refusal is not None and re.search(r"\(day \d{4}-\d{2}-\d{2}\)", str(refusal))
    with at(sessions, noon) as session:
        assert spend_caps.run_cap(session, run_id).reserved == Decimal("0.3")
    engine.dispose()


def test_concurrent_message_batch_reservations_never_pass_the_cap(database_url: str) -> None:
    # Given a run whose cap holds exactly 10 reservations, and 16 submitters of 3 requests each
    engine = make_engine(database_url, pool_size=18)
    sessions = make_sessions(engine)
    run_id = new_run(sessions, RESERVATION * 10)
    start = threading.Barrier(16)
    admitted: list[int] = []

    def submit() -> None:
        start.wait()
        with transaction(sessions) as session:
            held, _ = spend_store.reserve_many(session, run_id, [(None, RESERVATION)] * 3, None)
        admitted.append(len(held))

    # When they all reserve at once
    threads = [threading.Thread(target=submit) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.dispose()

    # Then exactly 10 requests were admitted in all, and the run holds exactly its cap
    assert sum(admitted) == 10 and len(admitted) == 16
    with transaction(make_sessions(make_engine(database_url))) as session:
        assert spend_caps.run_cap(session, run_id).reserved == RESERVATION * 10
