"""Batches under a lease: claim, complete, split, requeue or fail (each attempt's row: ``calls``).

Every write that changes a batch after its claim is fenced by the lease token: a worker that lost
its lease (the reaper handed the batch to another) changes nothing and gets LeaseLostError.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any

from sqlalchemy import Interval, Row, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from budgetq.adapters.store.answered import write_answers
from budgetq.adapters.store.models import Batch, BatchIssue, Issue, Run, RunIssue
from budgetq.adapters.store.run_issues import set_issue_status
from budgetq.domain.answers import Answer
from budgetq.domain.settle import half_failures
from budgetq.domain.statuses import ApiMode, BatchStatus, IssueStatus, RunStatus
from budgetq.errors import LeaseLostError


@dataclass(frozen=True)
class ClaimedIssue:
    """An issue of a claimed batch, with what the planner estimated for it."""

    issue_id: int
    priority: int
    text: str
    input_tokens: int


@dataclass(frozen=True)
class Claim:
    """A batch this worker holds the lease on, with everything needed to call for it."""

    batch_id: int
    run_id: int
    token: uuid.UUID
    priority: int
    max_tokens: int
    model: str
    mode: str
    context_window: int
    safe_utilization: float
    calibration: float
    failures: int
    issues: tuple[ClaimedIssue, ...]
    api_mode: str = ApiMode.SYNC.value  # the path its follow-up batches take (batches.api_mode)
    capped: bool = True  # the run has a spend cap (counters to keep); fixed when the run is planned

    @cached_property
    def issue_ids(self) -> tuple[int, ...]:
        """The batch's issue ids in order (asked for per answer while validating: built once)."""
        return tuple(i.issue_id for i in self.issues)


# The per-batch statements are built once and run on the session's connection: built per call and run
# through the ORM session, each cost about 2.5 times the CPU (docs/benchmarks.md, "Pipeline").
_CLAIMABLE = (Batch.status == BatchStatus.QUEUED.value) | (
    (Batch.status == BatchStatus.RUNNING.value) & (Batch.lease_until < func.now())
)
# FOR KEY SHARE: a claim and `budgetq cancel` (which locks the run's row FOR UPDATE first) are ordered by
# the row lock, while a capped run's counter UPDATEs (FOR NO KEY UPDATE) and the claims of its other
# batches never wait on each other.
_RUNNING_RUNS = (
    select(Run.id).where(Run.status == RunStatus.RUNNING.value).with_for_update(read=True, key_share=True)
)
_CLAIM = (
    update(Batch)
    .where(
        Batch.id == bindparam("batch_id"),
        _CLAIMABLE,
        Batch.run_id.in_(_RUNNING_RUNS),
        # A batch-api batch travels in a Message Batch (worker/batch_api); a stray task must not call for it.
        Batch.api_mode == ApiMode.SYNC.value,
    )
    .values(
        status=BatchStatus.RUNNING.value,
        lease_token=bindparam("token"),
        lease_until=func.now() + bindparam("lease", type_=Interval),
        attempts=Batch.attempts + 1,
    )
    .returning(Batch.id, Batch.run_id, Batch.priority, Batch.max_tokens, Batch.failures, Batch.api_mode)
)
# The columns, not the ORM object: loading a Run into the session cost more than the claim's UPDATE.
_RUN_OF_CLAIM = select(
    Run.model, Run.mode, Run.context_window, Run.safe_utilization, Run.calibration, Run.spend_cap_usd
).where(Run.id == bindparam("run_id"))
# The batch's members first, materialised: with stale statistics (a run just planned) a prepared
# statement's generic plan started from the run's run_issues instead, 1.5 s per claim at 100k.
_MEMBERS = (
    select(BatchIssue.issue_id)
    .where(BatchIssue.batch_id == bindparam("batch_id"))
    .cte("members")
    .prefix_with("MATERIALIZED")
)
_CLAIMED_ISSUES = (
    select(Issue.id, Issue.priority, Issue.text, RunIssue.input_tokens_est)
    .select_from(_MEMBERS)
    .join(Issue, Issue.id == _MEMBERS.c.issue_id)
    .join(RunIssue, (RunIssue.run_id == bindparam("run_id")) & (RunIssue.issue_id == _MEMBERS.c.issue_id))
    .order_by(Issue.priority.desc(), Issue.id)
)


def claim(session: Session, batch_id: int, lease_seconds: float) -> Claim | None:
    """Take the lease on a queued batch (or one whose lease expired) of a running run; None when someone
    else holds it, it is done, or its run was stopped."""
    token = uuid.uuid4()
    conn = session.connection()
    row = conn.execute(
        _CLAIM, {"batch_id": batch_id, "token": token, "lease": dt.timedelta(seconds=lease_seconds)}
    ).one_or_none()
    if row is None:
        return None
    run = conn.execute(_RUN_OF_CLAIM, {"run_id": row.run_id}).one()
    issues = conn.execute(_CLAIMED_ISSUES, {"batch_id": batch_id, "run_id": row.run_id}).all()
    return claim_of(
        row, run, token, (ClaimedIssue(r.id, r.priority, r.text, r.input_tokens_est) for r in issues)
    )


