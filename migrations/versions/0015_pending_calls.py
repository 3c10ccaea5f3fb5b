"""Every attempt's ``llm_calls`` row is written before it is sent, and carries its spend reservation.

``llm_calls.reservation_id`` ties the row to the attempt's spend reservation: both are written in one
transaction before the request goes out (status ``pending``) and both are settled in one transaction
after it (``worker/gates.py``). ``llm_calls.unknown_usd`` is the worst case (the reservation) of an
attempt whose billing is not known: in flight (``pending``), given up by the reaper (``unknown``, its
worker died), or a reply that broke off; it is 0 once the attempt is known billed or not. The cost
views gain ``unknown_usd`` beside ``billed_cost_usd``, so what was paid but never answered to us is
visible as a worst case instead of missing.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 19:20:00.000000
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _sibling(name: str) -> ModuleType:
    """An earlier revision's module, for the exact view text it created (file names start with digits)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _current_views() -> dict[str, str]:
    """The views as the revisions before this one left them: 0003's, with 0013's cost_by_run (reuse)."""
    cost_views = _sibling("0003_cost_views")
    views = dict(cost_views.VIEWS)
    views["cost_by_run"] = _sibling("0013_answer_reuse")._cost_by_run(cost_views.COST_BY_RUN)
    return views


# The views that gain unknown_usd, with the columns they are keyed by. Each is 0003's query wrapped, the
# new column last (CREATE OR REPLACE may only add columns at the end).
KEYED = {"cost_by_day": ("day",), "cost_by_model": ("day", "model"), "cost_by_run": ("run_id",)}

UNKNOWN_BY = """
    SELECT (started_at AT TIME ZONE 'UTC')::date AS day, run_id, model,
        count(*) FILTER (WHERE status = 'pending') AS pending_attempts,
        count(*) FILTER (WHERE status = 'unknown') AS unknown_attempts,
        sum(unknown_usd) AS unknown_usd
    FROM llm_calls GROUP BY 1, 2, 3
"""

UNKNOWN_SPEND = f"""
CREATE VIEW unknown_spend AS
SELECT day, run_id, model, pending_attempts, unknown_attempts, unknown_usd::numeric(18, 6) AS unknown_usd
FROM ({UNKNOWN_BY}) u
WHERE unknown_usd > 0 OR pending_attempts > 0 OR unknown_attempts > 0
"""


def _wrapped(name: str, sql: str) -> str:
    keys = KEYED[name]
    query = sql.split(" AS\n", 1)[1]
    on = " AND ".join(f"u.{k} = v.{k}" for k in keys)
    by = ", ".join(keys)
    return f"""
CREATE OR REPLACE VIEW {name} AS
SELECT v.*, COALESCE(u.unknown_usd, 0)::numeric(18, 6) AS unknown_usd
FROM ({query}) v
LEFT JOIN (SELECT {by}, sum(unknown_usd) AS unknown_usd FROM ({UNKNOWN_BY}) x GROUP BY {by}) u ON {on}
"""


def upgrade() -> None:
    op.add_column(
        "llm_calls",
        sa.Column(
            "reservation_id",
            sa.BigInteger(),
            sa.ForeignKey("spend_reservations.id", ondelete="SET NULL"),
            nullable=True,
        ),
    )
    op.add_column(
        "llm_calls",
        sa.Column("unknown_usd", sa.Numeric(18, 6), nullable=False, server_default="0"),
    )
    # The reaper looks up the pending rows of the batches whose lease it takes back.
    op.create_index(
        "llm_calls_pending_idx",
        "llm_calls",
        ["batch_id"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    views = _current_views()
    for name in KEYED:
        op.execute(_wrapped(name, views[name]))
    op.execute(UNKNOWN_SPEND)


def downgrade() -> None:
    views = _current_views()
    op.execute("DROP VIEW unknown_spend")
    for name in KEYED:
        op.execute(f"DROP VIEW {name}")
        op.execute(views[name])
    op.drop_index("llm_calls_pending_idx", table_name="llm_calls")
    op.drop_column("llm_calls", "unknown_usd")
    op.drop_column("llm_calls", "reservation_id")
