"""Writing notifications into the outbox, inside the transaction of the event they tell of: a run's
end, a spend threshold crossed, a nightly run that did not start. Each is one row per ``dedupe_key``
(``ON CONFLICT DO NOTHING``), so an event recorded twice is told once; each call costs O(1) rows,
except a run's end, which sums the run once.

The writes that ride in a worker's transaction run in a savepoint: should one fail, it is logged and
rolled back alone, and the run's own writes commit (a notification must never fail a run). A lost
connection is the exception: it fails the transaction as it would have anyway, so the caller's retry
writes the event and its notification together."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from budgetq.adapters.store import spend_caps as caps
from budgetq.adapters.store.models import Issue, IssueSet, LLMCall, Result, Run, RunIssue
from budgetq.adapters.store.notification_models import Notification
from budgetq.domain.notifications import (
    THRESHOLDS,
    TOP,
    EventKind,
    RunSummary,
    crossed,
    dedupe_key,
    event_kind_of_end,
)

log = logging.getLogger("budgetq.notify")


def _connection_lost(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


@contextmanager
def _never_fails(session: Session, what: str) -> Iterator[None]:
    try:
        with session.begin_nested():
            yield
    except Exception as exc:
        # A lost connection fails the whole transaction anyway: let the caller retry all of it (the
        # worker's durable writes do), notification included, rather than commit the event without it.
        if _connection_lost(exc):
            raise
        # Anything else (a bug, a constraint) loses this notification, logged, never the run's writes.
        log.exception("the notification of %s was not recorded", what)


def _record(
    session: Session, kind: EventKind, key: str, payload: dict[str, object], run_id: int | None = None
) -> bool:
    made = session.scalar(
        pg_insert(Notification)
        .values(kind=kind.value, dedupe_key=key, run_id=run_id, payload=payload)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(Notification.id)
    )
    return made is not None


def run_summary(session: Session, run_id: int) -> RunSummary:
    """The run's counts by issue status (whatever statuses exist), cost, top categories and datasets."""
    run = session.execute(
        select(Run.status, Run.stop_reason, IssueSet.name)
        .join(IssueSet, IssueSet.id == Run.set_id)
        .where(Run.id == run_id)
    ).one()
    counts = {
        str(status): int(n)
        for status, n in session.execute(
            select(RunIssue.status, func.count()).where(RunIssue.run_id == run_id).group_by(RunIssue.status)
        )
    }
    cost = session.scalar(
        select(func.coalesce(func.sum(LLMCall.cost_usd), 0)).where(LLMCall.run_id == run_id)
    )
    n = func.count().label("n")
    categories = session.execute(
        select(Result.category, n)
        .where(Result.run_id == run_id)
        .group_by(Result.category)
        .order_by(n.desc())
        .limit(TOP)
    ).all()
    datasets = session.execute(
        select(Issue.dataset, n)
        .join(Result, Result.issue_id == Issue.id)
        .where(Result.run_id == run_id, Issue.dataset.is_not(None))
        .group_by(Issue.dataset)
        .order_by(n.desc())
        .limit(TOP)
    ).all()
    return RunSummary(
        run_id=run_id,
        set_name=run.name,
        status=run.status,
        reason=run.stop_reason,
        counts=counts,
        cost_usd=Decimal(cost or 0),
        top_categories=[(str(c), int(k)) for c, k in categories],
        top_datasets=[(str(d), int(k)) for d, k in datasets],
    )


def record_run_end(session: Session, run_id: int) -> None:
    """The run just reached its final status (succeeded, failed, stopped or cancelled): one notification."""
    with _never_fails(session, f"run {run_id}'s end"):
        summary = run_summary(session, run_id)
        kind = event_kind_of_end(summary.status)
        _record(session, kind, dedupe_key(EventKind.RUN_ENDED, run_id), summary.to_json(), run_id)


