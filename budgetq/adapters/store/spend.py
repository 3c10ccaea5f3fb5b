"""Spend reservations against the run's and the day's caps, shared by every worker through PostgreSQL.

A reservation is one conditional UPDATE per cap (``… SET reserved = reserved + r WHERE spent +
reserved + r <= cap``): PostgreSQL's row lock serialises concurrent reservations on the same row and
re-checks the condition against the committed figures, so no interleaving can push spent + reserved
over a cap. Rows are always locked in the same order (run, then day), so reservations cannot
deadlock. Each reservation is a row whose status moves once from ``held`` to ``settled``,
``released`` or ``unknown``: settling twice is impossible, and an unknown one stays counted. The one
later move is a Message Batch request's: its result, read after its reservation was given up as
unknown (its submitter or poller was gone for long), settles or releases it then, once.

``reserve_many`` holds the requests of a Message Batch in one statement per cap, under the same
row locks (run, then day): as many as fit, in order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from budgetq.adapters.store import outbox
from budgetq.adapters.store import spend_caps as caps
from budgetq.adapters.store.models import DailySpend, Run, SpendReservation
from budgetq.domain.spend import (
    CapState,
    cap_reached_reason,
    fitting_prefix,
    may_fit_later,
    refusing,
    waiting_reason,
)
from budgetq.domain.statuses import ReservationStatus, RunStatus
from budgetq.errors import NotFoundError, RunCancelledError, SpendCapBusyError, SpendCapExceededError


@dataclass(frozen=True)
class Reservation:
    """A held reservation: its id, the caps it counts against, and the amount."""

    id: int
    run_id: int
    day: dt.date
    amount: Decimal


def _refuse(state: CapState, amount: Decimal) -> SpendCapExceededError:
    """The error for a refused reservation: busy (wait) or exceeded (stop)."""
    if may_fit_later(state, amount):
        return SpendCapBusyError(waiting_reason(state, amount))
    return SpendCapExceededError(cap_reached_reason(state, amount))


def reserve(
    session: Session,
    run_id: int,
    batch_id: int | None,
    amount: Decimal,
    daily_cap: Decimal | None,
) -> Reservation:
    """Hold ``amount`` against the run's cap and the day's cap, or raise SpendCapBusyError (it may fit
    once calls in flight settle) or SpendCapExceededError (it cannot).

    Call inside a transaction: when the day's cap refuses, the run's share is rolled back with it.
    """
    held = session.scalar(
        update(Run)
        .where(
            Run.id == run_id,
            # The run's row lock orders this against `budgetq cancel`: after a cancel commits, no attempt.
            Run.status != RunStatus.CANCELLED.value,
            Run.spend_cap_usd.is_(None) | (Run.spent_usd + Run.reserved_usd + amount <= Run.spend_cap_usd),
        )
        .values(reserved_usd=Run.reserved_usd + amount)
        .returning(Run.id)
    )
    if held is None:
        if session.scalar(select(Run.status).where(Run.id == run_id)) == RunStatus.CANCELLED.value:
            raise RunCancelledError(f"run {run_id} was cancelled: the attempt was not sent")
        raise _refuse(caps.run_cap(session, run_id), amount)
    day = caps.today(session)
    session.execute(pg_insert(DailySpend).values(day=day).on_conflict_do_nothing(index_elements=["day"]))
    condition = DailySpend.day == day
    if daily_cap is not None:
        condition = condition & (DailySpend.spent_usd + DailySpend.reserved_usd + amount <= daily_cap)
    held_day = session.scalar(
        update(DailySpend)
        .where(condition)
        .values(reserved_usd=DailySpend.reserved_usd + amount, cap_usd=daily_cap, updated_at=func.now())
        .returning(DailySpend.day)
    )
    if held_day is None:
        raise _refuse(caps.day_cap(session, day, daily_cap), amount)
    reservation_id = session.scalars(
        insert(SpendReservation).returning(SpendReservation.id),
        [
            {
                "run_id": run_id,
                "batch_id": batch_id,
                "day": day,
                "amount_usd": amount,
                "status": ReservationStatus.HELD.value,
            }
        ],
    ).one()
    return Reservation(reservation_id, run_id, day, amount)


def reserve_many(
    session: Session,
    run_id: int,
    requests: Sequence[tuple[int | None, Decimal]],
    daily_cap: Decimal | None,
) -> tuple[list[Reservation], SpendCapExceededError | None]:
    """Hold the amounts of ``requests`` ((batch id, amount), in priority order) against the run's and
    the day's caps, as many as fit in order; and the refusal of the first that does not fit
    (SpendCapBusyError or SpendCapExceededError), None when all fit.

    The run's row, then the day's, is locked while the figures are read and written, as ``reserve``'s
    conditional UPDATEs lock them: concurrent reservations wait, so spent + reserved <= cap holds.
    """
    run = session.execute(
        select(Run.spend_cap_usd, Run.spent_usd, Run.reserved_usd)
        .where(Run.id == run_id)
        .with_for_update(key_share=True)
    ).one_or_none()
    if run is None:
        raise NotFoundError(f"no run with id {run_id}")
    day = caps.today(session)
    session.execute(pg_insert(DailySpend).values(day=day).on_conflict_do_nothing(index_elements=["day"]))
    spent_today = session.execute(
        select(DailySpend.spent_usd, DailySpend.reserved_usd)
        .where(DailySpend.day == day)
        .with_for_update(key_share=True)
    ).one()
    states = (
        CapState(
            f"run {run_id}",
            run.spend_cap_usd,
            run.spent_usd,
            run.reserved_usd,
            caps.held_sum(session, SpendReservation.run_id == run_id),
        ),
        CapState(
            f"day {day.isoformat()}",
            daily_cap,
            spent_today.spent_usd,
            spent_today.reserved_usd,
            caps.held_sum(session, SpendReservation.day == day),
        ),
    )
    amounts = [amount for _, amount in requests]
    count = fitting_prefix(states, amounts)
    total = sum(amounts[:count], Decimal(0))
    refusal = None
    if count < len(amounts):
        refusal = _refuse(refusing(states, total, amounts[count]), amounts[count])
    if count == 0:
        return [], refusal
    session.execute(update(Run).where(Run.id == run_id).values(reserved_usd=Run.reserved_usd + total))
    session.execute(
        update(DailySpend)
        .where(DailySpend.day == day)
        .values(reserved_usd=DailySpend.reserved_usd + total, cap_usd=daily_cap, updated_at=func.now())
    )
    ids = session.scalars(
        insert(SpendReservation).returning(SpendReservation.id, sort_by_parameter_order=True),
        [
            {
                "run_id": run_id,
                "batch_id": batch_id,
                "day": day,
                "amount_usd": amount,
                "status": ReservationStatus.HELD.value,
            }
            for batch_id, amount in requests[:count]
        ],
    ).all()
    held = [Reservation(i, run_id, day, amount) for i, (_, amount) in zip(ids, requests[:count], strict=True)]
    return held, refusal


def _close(
    session: Session,
    r: Reservation,
    status: ReservationStatus,
    actual: Decimal | None,
    *,
    from_unknown: bool = False,
) -> bool:
    open_states = [ReservationStatus.HELD.value]
    if from_unknown:
        open_states.append(ReservationStatus.UNKNOWN.value)
    closed = session.scalar(
        update(SpendReservation)
        .where(SpendReservation.id == r.id, SpendReservation.status.in_(open_states))
        .values(status=status.value, actual_usd=actual, settled_at=func.now())
        .returning(SpendReservation.id)
    )
    return closed is not None


def settle(session: Session, r: Reservation, actual: Decimal, *, from_unknown: bool = False) -> bool:
    """Turn the reservation into the actual cost (reserved -= amount, spent += actual); once only.
    ``from_unknown``: also one given up as unknown (a Message Batch result read late: now known)."""
    if not _close(session, r, ReservationStatus.SETTLED, actual, from_unknown=from_unknown):
        return False
    _move(session, r, reserved=-r.amount, spent=actual)
    outbox.record_spend(session, r.run_id, r.day)  # the 50/80/95/100% alerts, each once
    return True


def release(session: Session, r: Reservation, *, from_unknown: bool = False) -> bool:
    """Give the reservation back: nothing was billed (an error reply, or the call was never sent).
    ``from_unknown``: also one given up as unknown (a Message Batch result read late: now known)."""
    if not _close(session, r, ReservationStatus.RELEASED, Decimal(0), from_unknown=from_unknown):
        return False
    _move(session, r, reserved=-r.amount, spent=Decimal(0))
    return True


def keep(session: Session, r: Reservation) -> bool:
    """Mark the outcome unknown: the reservation stays counted against both caps."""
    return _close(session, r, ReservationStatus.UNKNOWN, None)


def _move(session: Session, r: Reservation, *, reserved: Decimal, spent: Decimal) -> None:
    session.execute(
        update(Run)
        .where(Run.id == r.run_id)
        .values(reserved_usd=Run.reserved_usd + reserved, spent_usd=Run.spent_usd + spent)
    )
    session.execute(
        update(DailySpend)
        .where(DailySpend.day == r.day)
        .values(
            reserved_usd=DailySpend.reserved_usd + reserved,
            spent_usd=DailySpend.spent_usd + spent,
            updated_at=func.now(),
        )
    )


def abandon_held(session: Session, batch_ids: Sequence[int]) -> int:
    """Mark the held reservations of batches whose worker is gone as unknown: still counted against
    the caps (the call may have been billed), but no longer waited for as calls in flight."""
    if not batch_ids:
        return 0
    rows = session.scalars(
        update(SpendReservation)
        .where(
            SpendReservation.batch_id.in_(batch_ids),
            SpendReservation.status == ReservationStatus.HELD.value,
        )
        .values(status=ReservationStatus.UNKNOWN.value, settled_at=func.now())
        .returning(SpendReservation.id)
    ).all()
    return len(rows)
