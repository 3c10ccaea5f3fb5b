"""Run lifecycle: listing sets and runs, cancelling a run, and ending a claimed batch of a cancelled run.

A cancel is one transaction: the run's row is locked FOR UPDATE and becomes ``cancelled`` first (so
every later claim and uncapped reservation, which read the run row FOR KEY SHARE, and every capped
reservation, which updates it, waits and then sees the cancel), then its queued batches and their
pending issues become ``cancelled``. Batches already running keep their lease: the attempt in flight
finishes and is recorded, and a further attempt is refused at the spend gate (``RunCancelledError``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, aliased

from budgetq.adapters.store import outbox
from budgetq.adapters.store.batches import Claim
from budgetq.adapters.store.models import Batch, BatchIssue, Issue, IssueSet, Run, RunIssue, SpendReservation
from budgetq.adapters.store.run_issues import set_issue_status
from budgetq.domain.statuses import BatchStatus, IssueStatus, ReservationStatus, RunStatus
from budgetq.errors import LeaseLostError, NotFoundError

CANCELLABLE = (RunStatus.PLANNED.value, RunStatus.RUNNING.value)


@dataclass(frozen=True)
class SetRow:
    """An issue set as `budgetq sets` lists it."""

    name: str
    nightly: bool
    issues: int
    runs: int
    last_run_id: int | None
    last_run_status: str | None
    last_run_at: dt.datetime | None


@dataclass(frozen=True)
class RunRow:
    """A run as `budgetq runs` lists it."""

    id: int
    set_name: str
    kind: str
    status: str
    api_mode: str
    issues: int
    answered: int
    spent_usd: Decimal
    created_at: dt.datetime
    finished_at: dt.datetime | None
    stop_reason: str | None


@dataclass(frozen=True)
class Cancelled:
    """What a cancel did: the batches that will never be called and the batches still in flight."""

    run_id: int
    batches_cancelled: int
    issues_cancelled: int
    batches_in_flight: int


def list_sets(session: Session) -> list[SetRow]:
    """Every issue set with its issue and run counts and its latest run."""
    any_run = aliased(Run)
    issues = select(func.count()).where(Issue.set_id == IssueSet.id).scalar_subquery()
    runs = select(func.count()).where(any_run.set_id == IssueSet.id).scalar_subquery()
    last = select(func.max(any_run.id)).where(any_run.set_id == IssueSet.id).scalar_subquery()
    rows = session.execute(
        select(IssueSet.name, IssueSet.nightly, issues, runs, Run.id, Run.status, Run.created_at)
        .outerjoin(Run, Run.id == last)
        .order_by(IssueSet.name)
    ).all()
    return [SetRow(r[0], r[1], int(r[2]), int(r[3]), r[4], r[5], r[6]) for r in rows]


def list_runs(session: Session, set_id: int | None, status: str | None, limit: int) -> list[RunRow]:
    """The latest ``limit`` runs, newest first, of one set and in one status when given."""
    answered = (
        select(func.count())
        .where(
            RunIssue.run_id == Run.id,
            RunIssue.status.in_((IssueStatus.ANSWERED.value, IssueStatus.REUSED.value)),
        )
        .scalar_subquery()
    )
    total = select(func.count()).where(RunIssue.run_id == Run.id).scalar_subquery()
    # From the ledger: only a capped run keeps counters on its row (docs/architecture.md).
    spent = (
        select(func.coalesce(func.sum(SpendReservation.actual_usd), 0))
        .where(SpendReservation.run_id == Run.id, SpendReservation.status == ReservationStatus.SETTLED.value)
        .scalar_subquery()
    )
    query = (
        select(Run, IssueSet.name, total, answered, spent)
        .join(IssueSet, IssueSet.id == Run.set_id)
        .order_by(Run.id.desc())
        .limit(limit)
    )
    if set_id is not None:
        query = query.where(Run.set_id == set_id)
    if status is not None:
        query = query.where(Run.status == status)
    return [
        RunRow(
            run.id,
            name,
            run.kind,
            run.status,
            run.api_mode,
            int(n),
            int(a),
            Decimal(paid),
            run.created_at,
            run.finished_at,
            run.stop_reason,
        )
        for run, name, n, a, paid in session.execute(query)
    ]


def cancel_run(session: Session, run_id: int, reason: str) -> Cancelled:
    """Cancel a planned or running run (see the module's docstring); NotFoundError for an unknown run or
    one that already ended (naming its status)."""
    # FOR UPDATE first: the one lock that conflicts with the FOR KEY SHARE reads of claims and
    # reservations, so none starts against a run this cancel is ending (the counter UPDATEs of a capped
    # run take FOR NO KEY UPDATE and conflict with it too).
    session.execute(select(Run.id).where(Run.id == run_id).with_for_update())
    status = session.scalar(
        update(Run)
        .where(Run.id == run_id, Run.status.in_(CANCELLABLE))
        .values(status=RunStatus.CANCELLED.value, stop_reason=reason, finished_at=func.now())
        .returning(Run.status)
    )
    if status is None:
        current = session.scalar(select(Run.status).where(Run.id == run_id))
        if current is None:
            latest = session.scalar(select(func.max(Run.id)))
            raise NotFoundError(f"no run {run_id}; the latest run is {latest}; see `budgetq runs`")
        raise NotFoundError(f"run {run_id} already ended ({current}); only planned or running runs cancel")
    cancelled = session.scalars(
        update(Batch)
        .where(Batch.run_id == run_id, Batch.status == BatchStatus.QUEUED.value)
        .values(status=BatchStatus.CANCELLED.value, last_error=reason, finished_at=func.now())
        .returning(Batch.id)
    ).all()
    if cancelled:
        members = select(BatchIssue.issue_id).where(BatchIssue.batch_id.in_(cancelled))
        set_issue_status(session, run_id, members, IssueStatus.CANCELLED, reason)
    # A run cancels once, and only this cancel marks its issues cancelled: the count is this cancel's.
    issues = int(
        session.scalar(
            select(func.count()).where(
                RunIssue.run_id == run_id, RunIssue.status == IssueStatus.CANCELLED.value
            )
        )
        or 0
    )
    in_flight = session.scalar(
        select(func.count()).where(Batch.run_id == run_id, Batch.status == BatchStatus.RUNNING.value)
    )
    outbox.record_run_end(session, run_id)
    return Cancelled(run_id, len(cancelled), issues, int(in_flight or 0))


def end_cancelled(session: Session, c: Claim, reason: str) -> None:
    """A claimed batch whose run was cancelled before its next attempt: the batch and its pending issues
    end ``cancelled`` (fenced by the lease token, as every write of a claimed batch)."""
    done = session.execute(
        update(Batch)
        .where(
            Batch.id == c.batch_id, Batch.lease_token == c.token, Batch.status == BatchStatus.RUNNING.value
        )
        .values(
            status=BatchStatus.CANCELLED.value, lease_token=None, last_error=reason, finished_at=func.now()
        )
        .returning(Batch.id)
    ).one_or_none()
    if done is None:
        raise LeaseLostError(f"batch {c.batch_id}: this worker's lease expired or was taken over")
    set_issue_status(session, c.run_id, list(c.issue_ids), IssueStatus.CANCELLED, reason)
