"""The tables, as SQLAlchemy 2 typed declarative models. ORM rows never leave budgetq.adapters.store."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

USD = Numeric(18, 6)


class Base(DeclarativeBase):
    """Declarative base of every budgetq table."""


def created_now() -> Mapped[dt.datetime]:
    """A timestamp column filled by the database when the row is inserted."""
    return mapped_column(DateTime(timezone=True), server_default=func.now())


class IssueSet(Base):
    """A named set of data-quality issues, loaded together."""

    __tablename__ = "issue_sets"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    nightly: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    model: Mapped[str | None] = mapped_column(Text)
    api_mode: Mapped[str | None] = mapped_column(String(16))  # sync or batch-api; None: the default
    # False: every issue of the set is paid for on its own (no answer reuse, no duplicate fan-out).
    reuse_answers: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    created_at: Mapped[dt.datetime] = created_now()


class Issue(Base):
    """One data-quality issue; its token count is computed once and cached here."""

    __tablename__ = "issues"
    __table_args__ = (
        CheckConstraint("priority IN (15, 10, 5, 1)", name="issues_priority_allowed"),
        CheckConstraint("state IN ('open', 'resolved')", name="issues_state_allowed"),
        UniqueConstraint("set_id", "external_id", name="issues_set_external_id_key"),
        Index("issues_set_priority_idx", "set_id", "priority"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # In the database this key is enforced per statement by triggers, not per row (migration 0004:
    # bulk loads); declared here so SQLAlchemy still orders inserts of sets before their issues.
    set_id: Mapped[int] = mapped_column(ForeignKey("issue_sets.id", ondelete="CASCADE"))
    external_id: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(SmallInteger)
    text: Mapped[str] = mapped_column(Text)
    chars: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = created_now()
    # Where a tool-loaded issue came from (migration 0009); NULL for CSV/JSONL rows.
    source: Mapped[str | None] = mapped_column(Text)
    dataset: Mapped[str | None] = mapped_column(Text)
    column_name: Mapped[str | None] = mapped_column(Text)
    check_name: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    # open, or resolved: a snapshot load no longer found the check failing (kept, left out of runs).
    state: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Answers from runs up to this id predate the issue's current text: it is due again.
    due_after_run: Mapped[int | None] = mapped_column(BigInteger)


class IssueTokens(Base):
    """An issue's token count, valid for the encoding and calibration version it was made with."""

    __tablename__ = "issue_tokens"
    # No foreign key in the database (migration 0007): triggers drop the count when its issue is deleted
    # or its text changes.
    issue_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    raw_tokens: Mapped[int] = mapped_column(Integer)
    token_encoding: Mapped[str] = mapped_column(String(64))
    calibration_version: Mapped[str] = mapped_column(String(32))