def claim_of(
    batch: Batch | Row[*tuple[Any, ...]],
    run: Run | Row[*tuple[Any, ...]],
    token: uuid.UUID,
    issues: Iterable[ClaimedIssue],
) -> Claim:
    """The claim held under ``token`` on ``batch`` (a row, or its columns as ``claim`` returns them)."""
    return Claim(
        batch_id=batch.id,
        run_id=batch.run_id,
        token=token,
        priority=batch.priority,
        max_tokens=batch.max_tokens,
        model=run.model,
        mode=run.mode,
        context_window=run.context_window,
        safe_utilization=run.safe_utilization,
        calibration=run.calibration,
        failures=batch.failures,
        issues=tuple(issues),
        api_mode=batch.api_mode,
        capped=run.spend_cap_usd is not None,
    )


def renew(session: Session, c: Claim, lease_seconds: float) -> None:
    """Extend the lease while a call is still running."""
    _fence(session, c, lease_until=func.now() + dt.timedelta(seconds=lease_seconds))


def _fence(session: Session, c: Claim, **values: object) -> None:
    done = session.execute(
        update(Batch)
        .execution_options(synchronize_session=False)
        .where(
            Batch.id == c.batch_id, Batch.lease_token == c.token, Batch.status == BatchStatus.RUNNING.value
        )
        .values(**values)
        .returning(Batch.id)
    ).one_or_none()
    if done is None:
        raise _lease_lost(c)


def _lease_lost(c: Claim) -> LeaseLostError:
    return LeaseLostError(
        f"batch {c.batch_id}: this worker's lease expired or was taken over; its result is discarded "
        "and the batch's current holder will write it"
    )


# ``_fence`` closing a batch as succeeded, built once: it runs for every answered batch.
_SUCCEEDED = (
    update(Batch)
    .where(
        Batch.id == bindparam("batch_id"),
        Batch.lease_token == bindparam("token"),
        Batch.status == BatchStatus.RUNNING.value,
    )
    .values(status=BatchStatus.SUCCEEDED.value, lease_token=None, finished_at=func.now())
    .returning(Batch.id)
)


def _close(session: Session, c: Claim, status: BatchStatus, reason: str) -> None:
    _fence(session, c, status=status.value, lease_token=None, last_error=reason, finished_at=func.now())


def _new_batch(session: Session, c: Claim, issue_ids: Sequence[int], reason: str, failures: int = 0) -> int:
    """A child batch of ``c`` holding ``issue_ids``, queued with the parent's priority and ``failures``
    already counted."""
    by_id = {i.issue_id: i for i in c.issues}
    batch_id = session.scalars(
        insert(Batch).returning(Batch.id),
        [
            {
                "run_id": c.run_id,
                "parent_id": c.batch_id,
                "seq": 0,
                "priority": max(by_id[i].priority for i in issue_ids),
                "status": BatchStatus.QUEUED.value,
                "issue_count": len(issue_ids),
                "input_tokens_est": sum(by_id[i].input_tokens for i in issue_ids),
                "output_tokens_est": 0,
                "max_tokens": c.max_tokens,
                "last_error": reason,
                "failures": failures,
                "api_mode": c.api_mode,
            }
        ],
    ).one()
    session.execute(insert(BatchIssue), [{"batch_id": batch_id, "issue_id": i} for i in issue_ids])
    return batch_id


def complete(
    session: Session,
    c: Claim,
    llm_call_id: int,
    answers: Sequence[Answer],
    missing: Sequence[int],
    *,
    split_missing: bool = False,
    cost_usd: Decimal | None = None,
) -> list[int]:
    """Write the answers and close the batch; missing ids go to a follow-up batch (two halves when
    ``split_missing``, after an overflow), whose ids are returned."""
    finished = session.connection().execute(_SUCCEEDED, {"batch_id": c.batch_id, "token": c.token})
    if finished.one_or_none() is None:
        raise _lease_lost(c)
    write_answers(session, c.run_id, c.batch_id, llm_call_id, answers, cost_usd)
    if not missing:
        return []
    reason = f"follow-up of batch {c.batch_id}: {len(missing)} ids unanswered"
    if split_missing and len(missing) > 1:
        half = len(missing) // 2
        return [
            _new_batch(session, c, missing[:half], reason),
            _new_batch(session, c, missing[half:], reason),
        ]
    return [_new_batch(session, c, missing, reason)]


def split(session: Session, c: Claim, reason: str, inherited: int = 0) -> list[int]:
    """Close the batch as split and queue its two halves, each starting with the failures the rule
    gives it (``domain.settle.half_failures``); return their ids."""
    _close(session, c, BatchStatus.SPLIT, reason)
    ids = c.issue_ids
    half = len(ids) // 2
    return [
        _new_batch(session, c, part, reason, half_failures(inherited, len(part)))
        for part in (ids[:half], ids[half:])
    ]


def fail(session: Session, c: Claim, reason: str) -> None:
    """Close the batch as failed; its issues fail with ``reason``."""
    _close(session, c, BatchStatus.FAILED, reason)
    set_issue_status(session, c.run_id, c.issue_ids, IssueStatus.FAILED, reason)


def release(session: Session, c: Claim, reason: str, *, count_failure: bool = True) -> None:
    """Give the batch back to the queue after a failed try, counting the failure unless told not to
    (nothing was sent)."""
    _fence(
        session,
        c,
        status=BatchStatus.QUEUED.value,
        lease_token=None,
        lease_until=None,
        last_error=reason,
        failures=Batch.failures + 1 if count_failure else Batch.failures,
    )