def _thresholds(
    session: Session,
    scope: str,
    key: str,
    spent: Decimal,
    cap: Decimal | None,
    reached: tuple[int, ...],
    run_id: int,
    reason: str | None = None,
) -> None:
    payload: dict[str, object] = {"scope": scope, "spent_usd": str(spent), "cap_usd": str(cap)}
    if reason is not None:
        payload["reason"] = reason
    rows = [
        {
            "kind": EventKind.SPEND_THRESHOLD.value,
            "dedupe_key": dedupe_key(EventKind.SPEND_THRESHOLD, key, t),
            "run_id": run_id,
            "payload": {**payload, "threshold": t},
        }
        for t in reached
    ]
    if not rows:
        return  # the common case after a settlement: no savepoint, no round trip
    with _never_fails(session, f"{scope}'s spend alerts"):
        session.execute(
            pg_insert(Notification).values(rows).on_conflict_do_nothing(index_elements=["dedupe_key"])
        )


def record_spend(
    session: Session,
    run_id: int,
    run: tuple[Decimal, Decimal] | None,
    day: dt.date,
    today: tuple[Decimal, Decimal] | None,
) -> None:
    """After a settlement: an alert for each threshold of the run's and the day's caps now reached, from
    the (spent, cap) the settlement's counter updates returned (None where no cap applies: nothing to
    read); once each, as the rows of thresholds already told conflict and are skipped."""
    if run is not None:
        spent, cap = run
        _thresholds(session, f"run {run_id}", f"run:{run_id}", spent, cap, crossed(spent, cap), run_id)
    if today is not None:
        spent, cap = today
        scope = f"day {day.isoformat()}"
        _thresholds(session, scope, f"day:{day.isoformat()}", spent, cap, crossed(spent, cap), run_id)


def record_cap_reached(session: Session, run_id: int, daily_cap: Decimal | None) -> None:
    """A cap refused an attempt it can never cover and the run stops: the cap is reached, so the 100%
    alert of the binding cap (the one with less room left) goes out, with any lower threshold the
    refusal came before (a call's worst case can be more than 5% of a cap); each unless told already."""
    with _never_fails(session, f"run {run_id}'s cap reached"):
        run_state = caps.run_cap(session, run_id)
        day = caps.today(session)
        day_state = caps.day_cap(session, day, daily_cap)
        candidates = [
            (state.cap - state.committed, state, key)
            for state, key in ((run_state, f"run:{run_id}"), (day_state, f"day:{day.isoformat()}"))
            if state.cap is not None
        ]
        if not candidates:
            return
        _, state, key = min(candidates, key=lambda c: c[0])
        reason = "its room cannot cover the next call's worst case: the run stops"
        _thresholds(session, state.scope, key, state.spent, state.cap, THRESHOLDS, run_id, reason)


def record_nightly_missed(
    session: Session, set_id: int, set_name: str, night: dt.date, due_at: dt.datetime, window_s: float
) -> bool:
    """The nightly set ``set_id`` has no run for ``night`` although its schedule fired at ``due_at``;
    False when that was recorded already."""
    payload: dict[str, object] = {
        "set": set_name,
        "night": night.isoformat(),
        "due_at": due_at.isoformat(),
        "window_s": int(window_s),
    }
    return _record(
        session, EventKind.NIGHTLY_MISSED, dedupe_key(EventKind.NIGHTLY_MISSED, set_id, night), payload
    )


def nightly_without_run(session: Session, night: dt.date, due_at: dt.datetime) -> list[tuple[int, str]]:
    """The nightly sets, made before ``due_at``, that have no run for ``night``."""
    has_run = select(Run.id).where(Run.set_id == IssueSet.id, Run.nightly_date == night).exists()
    rows = session.execute(
        select(IssueSet.id, IssueSet.name)
        .where(IssueSet.nightly.is_(True), IssueSet.created_at < due_at, ~has_run)
        .order_by(IssueSet.id)
    ).all()
    return [(int(i), str(name)) for i, name in rows]
