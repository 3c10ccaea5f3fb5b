"""Runs: writing a planned run (batches, memberships, issue statuses) and reading its progress."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import chain, islice

from sqlalchemy import BigInteger, any_, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from budgetq.adapters.store import completion
from budgetq.adapters.store.models import Batch, BatchIssue, Issue, LLMCall, Result, Run, RunIssue
from budgetq.domain.packing import Oversize, PlannedBatch
from budgetq.domain.statuses import ApiMode, BatchStatus, IssueStatus, RunStatus
from budgetq.errors import NotFoundError

TERMINAL = tuple(s.value for s in BatchStatus if s.terminal)
# Issues in a plan from which its tables are analyzed at once (a few hundred ms at 1M rows).
ANALYZE_AFTER = 10_000
INSERT_CHUNK = 10_000


@dataclass(frozen=True)
class RunSpec:
    """Everything fixed about a run when it is planned."""

    set_id: int
    kind: str
    mode: str
    model: str
    max_tokens: int
    safe_utilization: float
    context_window: int
    calibration: float
    spend_cap_usd: Decimal | None = None
    nightly_date: dt.date | None = None
    selector: Mapping[str, object] | None = None
    api_mode: str = ApiMode.SYNC.value  # sync, or batch-api: its batches travel in Message Batches
    request_key: str | None = None  # the request that started it; one run per key


@dataclass(frozen=True)
class Deferred:
    """An issue left out of a run on purpose (spend cap), with the reason."""

    issue_id: int
    priority: int
    input_tokens: int
    reason: str


@dataclass(frozen=True)
class Progress:
    """A run's counts, read in one go."""

    run_id: int
    status: str
    batches: Mapping[str, int] = field(default_factory=dict)
    issues: Mapping[str, int] = field(default_factory=dict)
    calls: int = 0
    cost_usd: Decimal = Decimal(0)
    max_utilization: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    spend_cap_usd: Decimal | None = None

    @property
    def batches_open(self) -> int:
        """Batches not yet terminal."""
        return sum(n for s, n in self.batches.items() if s not in TERMINAL)

    @property
    def spend(self) -> str:
        """Spend so far, against the run's cap when it has one: ``$1.2345 of $5.00 cap``."""
        spent = f"${self.cost_usd:.4f}"
        return spent if self.spend_cap_usd is None else f"{spent} of ${self.spend_cap_usd:.2f} cap"


def create_run(session: Session, spec: RunSpec) -> int | None:
    """Insert the run; for a nightly run already planned for that night, or a run already started by
    the same request key, return None."""
    values = {
        "set_id": spec.set_id,
        "kind": spec.kind,
        "status": RunStatus.PLANNED.value,
        "mode": spec.mode,
        "api_mode": spec.api_mode,
        "model": spec.model,
        "nightly_date": spec.nightly_date,
        "request_key": spec.request_key,
        "selector": dict(spec.selector) if spec.selector is not None else None,
        "max_tokens": spec.max_tokens,
        "safe_utilization": spec.safe_utilization,
        "context_window": spec.context_window,
        "calibration": spec.calibration,
        "spend_cap_usd": spec.spend_cap_usd,
    }
    # Either unique key (one run per night, one per request) makes the insert a no-op.
    stmt = pg_insert(Run).values(**values).on_conflict_do_nothing()
    return session.scalar(stmt.returning(Run.id))


def nightly_run_id(session: Session, set_id: int, night: dt.date) -> int | None:
    """The id of the set's nightly run for ``night``, if one was planned."""
    return session.scalar(select(Run.id).where(Run.set_id == set_id, Run.nightly_date == night))


def runs_of_batches(session: Session, batch_ids: Sequence[int]) -> list[int]:
    """The ids of the runs ``batch_ids`` belong to."""
    if not batch_ids:
        return []
    return list(session.scalars(select(Batch.run_id).where(Batch.id.in_(batch_ids)).distinct()))


def requested_run_id(session: Session, request_key: str) -> int | None:
    """The id of the run the request ``request_key`` started, if it started one."""
    return session.scalar(select(Run.id).where(Run.request_key == request_key))


