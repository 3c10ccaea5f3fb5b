"""The reaper's queries: expired leases, queued batches without a message, orphans, finished runs.

Expired rows are taken ``FOR UPDATE SKIP LOCKED``: two reapers never handle the same batch, and a
worker renewing or completing that batch waits for the row and then finds its lease token gone, so
its late writes are refused (LeaseLostError).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from budgetq.adapters.store.completion import OPEN, close_if_done
from budgetq.adapters.store.models import Batch, Run
from budgetq.adapters.store.run_issues import fail_pending_issues
from budgetq.domain.reaper import ExpiredLease, Verdict
from budgetq.domain.statuses import BatchStatus, RunStatus


def expired_leases(session: Session, limit: int = 1000) -> list[ExpiredLease]:
    """Running batches whose lease ran out, locked for this transaction (others skip them)."""
    rows = session.execute(
        select(Batch.id, Batch.run_id, Batch.failures, Batch.last_error, Batch.lease_until)
        .where(Batch.status == BatchStatus.RUNNING.value, Batch.lease_until < func.now())
        .order_by(Batch.priority.desc(), Batch.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return [ExpiredLease(r.id, r.run_id, r.failures, r.last_error, r.lease_until) for r in rows]


def apply_verdicts(session: Session, verdicts: Sequence[Verdict]) -> None:
    """Requeue or fail each expired batch as decided; a failed batch's pending issues fail with it."""
    for v in verdicts:
        failed = v.status is BatchStatus.FAILED
        session.execute(
            update(Batch)
            .where(Batch.id == v.batch_id, Batch.status == BatchStatus.RUNNING.value)
            .values(
                status=v.status.value,
                failures=v.failures,
                lease_token=None,
                lease_until=None,
                last_error=v.reason,
                finished_at=func.now() if failed else None,
                # The reaper sends it right after this commits (and notes when).
                enqueued_at=None,
            )
        )
        if failed:
            fail_pending_issues(session, v.run_id, [v.batch_id], v.reason)


def unclaimed_queued(session: Session, older_than_s: float, limit: int = 10_000) -> list[int]:
    """Queued batches of running runs not sent (or, never sent, not created) for ``older_than_s``
    seconds, highest priority first."""
    cutoff = func.now() - dt.timedelta(seconds=older_than_s)
    running_runs = select(Run.id).where(Run.status == RunStatus.RUNNING.value)
    return list(
        session.scalars(
            select(Batch.id)
            .where(
                Batch.status == BatchStatus.QUEUED.value,
                Batch.run_id.in_(running_runs),
                func.coalesce(Batch.enqueued_at, Batch.created_at) < cutoff,
            )
            .order_by(Batch.priority.desc(), Batch.run_id, Batch.seq, Batch.id)
            .limit(limit)
        )
    )


def close_orphans(session: Session) -> int:
    """Fail queued batches of runs that are no longer running (stopped), with the run's reason."""
    rows = session.execute(
        select(Batch.id, Batch.run_id, Run.status, Run.stop_reason)
        .join(Run, Run.id == Batch.run_id)
        .where(Batch.status == BatchStatus.QUEUED.value, Run.status != RunStatus.RUNNING.value)
        .with_for_update(of=Batch, skip_locked=True)
    ).all()
    for r in rows:
        reason = r.stop_reason or f"the run ended ({r.status}) before this batch was processed"
        session.execute(
            update(Batch)
            .where(Batch.id == r.id, Batch.status == BatchStatus.QUEUED.value)
            .values(status=BatchStatus.FAILED.value, last_error=reason, finished_at=func.now())
        )
        fail_pending_issues(session, r.run_id, [r.id], reason)
    return len(rows)


def finish_done_runs(session: Session) -> list[int]:
    """Close every running run whose batches are all terminal; return the ids closed."""
    open_batches = select(Batch.id).where(Batch.run_id == Run.id, Batch.status.in_(OPEN)).exists()
    candidates = session.scalars(
        select(Run.id).where(Run.status == RunStatus.RUNNING.value, ~open_batches)
    ).all()
    return [run_id for run_id in candidates if close_if_done(session, run_id) is not None]


def mark_sent(session: Session, batch_ids: Sequence[int], delay_s: float = 0.0) -> None:
    """Note when batches' messages become due (now, or after a countdown), so the reaper waits for them."""
    if batch_ids:
        due = func.now() + dt.timedelta(seconds=max(0.0, delay_s))
        session.execute(update(Batch).where(Batch.id.in_(batch_ids)).values(enqueued_at=due))
