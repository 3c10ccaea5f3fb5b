"""What becomes of each issue of a run (its ``run_issues`` row) when batches fail, and stopping a run."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import BigInteger, Select, any_, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from budgetq.adapters.store import outbox
from budgetq.adapters.store.models import Batch, BatchIssue, Run, RunIssue
from budgetq.domain.statuses import BatchStatus, IssueStatus, RunStatus


def stop_run(session: Session, run_id: int, reason: str) -> None:
    """Stop a run: its queued batches and their issues fail with ``reason``. Batches already running
    finish and record their answers (their calls are paid for); later follow-ups are refused."""
    stopped = session.scalar(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.RUNNING.value)
        .values(status=RunStatus.STOPPED.value, stop_reason=reason, finished_at=func.now())
        .returning(Run.id)
    )
    failed = session.scalars(
        update(Batch)
        .where(Batch.run_id == run_id, Batch.status == BatchStatus.QUEUED.value)
        .values(status=BatchStatus.FAILED.value, last_error=reason, finished_at=func.now())
        .returning(Batch.id)
    ).all()
    if failed:
        fail_pending_issues(session, run_id, failed, reason)
    if stopped is not None:
        outbox.record_run_end(session, run_id)


def fail_pending_issues(session: Session, run_id: int, batch_ids: Sequence[int], reason: str) -> None:
    """The run's issues in ``batch_ids`` still pending fail with ``reason``."""
    members = select(BatchIssue.issue_id).where(BatchIssue.batch_id.in_(batch_ids))
    set_issue_status(session, run_id, members, IssueStatus.FAILED, reason)


def set_issue_status(
    session: Session,
    run_id: int,
    issue_ids: Sequence[int] | Select[int],
    status: IssueStatus,
    reason: str | None,
) -> None:
    """Set the run's still-pending issues among ``issue_ids`` to ``status`` (with ``reason``), and
    their duplicates inside the run, which share their fate (an answer fans out before this)."""
    if isinstance(issue_ids, Select):
        among = RunIssue.issue_id.in_(issue_ids) | RunIssue.same_as_issue_id.in_(issue_ids)
    else:
        # One array parameter: an IN list of 100 parameters cost more to plan than to run.
        ids = any_(bindparam("ids", list(issue_ids), ARRAY(BigInteger)))
        among = (RunIssue.issue_id == ids) | (RunIssue.same_as_issue_id == ids)
    session.execute(
        update(RunIssue)
        .where(RunIssue.run_id == run_id, among, RunIssue.status == IssueStatus.PENDING.value)
        .values(status=status.value, reason=reason)
        .execution_options(synchronize_session=False)
    )
