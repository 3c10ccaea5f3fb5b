"""Which path a run's batches take (batches.api_mode): routing them, and claiming batch-api ones.

A synchronous batch gets one task and one call; a batch-api batch waits, queued, until a submit
claims it with the run's other queued batch-api batches (under one lease token, highest priority
first) to send them as requests of Message Batches. ``held`` rebuilds the claims of batches still
held under given tokens, for settling their results.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from budgetq.adapters.store.batches import Claim, ClaimedIssue, claim_of
from budgetq.adapters.store.models import Batch, BatchIssue, Issue, IssueSet, Run, RunIssue
from budgetq.domain.statuses import ApiMode, BatchStatus, RunStatus


def set_api_mode(session: Session, set_id: int) -> str | None:
    """The issue set's own API mode, if it has one."""
    return session.scalar(select(IssueSet.api_mode).where(IssueSet.id == set_id))


def route(session: Session, batch_ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """Split ``batch_ids`` into (synchronous batch ids, ids of runs with batch-api batches among them)."""
    rows = session.execute(
        select(Batch.id, Batch.run_id, Batch.api_mode).where(Batch.id.in_(batch_ids))
    ).all()
    modes = {r.id: r.api_mode for r in rows}
    sync = [b for b in batch_ids if modes.get(b, ApiMode.SYNC.value) == ApiMode.SYNC.value]
    runs = sorted({r.run_id for r in rows if r.api_mode == ApiMode.BATCH_API.value})
    return sync, runs


def runs_waiting(session: Session) -> list[int]:
    """Running runs with queued batch-api batches (not yet in any Message Batch)."""
    return list(
        session.scalars(
            select(Batch.run_id)
            .join(Run, Run.id == Batch.run_id)
            .where(
                Run.status == RunStatus.RUNNING.value,
                Batch.status == BatchStatus.QUEUED.value,
                Batch.api_mode == ApiMode.BATCH_API.value,
            )
            .distinct()
            .order_by(Batch.run_id)
        )
    )


def claim_queued(session: Session, run_id: int, lease_seconds: float, limit: int) -> list[Claim]:
    """Take the lease on up to ``limit`` of the run's queued batch-api batches, highest priority first."""
    token = uuid.uuid4()
    queued = (
        select(Batch.id)
        .join(Run, Run.id == Batch.run_id)
        .where(
            Batch.run_id == run_id,
            Run.status == RunStatus.RUNNING.value,
            Batch.status == BatchStatus.QUEUED.value,
            Batch.api_mode == ApiMode.BATCH_API.value,
        )
        .order_by(Batch.priority.desc(), Batch.seq, Batch.id)
        .limit(limit)
        .with_for_update(of=Batch, skip_locked=True)
    )
    rows = session.execute(
        update(Batch)
        .where(Batch.id.in_(queued.scalar_subquery()))
        .values(
            status=BatchStatus.RUNNING.value,
            lease_token=token,
            lease_until=func.now() + dt.timedelta(seconds=lease_seconds),
            attempts=Batch.attempts + 1,
        )
        .returning(Batch.id)
    ).all()
    return held(session, {r.id: token for r in rows})


def renew_held(session: Session, claims: Sequence[Claim], lease_seconds: float) -> set[int]:
    """Extend the lease of the claims still held under their tokens; return their batch ids. A claim
    left out lost its lease (the reaper gave the batch back): it must not be sent under this claim."""
    if not claims:
        return set()
    tokens = {c.batch_id: c.token for c in claims}
    rows = session.execute(
        update(Batch)
        .where(
            Batch.id.in_(list(tokens)),
            Batch.lease_token.in_(set(tokens.values())),
            Batch.status == BatchStatus.RUNNING.value,
        )
        .values(lease_until=func.now() + dt.timedelta(seconds=lease_seconds))
        .returning(Batch.id, Batch.lease_token)
    ).all()
    return {r.id for r in rows if tokens[r.id] == r.lease_token}


def held(session: Session, tokens: Mapping[int, uuid.UUID], *, only_held: bool = True) -> list[Claim]:
    """Claims for the batches still running under the given lease tokens (the others are left out);
    with ``only_held=False`` for the batches whatever their state (to record a call, never to settle)."""
    if not tokens:
        return []
    rows = session.execute(
        select(Batch, Run)
        .join(Run, Run.id == Batch.run_id)
        .where(Batch.id.in_(tokens))
        .order_by(Batch.priority.desc(), Batch.seq, Batch.id)
    ).all()
    batches = [
        (b, r)
        for b, r in rows
        if not only_held or (b.status == BatchStatus.RUNNING.value and b.lease_token == tokens[b.id])
    ]
    issues: dict[int, list[ClaimedIssue]] = {b.id: [] for b, _ in batches}
    issue_rows = session.execute(
        select(BatchIssue.batch_id, Issue.id, Issue.priority, Issue.text, RunIssue.input_tokens_est)
        .join(Issue, Issue.id == BatchIssue.issue_id)
        .join(Batch, Batch.id == BatchIssue.batch_id)
        .join(RunIssue, (RunIssue.issue_id == Issue.id) & (RunIssue.run_id == Batch.run_id))
        .where(BatchIssue.batch_id.in_(list(issues)))
        .order_by(Issue.priority.desc(), Issue.id)  # the order budgetq.adapters.store.batches.claim uses
    )
    for r in issue_rows:
        issues[r.batch_id].append(ClaimedIssue(r.id, r.priority, r.text, r.input_tokens_est))
    return [claim_of(b, run, tokens[b.id], issues[b.id]) for b, run in batches]


def set_batch_api_mode(session: Session, batch_ids: Sequence[int], api_mode: str) -> None:
    """Send batches (queued again after a failed request) down ``api_mode``'s path."""
    if batch_ids:
        session.execute(update(Batch).where(Batch.id.in_(batch_ids)).values(api_mode=api_mode))