class Run(Base):
    """One pass of the pipeline over (part of) an issue set."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("set_id", "nightly_date", name="runs_one_per_night"),
        UniqueConstraint("request_key", name="runs_one_per_request"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("issue_sets.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    api_mode: Mapped[str] = mapped_column(String(16), default="sync", server_default="sync")
    model: Mapped[str] = mapped_column(Text)
    nightly_date: Mapped[dt.date | None] = mapped_column(Date)
    # The request that started the run (a REPROCESS message id): a redelivery finds this run.
    request_key: Mapped[str | None] = mapped_column(Text)
    selector: Mapped[dict[str, object] | None] = mapped_column(JSONB)
    max_tokens: Mapped[int] = mapped_column(Integer)
    safe_utilization: Mapped[float] = mapped_column(Float)
    context_window: Mapped[int] = mapped_column(Integer)
    calibration: Mapped[float] = mapped_column(Float)
    spend_cap_usd: Mapped[Decimal | None] = mapped_column(USD)
    spent_usd: Mapped[Decimal] = mapped_column(USD, default=Decimal(0), server_default="0")
    reserved_usd: Mapped[Decimal] = mapped_column(USD, default=Decimal(0), server_default="0")
    stop_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = created_now()
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Batch(Base):
    """A packed group of issues sent in one call; claimed by a worker under a lease."""

    __tablename__ = "batches"
    __table_args__ = (
        Index("batches_run_status_idx", "run_id", "status"),
        Index("batches_open_idx", "run_id", postgresql_where=text("status IN ('queued', 'running')")),
        # The target of the per-call rows' (batch_id, run_id) keys (migration 0018).
        UniqueConstraint("id", "run_id", name="batches_id_run_key"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"))
    seq: Mapped[int] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(16))
    # sync: a worker claims it and calls; batch-api: it travels as one request of a Message Batch.
    api_mode: Mapped[str] = mapped_column(String(16), default="sync", server_default="sync")
    issue_count: Mapped[int] = mapped_column(Integer)
    input_tokens_est: Mapped[int] = mapped_column(Integer)
    output_tokens_est: Mapped[int] = mapped_column(Integer)
    max_tokens: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = created_now()
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class BatchIssue(Base):
    """Membership of an issue in a batch."""

    __tablename__ = "batch_issues"
    __table_args__ = (Index("batch_issues_issue_idx", "issue_id"),)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True)


class RunIssue(Base):
    """What became of one issue in one run: answered, failed, oversize or deferred, with a reason."""

    __tablename__ = "run_issues"
    __table_args__ = (
        Index("run_issues_run_status_idx", "run_id", "status"),
        CheckConstraint(
            "status IN ('pending', 'answered', 'failed', 'oversize', 'deferred', 'cancelled', 'reused')",
            name="run_issues_status_allowed",
        ),
        Index(
            "run_issues_same_as_idx",
            "run_id",
            "same_as_issue_id",
            postgresql_where=text("same_as_issue_id IS NOT NULL"),
        ),
    )
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True)
    priority: Mapped[int] = mapped_column(SmallInteger)
    input_tokens_est: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    # The issue's reuse key (budgetq.domain.reuse) when the run was planned; copied to its result.
    reuse_key: Mapped[str | None] = mapped_column(Text)
    # A duplicate inside the run: never sent, it takes that issue's answer (or fate).
    same_as_issue_id: Mapped[int | None] = mapped_column(BigInteger)


class Result(Base):
    """The validated answer for one issue in one run; at most one per (run, issue)."""

    __tablename__ = "results"
    __table_args__ = (
        UniqueConstraint("run_id", "issue_id", name="results_run_issue_key"),
        # A result is for an issue of its run; not a key on runs, whose one row every batch's insert
        # would lock (migration 0018).
        ForeignKeyConstraint(
            ["run_id", "issue_id"],
            ["run_issues.run_id", "run_issues.issue_id"],
            ondelete="CASCADE",
            name="results_run_issue_fkey",
        ),
        Index("results_llm_call_idx", "llm_call_id"),
        Index(
            "results_reuse_key_idx",
            "reuse_key",
            text("created_at DESC"),
            postgresql_where=text("reuse_key IS NOT NULL AND llm_call_id IS NOT NULL"),
        ),
        Index("results_reused_from_idx", "reused_from_result_id"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[int] = mapped_column(BigInteger)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    # Both NULL for a reused answer: no batch carried it and no call paid for it.
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    llm_call_id: Mapped[int | None] = mapped_column(ForeignKey("llm_calls.id"))
    category: Mapped[str] = mapped_column(String(32))
    diagnosis: Mapped[str] = mapped_column(Text)
    proposed_fix: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = created_now()
    reuse_key: Mapped[str | None] = mapped_column(Text)
    # A reused answer: the paid result it copies, and what that one cost when it was bought.
    reused_from_result_id: Mapped[int | None] = mapped_column(
        ForeignKey("results.id", ondelete="SET NULL", name="results_reused_from_fkey")
    )
    saved_usd: Mapped[Decimal | None] = mapped_column(USD)


class LLMCall(Base):
    """Provenance of one HTTP attempt at the Messages API, failed or not."""

    __tablename__ = "llm_calls"
    __table_args__ = (
        # The call's run is its batch's run; not a key on runs, whose one row every call would lock
        # (migration 0018).
        ForeignKeyConstraint(
            ["batch_id", "run_id"],
            ["batches.id", "batches.run_id"],
            ondelete="CASCADE",
            name="llm_calls_batch_run_fkey",
        ),
        Index("llm_calls_run_idx", "run_id"),
        Index("llm_calls_batch_idx", "batch_id"),
        Index("llm_calls_started_idx", "started_at"),
        Index(
            "llm_calls_message_batch_request_key",
            "message_batch_id",
            "batch_id",
            unique=True,
            postgresql_where=text("message_batch_id IS NOT NULL"),
        ),
        Index(
            "llm_calls_billed_model_idx",
            "model",
            "id",
            postgresql_where=text(
                "status = 'ok' AND would_have_cost = false AND billed_input_tokens IS NOT NULL"
            ),
        ),
        Index("llm_calls_pending_idx", "batch_id", postgresql_where=text("status = 'pending'")),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[int] = mapped_column(BigInteger)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(24))
    error_type: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    http_status: Mapped[int | None] = mapped_column(SmallInteger)
    estimated_input_tokens: Mapped[int] = mapped_column(Integer)
    counted_input_tokens: Mapped[int | None] = mapped_column(Integer)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    cache_creation_input_tokens: Mapped[int | None] = mapped_column(Integer)
    cache_creation_1h_input_tokens: Mapped[int | None] = mapped_column(Integer)
    cache_read_input_tokens: Mapped[int | None] = mapped_column(Integer)
    billed_input_tokens: Mapped[int | None] = mapped_column(Integer)
    max_tokens: Mapped[int] = mapped_column(Integer)
    context_window: Mapped[int] = mapped_column(Integer)
    utilization: Mapped[float | None] = mapped_column(Float)
    stop_reason: Mapped[str | None] = mapped_column(String(40))
    service_tier: Mapped[str | None] = mapped_column(String(24))
    cost_usd: Mapped[Decimal] = mapped_column(USD, default=Decimal(0), server_default="0")
    would_have_cost: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    price_version: Mapped[str | None] = mapped_column(String(32))
    retry_after_s: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    worker_host: Mapped[str | None] = mapped_column(Text)
    # The Message Batch the call travelled in; (message_batch_id, batch_id) is unique, so a result
    # ingested twice is recorded once.
    message_batch_id: Mapped[str | None] = mapped_column(Text)
    # The attempt's spend reservation, written and settled in the same transactions as this row.
    reservation_id: Mapped[int | None] = mapped_column(
        ForeignKey("spend_reservations.id", ondelete="SET NULL")
    )
    # The worst case (the reservation) while nobody knows whether the attempt was billed: in flight
    # (pending), given up (unknown), or a reply that broke off; 0 once billed or not is known.
    unknown_usd: Mapped[Decimal] = mapped_column(USD, default=Decimal(0), server_default="0")


class DailySpend(Base):
    """What all runs spent and hold reserved on one UTC day, against the daily cap."""

    __tablename__ = "daily_spend"
    __table_args__ = (
        CheckConstraint("spent_usd >= 0 AND reserved_usd >= 0", name="daily_spend_not_negative"),
    )
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    cap_usd: Mapped[Decimal | None] = mapped_column(USD)
    spent_usd: Mapped[Decimal] = mapped_column(USD, default=Decimal(0), server_default="0")
    reserved_usd: Mapped[Decimal] = mapped_column(USD, default=Decimal(0), server_default="0")
    updated_at: Mapped[dt.datetime] = created_now()


class SpendReservation(Base):
    """One attempt's worst-case cost, held against its run's and its day's caps until it settles."""

    __tablename__ = "spend_reservations"
    __table_args__ = (
        # The call's run is its batch's run; not a key on runs, whose one row every call would lock
        # (migration 0018).
        ForeignKeyConstraint(
            ["batch_id", "run_id"],
            ["batches.id", "batches.run_id"],
            ondelete="CASCADE",
            name="spend_reservations_batch_run_fkey",
        ),
        Index("spend_reservations_run_idx", "run_id"),
        Index("spend_reservations_status_idx", "status"),
        Index(
            "spend_reservations_settled_day_idx",
            "settled_day",
            postgresql_where=text("status = 'settled'"),
        ),
        Index(
            "spend_reservations_open_day_idx",
            "day",
            postgresql_where=text("status IN ('held', 'unknown')"),
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[int] = mapped_column(BigInteger)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    day: Mapped[dt.date] = mapped_column(ForeignKey("daily_spend.day"))
    amount_usd: Mapped[Decimal] = mapped_column(USD)
    actual_usd: Mapped[Decimal | None] = mapped_column(USD)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = created_now()
    settled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The UTC day it closed: a settled reservation's cost counts on this day.
    settled_day: Mapped[dt.date | None] = mapped_column(Date)


class ModelCalibration(Base):
    """A model's recent billed ratios (billed input ÷ cl100k count), recomputed when stale."""

    __tablename__ = "model_calibrations"
    model: Mapped[str] = mapped_column(Text, primary_key=True)
    ratios: Mapped[list[float]] = mapped_column(ARRAY(Float))
    computed_at: Mapped[dt.datetime] = created_now()
