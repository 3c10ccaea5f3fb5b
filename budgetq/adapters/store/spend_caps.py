"""Reading the spend caps: the day on the database's clock, and a run's or a day's cap with what is
spent, reserved and held against it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import ColumnElement, Date, cast, func, select
from sqlalchemy.orm import Session

from budgetq.adapters.store.models import DailySpend, Run, SpendReservation
from budgetq.domain.spend import CapState
from budgetq.domain.statuses import ReservationStatus
from budgetq.errors import NotFoundError


def today(session: Session) -> dt.date:
    """The current UTC day on the database's clock (one clock for every worker)."""
    day: dt.date = session.scalars(select(cast(func.timezone("UTC", func.now()), Date))).one()
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
    """The run's cap, spent, reserved and held amounts."""
    row = session.execute(
        select(Run.spend_cap_usd, Run.spent_usd, Run.reserved_usd).where(Run.id == run_id)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"no run with id {run_id}")
    held = held_sum(session, SpendReservation.run_id == run_id)
    return CapState(f"run {run_id}", row.spend_cap_usd, row.spent_usd, row.reserved_usd, held)


def day_cap(session: Session, day: dt.date, cap: Decimal | None = None) -> CapState:
    """The day's spent, reserved and held amounts, with ``cap`` (or the last cap recorded for the day)."""
    row = session.execute(
        select(DailySpend.cap_usd, DailySpend.spent_usd, DailySpend.reserved_usd).where(DailySpend.day == day)
    ).one_or_none()
    scope = f"day {day.isoformat()}"
    if row is None:
        return CapState(scope, cap, Decimal(0), Decimal(0))
    held = held_sum(session, SpendReservation.day == day)
    return CapState(scope, cap if cap is not None else row.cap_usd, row.spent_usd, row.reserved_usd, held)


def room(session: Session, run_id: int, daily_cap: Decimal | None) -> Decimal | None:
    """What the run's and the day's caps leave to reserve now (the smaller); None when neither is set."""
    left = [
        state.cap - state.committed
        for state in (run_cap(session, run_id), day_cap(session, today(session), daily_cap))
        if state.cap is not None
    ]
    return min(left, default=None)
