"""The ``llm_calls`` rows: one per HTTP attempt, written before the attempt is sent and settled after.

A synchronous attempt's row is opened ``pending`` in the transaction that reserves its spend (it
carries the reservation's id and, as ``unknown_usd``, its worst case), and closed with what the
attempt did in the transaction that settles the reservation (``worker/ledger.py``). So a worker that
dies mid-call leaves a pending row beside a held reservation, and the reaper marks both unknown: a
call paid for but never answered to us is still in the cost views, as a worst case.

A request of a Message Batch is the same: its row is opened ``pending`` (``open_requests``) with its
reservation in the transaction that records it, before the create; its result closes it
(``close_attempt``); a create the API refused closes it with the refusal (``close_refused``); one that
may have gone through unseen marks it ``unknown`` (``mark_unknown_calls``).

Rows are not fenced by the lease: the attempt happened whoever holds the batch now.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import BindParameter, bindparam, delete, func, insert, update
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.dml import ReturningInsert, ReturningUpdate

from budgetq.adapters.store.batches import Claim
from budgetq.adapters.store.models import LLMCall
from budgetq.domain.calls import Attempt
from budgetq.domain.statuses import CallOutcome

# Stand-in and replayed calls are priced at list price but nobody is billed for them.
UNBILLED_MODES = ("standin", "replay")


def _claim_columns(c: Claim, estimated_input: int, counted_input: int | None, host: str) -> dict[str, Any]:
    return {
        "run_id": c.run_id,
        "batch_id": c.batch_id,
        "model": c.model,
        "mode": c.mode,
        "estimated_input_tokens": estimated_input,
        "counted_input_tokens": counted_input,
        "max_tokens": c.max_tokens,
        "context_window": c.context_window,
        "would_have_cost": c.mode in UNBILLED_MODES,
        "worker_host": host,
    }


def _attempt_columns(c: Claim, attempt: Attempt) -> dict[str, Any]:
    u = attempt.usage
    billed = None if u is None else u.input_tokens + u.cache_creation_5m + u.cache_creation_1h + u.cache_read
    return {
        "attempt": attempt.number,
        "request_id": attempt.request_id,
        "status": attempt.outcome.value,
        "error_type": attempt.error_type,
        "error_message": attempt.error_message,
        "http_status": attempt.http_status,
        "input_tokens": None if u is None else u.input_tokens,
        "output_tokens": None if u is None else u.output_tokens,
        "cache_creation_input_tokens": None if u is None else u.cache_creation_5m,
        "cache_creation_1h_input_tokens": None if u is None else u.cache_creation_1h,
        "cache_read_input_tokens": None if u is None else u.cache_read,
        "billed_input_tokens": billed,
        "utilization": None if billed is None else (billed + c.max_tokens) / c.context_window,
        "stop_reason": attempt.stop_reason,
        "service_tier": attempt.service_tier,
        "cost_usd": attempt.cost_usd,
        "price_version": attempt.price_version,
        "retry_after_s": attempt.retry_after_s,
        "latency_ms": attempt.latency_ms,
        "started_at": attempt.started_at,
        "finished_at": attempt.finished_at,
    }


def _placeholders(keys: Sequence[str]) -> dict[str, BindParameter[Any]]:
    """A bound parameter per column, typed as the column (named apart: a column's own name is taken)."""
    columns = LLMCall.__table__.c
    return {k: bindparam(f"v_{k}", type_=columns[k].type) for k in keys}


def _bound(values: dict[str, Any]) -> dict[str, Any]:
    return {f"v_{k}": v for k, v in values.items()}


# Built once per set of columns (the same set every time): every attempt opens and closes its row, and
# built per call, through the ORM session, each statement cost about 2.5 times the CPU.
@lru_cache(maxsize=8)
def _open_attempt(keys: tuple[str, ...]) -> ReturningInsert[Any]:
    return insert(LLMCall).values(_placeholders(keys)).returning(LLMCall.id)


@lru_cache(maxsize=8)
def _close_attempt(keys: tuple[str, ...]) -> ReturningUpdate[Any]:
    return (
        update(LLMCall)
        .where(
            LLMCall.id == bindparam("call_id"),
            LLMCall.status.in_([CallOutcome.PENDING.value, CallOutcome.UNKNOWN.value]),
        )
        .values(_placeholders(keys))
        .returning(LLMCall.id)
    )


def record_attempt(
    session: Session,
    c: Claim,
    attempt: Attempt,
    *,
    estimated_input: int,
    counted_input: int | None,
    host: str,
) -> int:
    """Write the finished row of an attempt known only once it is over (a Message Batch result); its id."""
    values = _claim_columns(c, estimated_input, counted_input, host) | _attempt_columns(c, attempt)
    return session.execute(insert(LLMCall).values(values).returning(LLMCall.id)).scalar_one()


def open_attempt(
    session: Session,
    c: Claim,
    number: int,
    *,
    reservation_id: int | None,
    worst_case_usd: Decimal,
    estimated_input: int,
    counted_input: int | None,
    host: str,
) -> int:
    """Write the ``pending`` row of attempt ``number``, about to be sent; its id."""
    now = dt.datetime.now(dt.UTC)
    values = _claim_columns(c, estimated_input, counted_input, host) | {
        "attempt": number,
        "status": CallOutcome.PENDING.value,
        "reservation_id": reservation_id,
        "unknown_usd": worst_case_usd,
        "started_at": now,
        "finished_at": now,
    }
    call_id: int = session.connection().execute(_open_attempt(tuple(values)), _bound(values)).scalar_one()
    return call_id


@dataclass(frozen=True)
class PendingRequest:
    """A Message Batch request about to be created: its claim, reservation and what the guard saw."""

    claim: Claim
    reservation_id: int | None
    worst_case_usd: Decimal
    estimated_input: int
    counted_input: int | None


def open_requests(session: Session, requests: Sequence[PendingRequest], host: str) -> list[int]:
    """Write the ``pending`` rows of a Message Batch's requests, about to be created (one statement, at
    the batch tier, the first attempt each); their ids, in order."""
    if not requests:
        return []
    now = dt.datetime.now(dt.UTC)
    values = [
        _claim_columns(r.claim, r.estimated_input, r.counted_input, host)
        | {
            "attempt": 1,
            "status": CallOutcome.PENDING.value,
            "reservation_id": r.reservation_id,
            "unknown_usd": r.worst_case_usd,
            "service_tier": "batch",
            "started_at": now,
            "finished_at": now,
        }
        for r in requests
    ]
    return list(session.scalars(insert(LLMCall).returning(LLMCall.id, sort_by_parameter_order=True), values))


def close_attempt(session: Session, call_id: int, c: Claim, attempt: Attempt, unknown_usd: Decimal) -> bool:
    """Write what the attempt did into its row (pending, or marked unknown by a reaper that thought its
    worker gone); ``unknown_usd``: its worst case when billing is still not known, else 0. False when
    the row was already closed."""
    values = _attempt_columns(c, attempt) | {"unknown_usd": unknown_usd}
    statement = _close_attempt(tuple(values))
    closed = session.connection().execute(statement, _bound(values) | {"call_id": call_id}).scalar()
    return closed is not None


def discard_unsent(session: Session, call_id: int) -> None:
    """Delete the pending row of an attempt a later gate stopped before it was sent."""
    session.execute(delete(LLMCall).where(LLMCall.id == call_id, LLMCall.status == CallOutcome.PENDING.value))


def mark_unknown(session: Session, batch_ids: Sequence[int]) -> int:
    """Mark the pending rows of batches whose worker is gone ``unknown`` (their worst case stays in
    ``unknown_usd``); how many."""
    return _pending_to_unknown(session, LLMCall.batch_id, batch_ids)


def close_refused(
    session: Session,
    call_ids: Sequence[int],
    outcome: CallOutcome,
    *,
    http_status: int | None,
    error_type: str | None,
    error_message: str,
    request_id: str | None,
) -> int:
    """Close the pending (or unknown) rows of requests whose Message Batch create the API refused: nothing
    was created, so nothing was billed (``unknown_usd`` 0); how many."""
    if not call_ids:
        return 0
    rows = session.scalars(
        update(LLMCall)
        .where(
            LLMCall.id.in_(call_ids),
            LLMCall.status.in_([CallOutcome.PENDING.value, CallOutcome.UNKNOWN.value]),
        )
        .values(
            status=outcome.value,
            http_status=http_status,
            error_type=error_type,
            error_message=error_message[:2000],
            request_id=request_id,
            unknown_usd=0,
            finished_at=func.now(),
        )
        .returning(LLMCall.id)
    ).all()
    return len(rows)


def mark_unknown_calls(session: Session, call_ids: Sequence[int]) -> int:
    """Mark these rows ``unknown`` where still pending (requests of a Message Batch whose create went
    unanswered, or that the API lost); how many."""
    return _pending_to_unknown(session, LLMCall.id, call_ids)


def mark_unknown_reserved(session: Session, reservation_ids: Sequence[int]) -> int:
    """Mark the pending rows of reservations given up as unknown (stale: nothing settled them); how many."""
    return _pending_to_unknown(session, LLMCall.reservation_id, reservation_ids)


def _pending_to_unknown(session: Session, column: InstrumentedAttribute[Any], ids: Sequence[int]) -> int:
    if not ids:
        return 0
    rows = session.scalars(
        update(LLMCall)
        .execution_options(synchronize_session=False)
        .where(column.in_(ids), LLMCall.status == CallOutcome.PENDING.value)
        .values(status=CallOutcome.UNKNOWN.value, finished_at=func.now())
        .returning(LLMCall.id)
    ).all()
    return len(rows)
