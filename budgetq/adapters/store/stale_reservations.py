"""Spend reservations nothing will settle, given up by age so they cannot hold a capped run forever.

A synchronous call's reservation is settled when its attempt ends; one still ``held`` long after it
was made lost its settlement (a worker that died outside a lease, a write that never landed): it is
given up as ``unknown``, still counted against the caps but no longer waited for as a call in
flight, so a run that waits only on it stops with the cap's reason instead of waiting forever. An
``unknown`` one (maybe billed, nobody will ever say) is released after the same age, giving its room
back; its worst case stays in the cost views as ``llm_calls.unknown_usd``. Message Batch requests are
exempt: their results settle them whenever they arrive (``spend.settle(..., from_unknown=True)``).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from budgetq.adapters.store.models import Batch, SpendReservation
from budgetq.adapters.store.spend import Reservation, release
from budgetq.domain.statuses import ApiMode, ReservationStatus


def _synchronous() -> ColumnElement[bool]:
    """A reservation of a synchronous call (or of no batch): a Message Batch request's is settled by
    its result, however late, so no age gives it up."""
    batch_api = select(Batch.id).where(
        Batch.id == SpendReservation.batch_id, Batch.api_mode != ApiMode.SYNC.value
    )
    return ~batch_api.exists()


def expire_stale(session: Session, ttl_s: float, limit: int = 1000) -> tuple[list[int], int]:
    """Give up synchronous reservations nothing settled: held ``ttl_s`` after they were made become
    unknown (counted, no longer waited for), unknown for ``ttl_s`` are released. The ids made unknown,
    and how many were released."""
    cutoff = func.now() - dt.timedelta(seconds=ttl_s)
    stale_held = (
        select(SpendReservation.id)
        .where(
            SpendReservation.status == ReservationStatus.HELD.value,
            SpendReservation.created_at < cutoff,
            _synchronous(),
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    unknown = list(
        session.scalars(
            update(SpendReservation)
            .where(SpendReservation.id.in_(stale_held.scalar_subquery()))
            .values(status=ReservationStatus.UNKNOWN.value, settled_at=func.now())
            .returning(SpendReservation.id)
        )
    )
    r = SpendReservation
    old = session.execute(
        select(r.id, r.run_id, r.day, r.amount_usd)
        .where(
            SpendReservation.status == ReservationStatus.UNKNOWN.value,
            SpendReservation.settled_at < cutoff,
            _synchronous(),
        )
        .order_by(SpendReservation.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    released = sum(release(session, Reservation(*row), from_unknown=True) for row in old)
    return unknown, released
