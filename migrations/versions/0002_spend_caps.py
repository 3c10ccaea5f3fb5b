"""Spend caps: the daily spend ledger and one row per spend reservation.

``runs`` already holds the per-run cap, spent and reserved amounts; this adds the per-day figures
(``daily_spend``, one row per UTC day) and ``spend_reservations``, so that each attempt's
reservation is settled exactly once and a reservation whose outcome is unknown stays visible.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

USD = sa.Numeric(precision=18, scale=6)


def upgrade() -> None:
    op.create_table(
        "daily_spend",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("cap_usd", USD, nullable=True),
        sa.Column("spent_usd", USD, server_default="0", nullable=False),
        sa.Column("reserved_usd", USD, server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("spent_usd >= 0 AND reserved_usd >= 0", name="daily_spend_not_negative"),
        sa.PrimaryKeyConstraint("day"),
    )
    op.create_table(
        "spend_reservations",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("amount_usd", USD, nullable=False),
        sa.Column("actual_usd", USD, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["day"], ["daily_spend.day"]),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("spend_reservations_run_idx", "spend_reservations", ["run_id"], unique=False)
    op.create_index("spend_reservations_status_idx", "spend_reservations", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index("spend_reservations_status_idx", table_name="spend_reservations")
    op.drop_index("spend_reservations_run_idx", table_name="spend_reservations")
    op.drop_table("spend_reservations")
    op.drop_table("daily_spend")
