"""The day's spend row: the day's effective cap, and its counters while (only while) a cap applies.

The cap is stored with the day's row, so every worker checks the same figure: the lowest cap any
worker configured that day wins (a worker without a daily cap obeys the day's cap all the same).
Spend is attributed to the day the attempt settles; a reservation counts against the day it was made
and, while open (held or unknown), against the next day too, since it may settle then.

Without a cap nothing writes the row per call: the day's spend is read from the ledger then
(``spend_reservations.settled_day``). The counters start when a cap first applies: the worker that
sets it locks the row (FOR UPDATE) and counts them from the ledger once. Everyone else reads the cap
under FOR KEY SHARE, which does not conflict among readers (nor with the counter UPDATEs, which take
FOR NO KEY UPDATE) but does with that FOR UPDATE, so no reservation or settlement slips between the
count and the cap.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import Date, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from budgetq.adapters.store.models import DailySpend, SpendReservation
from budgetq.domain.statuses import ReservationStatus

OPEN = (ReservationStatus.HELD.value, ReservationStatus.UNKNOWN.value)

# A capped counter after a move: (spent, cap).
Spent = tuple[Decimal, Decimal]


# Built once, run on the session's connection: every reservation runs these (built per call, through the
# ORM session, each cost about 2.5 times the CPU).
_ENSURE = pg_insert(DailySpend).values(day=bindparam("e_day")).on_conflict_do_nothing(index_elements=["day"])
_CAP_OF = (
    select(DailySpend.cap_usd)
    .where(DailySpend.day == bindparam("day"))
    .with_for_update(read=True, key_share=True)
)
_DAYS_TO_MOVE = (
    select(DailySpend.day, DailySpend.cap_usd)
    .where(DailySpend.day == func.any(bindparam("days", type_=ARRAY(Date))))
    .order_by(DailySpend.day)
    .with_for_update(read=True, key_share=True)
)


def ensure(session: Session, day: dt.date) -> None:
    """Create the day's row if it is missing (no write when it exists)."""
    session.connection().execute(_ENSURE, {"e_day": day})


def lower_cap(session: Session, day: dt.date, cap: Decimal) -> None:
    """Make ``cap`` the day's cap unless the day already has one as low: the lowest wins. Committed at
    once, in a transaction of its own, so it stands even when the reservation is refused.

    Call before the reserving transaction locks the day's row (this may wait for FOR UPDATE)."""
    current = session.scalar(select(DailySpend.cap_usd).where(DailySpend.day == day))
    if current is not None and current <= cap:
        return
    with Session(session.get_bind()) as own, own.begin():
        ensure(own, day)
        _lower(own, day, cap)


def _lower(session: Session, day: dt.date, cap: Decimal) -> None:
    current = session.scalar(select(DailySpend.cap_usd).where(DailySpend.day == day).with_for_update())
    if current is not None and current <= cap:
        return
    values: dict[str, object] = {"cap_usd": cap, "updated_at": func.now()}
    if current is None:
        # The counters were not kept while the day had no cap: count them from the ledger, once. A new
        # statement, so it sees every reservation and settlement committed before the lock was granted.
        values["spent_usd"] = (
            select(func.coalesce(func.sum(SpendReservation.actual_usd), 0))
            .where(
                SpendReservation.settled_day == day,
                SpendReservation.status == ReservationStatus.SETTLED.value,
            )
            .scalar_subquery()
        )
        values["reserved_usd"] = (
            select(func.coalesce(func.sum(SpendReservation.amount_usd), 0))
            .where(SpendReservation.day == day, SpendReservation.status.in_(OPEN))
            .scalar_subquery()
        )
    session.execute(
        update(DailySpend)
        .execution_options(synchronize_session=False)
        .where(DailySpend.day == day)
        .values(values)
    )


def cap_of(session: Session, day: dt.date) -> Decimal | None:
    """The day's cap, read under FOR KEY SHARE (held to commit: no cap can start meanwhile)."""
    cap: Decimal | None = session.connection().execute(_CAP_OF, {"day": day}).scalar()
    return cap


def carried(session: Session, day: dt.date) -> Decimal:
    """Open reservations made the day before: they may still settle on ``day`` (a call in flight over
    midnight, a Message Batch request, which expires within 24 h). Older open ones, outcomes unknown,
    stay counted on their own day only."""
    total = session.scalar(
        select(func.coalesce(func.sum(SpendReservation.amount_usd), 0)).where(
            SpendReservation.day == day - dt.timedelta(days=1), SpendReservation.status.in_(OPEN)
        )
    )
    return Decimal(total or 0)


def hold(session: Session, day: dt.date, amount: Decimal) -> bool:
    """Count ``amount`` as reserved on ``day`` if the day's cap covers it (always without a cap)."""
    if cap_of(session, day) is None:
        return True
    earlier = carried(session, day)
    held = session.scalar(
        update(DailySpend)
        .execution_options(synchronize_session=False)
        .where(
            DailySpend.day == day,
            DailySpend.spent_usd + DailySpend.reserved_usd + earlier + amount <= DailySpend.cap_usd,
        )
        .values(reserved_usd=DailySpend.reserved_usd + amount, updated_at=func.now())
        .returning(DailySpend.day)
    )
    return held is not None


def move(
    session: Session, reserved_day: dt.date, settled_day: dt.date, amount: Decimal, spent: Decimal
) -> Spent | None:
    """A reservation of ``amount`` made on ``reserved_day`` closes on ``settled_day`` having cost
    ``spent``: the counters of those days that have a cap follow. The settling day's (spent, cap) after
    it when that day has a cap, else None."""
    after: Spent | None = None
    if spent and settled_day != reserved_day:
        ensure(session, settled_day)
    days = sorted({reserved_day, settled_day} if spent else {reserved_day})
    # Ascending days, the order every writer locks them in: no deadlock.
    rows = session.connection().execute(_DAYS_TO_MOVE, {"days": days}).all()
    for day, cap in rows:
        if cap is None:
            continue
        reserved = -amount if day == reserved_day else Decimal(0)
        added = spent if day == settled_day else Decimal(0)
        total = session.scalar(
            update(DailySpend)
            .execution_options(synchronize_session=False)
            .where(DailySpend.day == day)
            .values(
                reserved_usd=DailySpend.reserved_usd + reserved,
                spent_usd=DailySpend.spent_usd + added,
                updated_at=func.now(),
            )
            .returning(DailySpend.spent_usd)
        )
        if day == settled_day and total is not None:
            after = (total, cap)
    return after


def spent_on(session: Session, day: dt.date) -> Decimal:
    """What the attempts settled on ``day`` cost, from the ledger (kept with or without a cap)."""
    total = session.scalar(
        select(func.coalesce(func.sum(SpendReservation.actual_usd), 0)).where(
            SpendReservation.settled_day == day,
            SpendReservation.status == ReservationStatus.SETTLED.value,
        )
    )
    return Decimal(total or 0)
