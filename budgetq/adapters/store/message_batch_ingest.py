"""The lease under which one poller ingests an ended Message Batch: take, renew, hand back, close."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, update
from sqlalchemy.orm import Session

from budgetq.adapters.store.message_batch_models import MessageBatch
from budgetq.adapters.store.message_batches import Tracked, fenced
from budgetq.domain.statuses import MessageBatchStatus


def claim_ingest(session: Session, tracked: Tracked, lease_seconds: float) -> Tracked | None:
    """Take the lease to ingest an ended Message Batch; None when another poller has it."""
    token = uuid.uuid4()
    claimable = (MessageBatch.status == MessageBatchStatus.IN_PROGRESS.value) | (
        (MessageBatch.status == MessageBatchStatus.INGESTING.value) & (MessageBatch.lease_until < func.now())
    )
    row = session.execute(
        update(MessageBatch)
        .where(MessageBatch.id == tracked.id, claimable)
        .values(
            status=MessageBatchStatus.INGESTING.value,
            lease_token=token,
            lease_until=func.now() + dt.timedelta(seconds=lease_seconds),
        )
        .returning(MessageBatch.id)
    ).one_or_none()
    if row is None:
        return None
    return Tracked(
        tracked.id, tracked.run_id, tracked.api_id, MessageBatchStatus.INGESTING.value, token, tracked.model,
        tracked.mode,
    )  # fmt: skip


def renew_ingest(session: Session, tracked: Tracked, lease_seconds: float) -> bool:
    """Extend an ingestion lease; False when it was lost."""
    row = session.execute(
        update(MessageBatch)
        .where(MessageBatch.id == tracked.id, MessageBatch.lease_token == tracked.token)
        .values(lease_until=func.now() + dt.timedelta(seconds=lease_seconds))
        .returning(MessageBatch.id)
    ).one_or_none()
    return row is not None


def release_ingest(session: Session, tracked: Tracked) -> None:
    """Hand an interrupted ingestion back at once (results already settled stay settled)."""
    fenced(
        session,
        tracked,
        MessageBatchStatus.INGESTING,
        status=MessageBatchStatus.IN_PROGRESS.value,
        lease_until=None,
    )


def finish_ingest(session: Session, tracked: Tracked, ingested: int) -> bool:
    """Close an ingestion: the Message Batch is done with; False when the lease was lost."""
    return fenced(
        session,
        tracked,
        MessageBatchStatus.INGESTING,
        status=MessageBatchStatus.INGESTED.value,
        ingested=ingested,
        ingested_at=func.now(),
        lease_until=None,
    )
