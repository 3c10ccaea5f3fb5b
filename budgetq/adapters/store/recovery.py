"""Did a write whose COMMIT went unanswered take effect?

When the connection to PostgreSQL breaks while COMMIT is in flight, the client cannot tell whether
the transaction committed. A worker retrying the record of a call (``worker.durable``) asks here
first: the batch is still running under the worker's lease only if the earlier try did not commit
(every write that settles a batch ends its lease).
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from budgetq.adapters.store.models import Batch
from budgetq.domain.statuses import BatchStatus


def still_held(session: Session, batch_id: int, token: uuid.UUID) -> bool:
    """Whether the batch is still running under lease ``token``: the write that would have closed it
    (results, a split, a release) did not commit."""
    held = session.scalar(
        select(Batch.id).where(
            Batch.id == batch_id, Batch.lease_token == token, Batch.status == BatchStatus.RUNNING.value
        )
    )
    return held is not None


def batch_outcome(session: Session, batch_id: int) -> tuple[str, tuple[int, ...]]:
    """The batch's status and the still-queued batches it was split or followed up into."""
    status = session.scalars(select(Batch.status).where(Batch.id == batch_id)).one()
    children = session.scalars(
        select(Batch.id)
        .where(Batch.parent_id == batch_id, Batch.status == BatchStatus.QUEUED.value)
        .order_by(Batch.id)
    ).all()
    return status, tuple(children)
