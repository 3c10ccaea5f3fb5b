"""Message Batches: the batch-api run mode's API mode columns, Message Batch rows and their requests.

``runs.api_mode`` and ``batches.api_mode`` say how a run's batches reach the model (``sync`` or
``batch-api``; a batch can fall back to ``sync``), ``issue_sets.api_mode`` is a set's default.
``message_batches`` holds each Message Batch we created, its API id stored before the submit task
acknowledges; ``message_batch_requests`` which batch travelled in it under which lease token.
``llm_calls.message_batch_id`` with a unique (message_batch_id, batch_id) makes ingestion idempotent.

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-29 14:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("issue_sets", sa.Column("api_mode", sa.String(length=16), nullable=True))
    op.add_column("runs", sa.Column("api_mode", sa.String(length=16), server_default="sync", nullable=False))
    op.add_column(
        "batches", sa.Column("api_mode", sa.String(length=16), server_default="sync", nullable=False)
    )
    op.add_column("llm_calls", sa.Column("message_batch_id", sa.Text(), nullable=True))
    op.create_index(
        "llm_calls_message_batch_request_key",
        "llm_calls",
        ["message_batch_id", "batch_id"],
        unique=True,
        postgresql_where=sa.text("message_batch_id IS NOT NULL"),
    )
    for table in ("issue_sets", "runs", "batches"):
        op.create_check_constraint(
            f"{table}_api_mode_allowed", table, "api_mode IS NULL OR api_mode IN ('sync', 'batch-api')"
        )
    op.create_table(
        "message_batches",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("api_id", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("request_count", sa.Integer(), nullable=False),
        sa.Column("body_bytes", sa.BigInteger(), nullable=False),
        sa.Column("lease_token", sa.UUID(), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("processing_status", sa.String(length=16), nullable=True),
        sa.Column("succeeded", sa.Integer(), server_default="0", nullable=False),
        sa.Column("errored", sa.Integer(), server_default="0", nullable=False),
        sa.Column("expired", sa.Integer(), server_default="0", nullable=False),
        sa.Column("canceled", sa.Integer(), server_default="0", nullable=False),
        sa.Column("ingested", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("polled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("api_id"),
    )
    op.create_index("message_batches_status_idx", "message_batches", ["status"], unique=False)
    op.create_table(
        "message_batch_requests",
        sa.Column("message_batch_id", sa.BigInteger(), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("lease_token", sa.UUID(), nullable=False),
        sa.Column("estimated_input_tokens", sa.Integer(), nullable=False),
        sa.Column("counted_input_tokens", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["message_batch_id"], ["message_batches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("message_batch_id", "batch_id"),
    )
    op.create_index("message_batch_requests_batch_idx", "message_batch_requests", ["batch_id"], unique=False)


def downgrade() -> None:
    op.drop_index("message_batch_requests_batch_idx", table_name="message_batch_requests")
    op.drop_table("message_batch_requests")
    op.drop_index("message_batches_status_idx", table_name="message_batches")
    op.drop_table("message_batches")
    for table in ("issue_sets", "runs", "batches"):
        op.drop_constraint(f"{table}_api_mode_allowed", table, type_="check")
    op.drop_index("llm_calls_message_batch_request_key", table_name="llm_calls")
    op.drop_column("llm_calls", "message_batch_id")
    op.drop_column("batches", "api_mode")
    op.drop_column("runs", "api_mode")
    op.drop_column("issue_sets", "api_mode")
