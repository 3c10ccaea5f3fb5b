"""Flat per-batch bookkeeping: the day an attempt settles, open-reservation and calibration indexes,
and a small per-model calibration row.

``spend_reservations.settled_day`` is the UTC day a reservation closed, the day its cost counts on
(issue 17 point 3); ``spend_by_day`` reads each day's settled spend from the ledger, so days without a
cap keep no counters on their ``daily_spend`` row. ``model_calibrations`` holds the recent billed
ratios per model, recomputed when stale, so a worker reads one row per batch instead of joining
``llm_calls`` to ``runs``. The partial indexes keep a run's open batches, the open reservations, a
day's settlements and a model's billed live calls each one short index range away.

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-04 19:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

SPEND_BY_DAY = """
CREATE VIEW spend_by_day AS
SELECT settled_day AS day,
       sum(actual_usd) FILTER (WHERE status = 'settled') AS spent_usd,
       count(*) FILTER (WHERE status = 'settled') AS settled,
       count(*) FILTER (WHERE status = 'released') AS released
FROM spend_reservations
WHERE settled_day IS NOT NULL
GROUP BY settled_day
"""


def upgrade() -> None:
    op.add_column("spend_reservations", sa.Column("settled_day", sa.Date(), nullable=True))
    op.execute(
        "UPDATE spend_reservations SET settled_day = (settled_at AT TIME ZONE 'UTC')::date "
        "WHERE settled_at IS NOT NULL"
    )
    op.create_index(
        "spend_reservations_settled_day_idx",
        "spend_reservations",
        ["settled_day"],
        postgresql_where=sa.text("status = 'settled'"),
    )
    op.create_index(
        "spend_reservations_open_day_idx",
        "spend_reservations",
        ["day"],
        postgresql_where=sa.text("status IN ('held', 'unknown')"),
    )
    # Only the open batches: the completion check's EXISTS finds one in a range this small at any
    # point of a run (with (run_id, status) the planner would rather scan the table for it).
    op.create_index(
        "batches_open_idx",
        "batches",
        ["run_id"],
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_index(
        "llm_calls_billed_model_idx",
        "llm_calls",
        ["model", "id"],
        postgresql_where=sa.text(
            "status = 'ok' AND would_have_cost = false AND billed_input_tokens IS NOT NULL"
        ),
    )
    op.create_table(
        "model_calibrations",
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("ratios", postgresql.ARRAY(sa.Float()), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("model"),
    )
    op.execute(SPEND_BY_DAY)


def downgrade() -> None:
    op.execute("DROP VIEW spend_by_day")
    op.drop_table("model_calibrations")
    op.drop_index("llm_calls_billed_model_idx", table_name="llm_calls")
    op.drop_index("batches_open_idx", table_name="batches")
    op.drop_index("spend_reservations_open_day_idx", table_name="spend_reservations")
    op.drop_index("spend_reservations_settled_day_idx", table_name="spend_reservations")
    op.drop_column("spend_reservations", "settled_day")
