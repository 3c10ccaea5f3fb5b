"""The tables of the Message Batches mode: each Message Batch we created, and its requests."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from budgetq.adapters.store.models import Base, created_now


class MessageBatch(Base):
    """One Message Batch we created (or tried to): its API id, state and request tallies."""

    __tablename__ = "message_batches"
    __table_args__ = (Index("message_batches_status_idx", "status"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    api_id: Mapped[str | None] = mapped_column(Text, unique=True)
    status: Mapped[str] = mapped_column(String(16))
    request_count: Mapped[int] = mapped_column(Integer)
    body_bytes: Mapped[int] = mapped_column(BigInteger)
    lease_token: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    processing_status: Mapped[str | None] = mapped_column(String(16))
    succeeded: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    errored: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    expired: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    canceled: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ingested: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = created_now()
    submitted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    polled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    ingested_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class MessageBatchRequest(Base):
    """A batch sent as one request of a Message Batch, with the lease token it was sent under."""

    __tablename__ = "message_batch_requests"
    __table_args__ = (Index("message_batch_requests_batch_idx", "batch_id"),)
    message_batch_id: Mapped[int] = mapped_column(
        ForeignKey("message_batches.id", ondelete="CASCADE"), primary_key=True
    )
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    lease_token: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    estimated_input_tokens: Mapped[int] = mapped_column(Integer)
    counted_input_tokens: Mapped[int | None] = mapped_column(Integer)
    # What the request reserved against the caps when it was submitted (migration 0008).
    spend_reservation_id: Mapped[int | None] = mapped_column(
        ForeignKey("spend_reservations.id", ondelete="SET NULL")
    )
    # Its llm_calls row, written pending before the create (migration 0017; None on older rows).
    llm_call_id: Mapped[int | None] = mapped_column(
        ForeignKey("llm_calls.id", ondelete="SET NULL", name="message_batch_requests_llm_call_id_fkey")
    )
