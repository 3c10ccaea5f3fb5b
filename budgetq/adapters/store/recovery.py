"""Did a write whose COMMIT went unanswered take effect?

When the connection to PostgreSQL breaks while COMMIT is in flight, the client cannot tell whether
the transaction committed. A worker retrying the record of a call (``worker.durable``) asks here
first: the call's ``llm_calls`` row exists only if the earlier try committed, and with it everything
written in the same transaction.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from budgetq.adapters.llm.client import Attempt
from budgetq.adapters.store.models import Batch, LLMCall
from budgetq.domain.statuses import BatchStatus


def recorded_call_id(session: Session, batch_id: int, attempt: Attempt) -> int | None:
    """The ``llm_calls`` row already written for this attempt of the batch, if any (an attempt is
    known by its number and the instant it started)."""
    return session.scalar(
        select(LLMCall.id)
        .where(
            LLMCall.batch_id == batch_id,
            LLMCall.attempt == attempt.number,
            LLMCall.started_at == attempt.started_at,
        )
        .limit(1)
    )


def batch_outcome(session: Session, batch_id: int) -> tuple[str, tuple[int, ...]]:
    """The batch's status and the still-queued batches it was split or followed up into."""
    status = session.scalars(select(Batch.status).where(Batch.id == batch_id)).one()
    children = session.scalars(
        select(Batch.id)
        .where(Batch.parent_id == batch_id, Batch.status == BatchStatus.QUEUED.value)
        .order_by(Batch.id)
    ).all()
    return status, tuple(children)
