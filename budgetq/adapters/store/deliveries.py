"""Delivering the outbox: a delivery row per notification and target, claimed under a lease (so one
task at a time sends it, and a redelivered task finds nothing to do), then marked sent, due again
later, or failed. Every write after the claim is fenced by the claim's attempt number."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, literal, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from budgetq.adapters.store.notification_models import Notification, NotificationDelivery
from budgetq.domain.notifications import DeliveryStatus


@dataclass(frozen=True)
class Claimed:
    """A delivery this task holds: the notification, the target's digest and this try's number."""

    notification_id: int
    target: str
    attempt: int
    kind: str
    payload: dict[str, object]


@dataclass(frozen=True)
class DeliveryRow:
    """A delivery as `budgetq notifications` lists it."""

    notification_id: int
    kind: str
    created_at: dt.datetime
    target: str | None
    status: str | None
    attempts: int
    last_status: int | None
    last_error: str | None
    sent_at: dt.datetime | None


def open_deliveries(session: Session, targets: Sequence[str], max_age_s: float) -> int:
    """A pending delivery for each target of every notification younger than ``max_age_s`` that has
    none yet; older ones are never sent (a flood of stale news is worse than none). Returns how many."""
    recent = Notification.created_at >= func.now() - dt.timedelta(seconds=max_age_s)
    made = 0
    for target in targets:
        missing = ~(
            select(NotificationDelivery.notification_id)
            .where(
                NotificationDelivery.notification_id == Notification.id, NotificationDelivery.target == target
            )
            .exists()
        )
        rows = session.execute(
            pg_insert(NotificationDelivery)
            .from_select(
                ["notification_id", "target", "status"],
                select(Notification.id, literal(target), literal(DeliveryStatus.PENDING.value)).where(
                    recent, missing
                ),
            )
            .on_conflict_do_nothing()
            .returning(NotificationDelivery.notification_id)
        ).all()
        made += len(rows)
    return made


def claim(session: Session, targets: Sequence[str], lease_s: float, limit: int) -> list[Claimed]:
    """Take up to ``limit`` due deliveries to ``targets``: pending ones whose time has come, and sending
    ones whose lease ran out (their task died mid-send). Rows another task is claiming are skipped."""
    due = or_(
        and_(
            NotificationDelivery.status == DeliveryStatus.PENDING.value,
            NotificationDelivery.next_attempt_at <= func.now(),
        ),
        and_(
            NotificationDelivery.status == DeliveryStatus.SENDING.value,
            NotificationDelivery.lease_until < func.now(),
        ),
    )
    picked = (
        select(NotificationDelivery.notification_id, NotificationDelivery.target)
        .where(due, NotificationDelivery.target.in_(targets))
        .order_by(NotificationDelivery.notification_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = session.execute(
        update(NotificationDelivery)
        .where(tuple_(NotificationDelivery.notification_id, NotificationDelivery.target).in_(picked))
        .values(
            status=DeliveryStatus.SENDING.value,
            attempts=NotificationDelivery.attempts + 1,
            lease_until=func.now() + dt.timedelta(seconds=lease_s),
        )
        .returning(
            NotificationDelivery.notification_id, NotificationDelivery.target, NotificationDelivery.attempts
        )
    ).all()
    if not rows:
        return []
    events = {
        i: (kind, payload)
        for i, kind, payload in session.execute(
            select(Notification.id, Notification.kind, Notification.payload).where(
                Notification.id.in_([r.notification_id for r in rows])
            )
        )
    }
    return [
        Claimed(r.notification_id, r.target, r.attempts, *events[r.notification_id])
        for r in sorted(rows, key=lambda r: r.notification_id)
    ]


def finish(
    session: Session,
    c: Claimed,
    status: DeliveryStatus,
    *,
    http_status: int | None,
    error: str | None,
    retry_in_s: float | None = None,
) -> bool:
    """Record how this try ended: sent, pending again in ``retry_in_s``, or failed; False when the claim
    was lost meanwhile (its lease ran out and another task took it)."""
    values: dict[str, object] = {
        "status": status.value,
        "last_status": http_status,
        "last_error": error,
        "lease_until": None,
    }
    if status is DeliveryStatus.SENT:
        values["sent_at"] = func.now()
    if retry_in_s is not None:
        values["next_attempt_at"] = func.now() + dt.timedelta(seconds=retry_in_s)
    done = session.scalar(
        update(NotificationDelivery)
        .where(
            NotificationDelivery.notification_id == c.notification_id,
            NotificationDelivery.target == c.target,
            NotificationDelivery.status == DeliveryStatus.SENDING.value,
            NotificationDelivery.attempts == c.attempt,
        )
        .values(values)
        .returning(NotificationDelivery.notification_id)
    )
    return done is not None


def recent(session: Session, limit: int) -> list[DeliveryRow]:
    """The latest notifications with each of their deliveries (none yet: one row without a target)."""
    latest = select(Notification.id).order_by(Notification.id.desc()).limit(limit).subquery()
    rows = session.execute(
        select(
            Notification.id,
            Notification.kind,
            Notification.created_at,
            NotificationDelivery.target,
            NotificationDelivery.status,
            func.coalesce(NotificationDelivery.attempts, 0),
            NotificationDelivery.last_status,
            NotificationDelivery.last_error,
            NotificationDelivery.sent_at,
        )
        .join(latest, latest.c.id == Notification.id)
        .outerjoin(NotificationDelivery, NotificationDelivery.notification_id == Notification.id)
        .order_by(Notification.id.desc(), NotificationDelivery.target)
    ).all()
    return [DeliveryRow(*row) for row in rows]
