"""Spend reservations against the run's and the day's caps, shared by every worker through PostgreSQL.

A reservation is one conditional UPDATE per cap (``… SET reserved = reserved + r WHERE spent +
reserved + r <= cap``): PostgreSQL's row lock serialises concurrent reservations on the same row and
re-checks the condition against the committed figures, so no interleaving can push spent + reserved
over a cap. Rows are always locked in the same order (day, then run), so reservations cannot
deadlock; the run's row last, right before the COMMIT, so it is held for one statement. Without a cap,
no counter is kept (docs/architecture.md, "Bookkeeping that stays flat as a run grows").

Each reservation is a row whose status moves once from ``held`` to ``settled``, ``released`` or
``unknown``: settling twice is impossible, and an unknown one stays counted. The one
later move is a Message Batch request's: its result, read after its reservation was given up as
unknown (its submitter or poller was gone for long), settles or releases it then, once.

``reserve_many`` holds the requests of a Message Batch in one statement per cap, under the same
row locks (day, then run): as many as fit, in order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from sqlalchemy import Text, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from budgetq.adapters.store import outbox
from budgetq.adapters.store import spend_caps as caps
from budgetq.adapters.store import spend_days as days
from budgetq.adapters.store.models import DailySpend, Run, SpendReservation
from budgetq.adapters.store.spend_days import Spent
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
    capped: bool = True  # the run keeps counters (False: known to have no cap, its row is not written)


# Built once, run on the session's connection: every attempt reserves and settles (built per call,
# through the ORM session, each statement cost about 2.5 times the CPU).
_HOLD = (
    insert(SpendReservation)
    .values(
        run_id=bindparam("h_run"),
        batch_id=bindparam("h_batch"),
        day=bindparam("h_day"),
        amount_usd=bindparam("h_amount"),
        status=ReservationStatus.HELD.value,
    )
    .returning(SpendReservation.id)
)
_STATUS_AND_TODAY = (
    select(Run.status, caps.TODAY)
    .where(Run.id == bindparam("run_id"))
    .with_for_update(read=True, key_share=True, of=Run)
)
_CLOSE = (
    update(SpendReservation)
    .where(
        SpendReservation.id == bindparam("r_id"),
        SpendReservation.status == func.any(bindparam("open", type_=ARRAY(Text))),
    )
    .values(
        status=bindparam("s_status"),
        actual_usd=bindparam("s_actual"),
        settled_at=func.now(),
        settled_day=caps.TODAY,
    )
    .returning(SpendReservation.settled_day)
)


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
    *,
    capped: bool | None = None,
    before_hold: Callable[[Reservation], None] | None = None,
) -> Reservation:
    """Hold ``amount`` against the run's cap and the day's cap, or raise SpendCapBusyError (it may fit
    once calls in flight settle) or SpendCapExceededError (it cannot). ``capped``: whether the run has
    a cap, when the caller knows (a run's cap is fixed when it is planned); else it is read.
    ``before_hold``: writes that belong with the reservation (the attempt's row), made before the run's
    row is locked, so that lock is held for one statement and the COMMIT.

    Call inside a transaction: when the day's cap refuses, the run's share is rolled back with it.
    """
    if capped is False:
        # The day and the cancel check in one statement: a call of an uncapped run pays one round trip
        # here, not three.
        day = _uncapped_and_not_cancelled(session, run_id)
    else:
        day = caps.today(session)
    if daily_cap is not None:
        days.lower_cap(session, day, daily_cap)
    if capped is None:
        capped = _capped_and_not_cancelled(session, run_id)
    days.ensure(session, day)
    if not days.hold(session, day, amount):
        raise _refuse(caps.day_cap(session, day, daily_cap), amount)
    # One row as VALUES: the executemany path's result set-up cost more than the insert itself.
    reservation_id = (
        session.connection()
        .execute(_HOLD, {"h_run": run_id, "h_batch": batch_id, "h_day": day, "h_amount": amount})
        .scalar_one()
    )
    reservation = Reservation(reservation_id, run_id, day, amount, capped)
    if before_hold is not None:
        before_hold(reservation)
    if capped:
        # Last, right before the COMMIT: every reservation of the run waits on this row lock, so it is
        # held for one statement. Day rows before the run's row, everywhere: no deadlock.
        _hold_run(session, run_id, amount)
    return reservation


def _uncapped_and_not_cancelled(session: Session, run_id: int) -> dt.date:
    """Today on the database's clock, read with the run's status under FOR KEY SHARE (see
    ``_capped_and_not_cancelled``); refuse once the run is cancelled."""
    row = session.connection().execute(_STATUS_AND_TODAY, {"run_id": run_id}).one_or_none()
    if row is None:
        raise NotFoundError(f"no run with id {run_id}")
    if row[0] == RunStatus.CANCELLED.value:
        raise RunCancelledError(f"run {run_id} was cancelled: the attempt was not sent")
    day: dt.date = row[1]
    return day


def _capped_and_not_cancelled(session: Session, run_id: int) -> bool:
    """Whether the run has a cap; for one without, refuse here once it is cancelled."""
    cap = session.execute(select(Run.spend_cap_usd).where(Run.id == run_id)).one_or_none()
    if cap is None:
        raise NotFoundError(f"no run with id {run_id}")
    if cap.spend_cap_usd is not None:
        return True  # _hold_run's UPDATE checks the status under the row lock
    # No cap, no counter to write. FOR KEY SHARE orders this against `budgetq cancel` (its FOR UPDATE
    # waits for sharers, a sharer waits for it and then reads its status), yet sharers never wait on
    # each other nor on a capped run's counter UPDATEs: after a cancel commits, no attempt.
    status = session.scalar(
        select(Run.status).where(Run.id == run_id).with_for_update(read=True, key_share=True)
    )
    if status == RunStatus.CANCELLED.value:
        raise RunCancelledError(f"run {run_id} was cancelled: the attempt was not sent")
    return False


def _hold_run(session: Session, run_id: int, amount: Decimal) -> None:
    """Count ``amount`` against the run's cap; refuse once the run is cancelled."""
    held = session.scalar(
        update(Run)
        .execution_options(synchronize_session=False)
        .where(
            Run.id == run_id,
            # The run's row lock orders this against `budgetq cancel`: after a cancel commits, no attempt.
            Run.status != RunStatus.CANCELLED.value,
            Run.spent_usd + Run.reserved_usd + amount <= Run.spend_cap_usd,
        )
        .values(reserved_usd=Run.reserved_usd + amount)
        .returning(Run.id)
    )
    if held is None:
        if session.scalar(select(Run.status).where(Run.id == run_id)) == RunStatus.CANCELLED.value:
            raise RunCancelledError(f"run {run_id} was cancelled: the attempt was not sent")
        # This reservation's own ledger row is already written (held) but not counted on the row.
        state = caps.run_cap(session, run_id)
        raise _refuse(replace(state, held=state.held - amount), amount)


def reserve_many(
    session: Session,
    run_id: int,
    requests: Sequence[tuple[int | None, Decimal]],
    daily_cap: Decimal | None,
) -> tuple[list[Reservation], SpendCapExceededError | None]:
    """Hold the amounts of ``requests`` ((batch id, amount), in priority order) against the run's and
    the day's caps, as many as fit in order; and the refusal of the first that does not fit
    (SpendCapBusyError or SpendCapExceededError), None when all fit.

    A capped day's row, then a capped run's, is locked while the figures are read and written, as
    ``reserve``'s conditional UPDATEs lock them: concurrent reservations wait, so spent + reserved <= cap.
    """
    day = caps.today(session)
    if daily_cap is not None:
        days.lower_cap(session, day, daily_cap)
    run = session.execute(
        select(Run.spend_cap_usd, Run.spent_usd, Run.reserved_usd).where(Run.id == run_id)
    ).one_or_none()
    if run is None:
        raise NotFoundError(f"no run with id {run_id}")
    # The day's row before the run's, as everywhere: no deadlock.
    days.ensure(session, day)
    day_capped = days.cap_of(session, day) is not None
    if day_capped:
        session.execute(select(DailySpend.day).where(DailySpend.day == day).with_for_update(key_share=True))
    if run.spend_cap_usd is not None:
        run = session.execute(
            select(Run.spend_cap_usd, Run.spent_usd, Run.reserved_usd)
            .where(Run.id == run_id)
            .with_for_update(key_share=True)
        ).one()
    states = (
        CapState(
            f"run {run_id}",
            run.spend_cap_usd,
            run.spent_usd,
            run.reserved_usd,
            caps.held_sum(session, SpendReservation.run_id == run_id)
            if run.spend_cap_usd is not None
            else Decimal(0),
        ),
        caps.day_cap(session, day, daily_cap),
    )
    amounts = [amount for _, amount in requests]
    count = fitting_prefix(states, amounts)
    total = sum(amounts[:count], Decimal(0))
    refusal = None
    if count < len(amounts):
        refusal = _refuse(refusing(states, total, amounts[count]), amounts[count])
    if count == 0:
        return [], refusal
    if run.spend_cap_usd is not None:
        session.execute(
            update(Run)
            .execution_options(synchronize_session=False)
            .where(Run.id == run_id)
            .values(reserved_usd=Run.reserved_usd + total)
        )
    if day_capped:
        session.execute(
            update(DailySpend)
            .execution_options(synchronize_session=False)
            .where(DailySpend.day == day)
            .values(reserved_usd=DailySpend.reserved_usd + total, updated_at=func.now())
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
) -> dt.date | None:
    """Close the reservation once, dated on the database's clock; the day it closed on, or None when it
    was already closed."""
    open_states = [ReservationStatus.HELD.value]
    if from_unknown:
        open_states.append(ReservationStatus.UNKNOWN.value)
    closed = session.connection().execute(
        _CLOSE, {"r_id": r.id, "open": open_states, "s_status": status.value, "s_actual": actual}
    )
    day: dt.date | None = closed.scalar()
    return day


def settle(session: Session, r: Reservation, actual: Decimal, *, from_unknown: bool = False) -> bool:
    """Turn the reservation into the actual cost (reserved -= amount, spent += actual), counted on the
    day it settles; once only. ``from_unknown``: also one given up as unknown (a Message Batch result
    read late: now known)."""
    day = _close(session, r, ReservationStatus.SETTLED, actual, from_unknown=from_unknown)
    if day is None:
        return False
    run, today = _move(session, r, day, spent=actual)
    outbox.record_spend(session, r.run_id, run, day, today)  # the 50/80/95/100% alerts, each once
    return True


def release(session: Session, r: Reservation, *, from_unknown: bool = False) -> bool:
    """Give the reservation back: nothing was billed (an error reply, or the call was never sent).
    ``from_unknown``: also one given up as unknown (a Message Batch result read late: now known)."""
    day = _close(session, r, ReservationStatus.RELEASED, Decimal(0), from_unknown=from_unknown)
    if day is None:
        return False
    _move(session, r, day, spent=Decimal(0))
    return True


def keep(session: Session, r: Reservation) -> bool:
    """Mark the outcome unknown: the reservation stays counted against both caps."""
    return _close(session, r, ReservationStatus.UNKNOWN, None) is not None


def _move(
    session: Session, r: Reservation, day: dt.date, *, spent: Decimal
) -> tuple[Spent | None, Spent | None]:
    """Move the counters that exist; the run's and the settling day's (spent, cap) after it, where capped
    (an uncapped one keeps no counters: None, and no alert can be due)."""
    today = days.move(session, r.day, day, r.amount, spent)
    if not r.capped:
        return None, today  # planned without a cap: the run's row has no counters to move
    # Last (day rows first, as everywhere), so a capped run's row lock is held for one statement. An
    # uncapped run's UPDATE matches nothing and writes nothing: only a capped run keeps counters.
    run = session.execute(
        update(Run)
        .execution_options(synchronize_session=False)
        .where(Run.id == r.run_id, Run.spend_cap_usd.is_not(None))
        .values(reserved_usd=Run.reserved_usd - r.amount, spent_usd=Run.spent_usd + spent)
        .returning(Run.spent_usd, Run.spend_cap_usd)
    ).one_or_none()
    return (None if run is None else (run.spent_usd, run.spend_cap_usd)), today


def abandon_held(session: Session, batch_ids: Sequence[int]) -> int:
    """Mark the held reservations of batches whose worker is gone as unknown: still counted against
    the caps (the call may have been billed), but no longer waited for as calls in flight."""
    if not batch_ids:
        return 0
    rows = session.scalars(
        update(SpendReservation)
        .execution_options(synchronize_session=False)
        .where(
            SpendReservation.batch_id.in_(batch_ids),
            SpendReservation.status == ReservationStatus.HELD.value,
        )
        .values(status=ReservationStatus.UNKNOWN.value, settled_at=func.now())
        .returning(SpendReservation.id)
    ).all()
    return len(rows)