def write_plan(
    session: Session,
    run_id: int,
    batches: Sequence[PlannedBatch],
    oversize: Sequence[Oversize],
    deferred: Sequence[Deferred],
    issue_tokens: Mapping[int, int],
    priorities: Mapping[int, int],
    max_tokens: int,
    api_mode: str = ApiMode.SYNC.value,
    reuse_keys: Mapping[int, str] | None = None,
) -> list[int]:
    """Write the batches in queue order, their memberships and every issue's status (with its reuse key
    from ``reuse_keys``); return batch ids."""
    keys = reuse_keys or {}
    batch_rows = [
        {
            "run_id": run_id,
            "seq": seq,
            "priority": b.priority,
            "status": BatchStatus.QUEUED.value,
            "issue_count": len(b.issue_ids),
            "input_tokens_est": b.input_tokens,
            "output_tokens_est": b.output_tokens,
            "max_tokens": max_tokens,
            "api_mode": api_mode,
        }
        for seq, b in enumerate(batches)
    ]
    batch_ids: list[int] = []
    if batch_rows:
        batch_ids = list(
            session.scalars(insert(Batch).returning(Batch.id, sort_by_parameter_order=True), batch_rows)
        )
        members = (
            {"batch_id": bid, "issue_id": i}
            for bid, b in zip(batch_ids, batches, strict=True)
            for i in b.issue_ids
        )
        _insert_in_chunks(session, BatchIssue, members)
    pending = (
        {
            "run_id": run_id,
            "issue_id": i,
            "priority": priorities[i],
            "input_tokens_est": issue_tokens[i],
            "status": IssueStatus.PENDING.value,
            "reason": None,
            "reuse_key": keys.get(i),
        }
        for b in batches
        for i in b.issue_ids
    )
    left_out = (
        {
            "run_id": run_id,
            "issue_id": o.issue_id,
            "priority": o.priority,
            "input_tokens_est": o.input_tokens,
            "status": status.value,
            "reason": o.reason,
            "reuse_key": keys.get(o.issue_id),
        }
        for status, group in ((IssueStatus.OVERSIZE, oversize), (IssueStatus.DEFERRED, deferred))
        for o in group
    )
    rows: Iterable[Mapping[str, object]] = chain(pending, left_out)
    written = _insert_in_chunks(session, RunIssue, rows)
    session.execute(update(Run).where(Run.id == run_id).values(status=RunStatus.RUNNING.value))
    if written >= ANALYZE_AFTER:
        # A large plan changes these tables' shape at once; autovacuum's ANALYZE comes later, and the
        # per-batch statements would be planned on the old statistics meanwhile (own rows count here).
        session.execute(text("ANALYZE batches, batch_issues, run_issues"))
    return batch_ids


def _insert_in_chunks(
    session: Session, table: type[BatchIssue] | type[RunIssue], rows: Iterable[Mapping[str, object]]
) -> int:
    """Insert ``rows`` a chunk at a time (a 1M-issue plan never holds all its rows' parameters at once);
    return how many."""
    count = 0
    iterator = iter(rows)
    while chunk := list(islice(iterator, INSERT_CHUNK)):
        session.execute(insert(table), chunk)
        count += len(chunk)
    return count


def mark_enqueued(session: Session, batch_ids: Sequence[int]) -> None:
    """Note when batches were handed to the broker."""
    if batch_ids:
        # One array parameter: a 1M-issue plan enqueues 10,000 batches at once.
        session.execute(
            update(Batch)
            .where(Batch.id == any_(bindparam("ids", list(batch_ids), ARRAY(BigInteger))))
            .values(enqueued_at=func.now())
            .execution_options(synchronize_session=False)
        )


def progress(session: Session, run_id: int, *, by_issue: bool = True) -> Progress:
    """Counts of batches and issues by status, and the run's calls, tokens and cost so far.

    ``by_issue=False`` is the cheap poll of a large run: its issues are counted only as ``pending``
    (the members of its open batches, read through the partial index of open batches), never by
    scanning every one of the run's ``run_issues`` rows."""
    run = session.get(Run, run_id)
    if run is None:
        raise NotFoundError(f"no run with id {run_id}")
    batch_counts = select(Batch.status, func.count()).where(Batch.run_id == run_id).group_by(Batch.status)
    batches = {status: int(n) for status, n in session.execute(batch_counts)}
    if by_issue:
        issue_counts = (
            select(RunIssue.status, func.count()).where(RunIssue.run_id == run_id).group_by(RunIssue.status)
        )
        issues = {status: int(n) for status, n in session.execute(issue_counts)}
    else:
        in_open = select(func.coalesce(func.sum(Batch.issue_count), 0)).where(
            Batch.run_id == run_id, completion.OPEN_BATCH
        )
        issues = {IssueStatus.PENDING.value: int(session.scalar(in_open) or 0)}
    calls = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(LLMCall.cost_usd), 0),
            func.coalesce(func.max(LLMCall.utilization), 0.0),
            func.coalesce(func.sum(LLMCall.input_tokens), 0),
            func.coalesce(func.sum(LLMCall.output_tokens), 0),
            func.coalesce(func.sum(LLMCall.cache_read_input_tokens), 0),
        ).where(LLMCall.run_id == run_id)
    ).one()
    return Progress(
        run_id=run_id,
        status=run.status,
        batches=batches,
        issues=issues,
        calls=int(calls[0] or 0),
        cost_usd=Decimal(calls[1] or 0),
        max_utilization=float(calls[2] or 0.0),
        input_tokens=int(calls[3] or 0),
        output_tokens=int(calls[4] or 0),
        cache_read_tokens=int(calls[5] or 0),
        spend_cap_usd=run.spend_cap_usd,
    )


@dataclass(frozen=True)
class Tally:
    """What a finished run left in the tables: its set's issues, its results, its calls over the guard."""

    issues: int
    results: int
    calls_over_guard: int


def tally(session: Session, run_id: int, set_id: int, *, guard_share: float) -> Tally:
    """A run's results, and its calls whose billed input + max_tokens broke ``guard_share`` of the window."""
    issues = session.scalar(select(func.count()).select_from(Issue).where(Issue.set_id == set_id)) or 0
    results = session.scalar(select(func.count()).select_from(Result).where(Result.run_id == run_id)) or 0
    over = LLMCall.billed_input_tokens + LLMCall.max_tokens > LLMCall.context_window * guard_share
    over_guard = (
        session.scalar(select(func.count()).select_from(LLMCall).where(LLMCall.run_id == run_id, over)) or 0
    )
    return Tally(issues, results, over_guard)
