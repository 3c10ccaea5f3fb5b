"""Reading the spend caps: the day on the database's clock, and a run's or a day's cap with what is
spent, reserved and held against it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import ColumnElement, Date, cast, func, select
from sqlalchemy.orm import Session

from budgetq.adapters.store import spend_days as days
from budgetq.adapters.store.models import DailySpend, Run, SpendReservation
from budgetq.domain.spend import CapState
from budgetq.domain.statuses import ReservationStatus
from budgetq.errors import NotFoundError

# The current UTC day on the database's clock (one clock for every worker), as a SQL expression.
TODAY = cast(func.timezone("UTC", func.now()), Date)


def today(session: Session) -> dt.date:
    """The current UTC day on the database's clock."""
    day: dt.date = session.scalars(select(TODAY)).one()
    return day


def held_sum(session: Session, condition: ColumnElement[bool]) -> Decimal:
    """The sum of reservations still held by calls in flight, among those matching ``condition``."""
    held = session.scalar(
        select(func.coalesce(func.sum(SpendReservation.amount_usd), 0)).where(
            condition, SpendReservation.status == ReservationStatus.HELD.value
        )
    )
    return Decimal(held or 0)


def run_cap(session: Session, run_id: int) -> CapState:
    """The run's cap, spent, reserved and held amounts: from its row's counters when it has a cap, from
    the ledger when it has none (an uncapped run keeps no counters)."""
    row = session.execute(
        select(Run.spend_cap_usd, Run.spent_usd, Run.reserved_usd).where(Run.id == run_id)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"no run with id {run_id}")
    held = held_sum(session, SpendReservation.run_id == run_id)
    if row.spend_cap_usd is not None:
        return CapState(f"run {run_id}", row.spend_cap_usd, row.spent_usd, row.reserved_usd, held)
    settled = ReservationStatus.SETTLED.value
    spent, reserved = session.execute(
        select(
            func.coalesce(
                func.sum(SpendReservation.actual_usd).filter(SpendReservation.status == settled), 0
            ),
            func.coalesce(
                func.sum(SpendReservation.amount_usd).filter(SpendReservation.status.in_(days.OPEN)), 0
            ),
        ).where(SpendReservation.run_id == run_id)
    ).one()
    return CapState(f"run {run_id}", None, Decimal(spent or 0), Decimal(reserved or 0), held)


def day_cap(session: Session, day: dt.date, cap: Decimal | None = None) -> CapState:
    """The day's spent, reserved and held amounts against the lower of ``cap`` and the day's stored
    cap; reserved includes what the day before still holds open, since it may settle on ``day``."""
    row = session.execute(
        select(DailySpend.cap_usd, DailySpend.spent_usd, DailySpend.reserved_usd).where(DailySpend.day == day)
    ).one_or_none()
    scope = f"day {day.isoformat()}"
    effective = min((c for c in (cap, row.cap_usd if row else None) if c is not None), default=None)
    if row is None or row.cap_usd is None:
        # No counters are kept while the day has no cap.
        return CapState(scope, effective, Decimal(0), Decimal(0))
    earlier = days.carried(session, day)
    held = held_sum(session, SpendReservation.day.between(day - dt.timedelta(days=1), day))
    return CapState(scope, effective, row.spent_usd, row.reserved_usd + earlier, held)


def room(session: Session, run_id: int, daily_cap: Decimal | None) -> Decimal | None:
    """What the run's and the day's caps leave to reserve now (the smaller); None when neither is set."""
    capped = session.scalar(select(Run.spend_cap_usd).where(Run.id == run_id)) is not None
    states = [run_cap(session, run_id)] if capped else []
    states.append(day_cap(session, today(session), daily_cap))
    left = [state.cap - state.committed for state in states if state.cap is not None]
    return min(left, default=None)
