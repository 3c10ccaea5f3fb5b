"""The ``llm_calls`` rows: one per HTTP attempt, written before the attempt is sent and settled after.

A synchronous attempt's row is opened ``pending`` in the transaction that reserves its spend (it
carries the reservation's id and, as ``unknown_usd``, its worst case), and closed with what the
attempt did in the transaction that settles the reservation (``worker/ledger.py``). So a worker that
dies mid-call leaves a pending row beside a held reservation, and the reaper marks both unknown: a
call paid for but never answered to us is still in the cost views, as a worst case.

Rows are not fenced by the lease: the attempt happened whoever holds the batch now.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, insert, update
from sqlalchemy.orm import InstrumentedAttribute, Session

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
    return session.execute(insert(LLMCall).values(values).returning(LLMCall.id)).scalar_one()


def close_attempt(session: Session, call_id: int, c: Claim, attempt: Attempt, unknown_usd: Decimal) -> bool:
    """Write what the attempt did into its row (pending, or marked unknown by a reaper that thought its
    worker gone); ``unknown_usd``: its worst case when billing is still not known, else 0. False when
    the row was already closed."""
    closed = session.scalar(
        update(LLMCall)
        .execution_options(synchronize_session=False)
        .where(
            LLMCall.id == call_id,
            LLMCall.status.in_([CallOutcome.PENDING.value, CallOutcome.UNKNOWN.value]),
        )
        .values(_attempt_columns(c, attempt) | {"unknown_usd": unknown_usd})
        .returning(LLMCall.id)
    )
    return closed is not None


def discard_unsent(session: Session, call_id: int) -> None:
    """Delete the pending row of an attempt a later gate stopped before it was sent."""
    session.execute(delete(LLMCall).where(LLMCall.id == call_id, LLMCall.status == CallOutcome.PENDING.value))


def mark_unknown(session: Session, batch_ids: Sequence[int]) -> int:
    """Mark the pending rows of batches whose worker is gone ``unknown`` (their worst case stays in
    ``unknown_usd``); how many."""
    return _pending_to_unknown(session, LLMCall.batch_id, batch_ids)


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
