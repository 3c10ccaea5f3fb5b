"""The outbox tables: each notification (written in the transaction of its event), and its delivery to
each configured target."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from budgetq.adapters.store.models import Base, created_now


class Notification(Base):
    """One event to tell people about; ``dedupe_key`` makes it happen once (one end per run, one alert
    per threshold and run or day, one missed night per set)."""

    __tablename__ = "notifications"
    __table_args__ = (Index("notifications_created_idx", "created_at"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(Text, unique=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    payload: Mapped[dict[str, object]] = mapped_column(JSONB)
    created_at: Mapped[dt.datetime] = created_now()


class NotificationDelivery(Base):
    """One notification's delivery to one target (named by a digest of its URL: URLs are secrets and
    never stored); claimed under a lease, so it is sent by one task at a time and marked sent once."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (Index("notification_deliveries_due_idx", "status", "next_attempt_at"),)
    notification_id: Mapped[int] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), primary_key=True
    )
    target: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[int | None] = mapped_column(Integer)  # the target's HTTP status, last try
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
