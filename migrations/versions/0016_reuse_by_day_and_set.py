"""``cost_by_day`` and ``cost_by_set`` gain ``reused_issues`` and ``saved_usd``, as ``cost_by_run`` did.

An answer reused from an earlier paid one (``results.reused_from_result_id``) is counted on the day it was
written, in its run's set; ``saved_usd`` is what the reused answers cost when first bought. A day (or a
set's day) on which every answer was reused and no call was made gets a row too: its call figures are
NULL, its reused figures are not. The views keep every existing column in place (CREATE OR REPLACE may
only add columns at the end), so the query is the existing one, read back from the database, full-joined
with the reuse figures on the view's keys.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 21:00:00.000000
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

REUSED = """
    SELECT (res.created_at AT TIME ZONE 'UTC')::date AS day, r.set_id, s.name AS set_name,
        count(*) AS reused_issues, sum(COALESCE(res.saved_usd, 0)) AS saved_usd
    FROM results res
    JOIN runs r ON r.id = res.run_id
    JOIN issue_sets s ON s.id = r.set_id
    WHERE res.reused_from_result_id IS NOT NULL
    GROUP BY 1, 2, 3
"""

KEYS = {"cost_by_day": ("day",), "cost_by_set": ("day", "set_id", "set_name")}


def _sibling(name: str) -> ModuleType:
    """An earlier revision's module, for the exact view text it created (file names start with digits)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _with_reuse(name: str, query: str, columns: list[str]) -> str:
    keys = KEYS[name]
    select = ", ".join(f"COALESCE(v.{c}, u.{c}) AS {c}" if c in keys else f"v.{c}" for c in columns)
    by = ", ".join(keys)
    on = " AND ".join(f"u.{k} = v.{k}" for k in keys)
    return f"""
CREATE OR REPLACE VIEW {name} AS
SELECT {select},
    COALESCE(u.reused_issues, 0)::bigint AS reused_issues,
    COALESCE(u.saved_usd, 0)::numeric(18, 6) AS saved_usd
FROM ({query.rstrip().rstrip(";")}) v
FULL JOIN (
    SELECT {by}, sum(reused_issues) AS reused_issues, sum(saved_usd) AS saved_usd
    FROM ({REUSED}) x GROUP BY {by}
) u ON {on}
"""


def upgrade() -> None:
    bind = op.get_bind()
    for name in KEYS:
        query = bind.execute(
            sa.text("SELECT pg_get_viewdef(CAST(:v AS regclass), true)"), {"v": name}
        ).scalar()
        columns = list(
            bind.execute(
                sa.text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = :v ORDER BY ordinal_position"
                ),
                {"v": name},
            ).scalars()
        )
        op.execute(_with_reuse(name, str(query), columns))


def downgrade() -> None:
    cost_views = _sibling("0003_cost_views")
    pending = _sibling("0015_pending_calls")
    op.execute("DROP VIEW cost_by_day")
    op.execute(pending._wrapped("cost_by_day", dict(cost_views.VIEWS)["cost_by_day"]))
    op.execute("DROP VIEW cost_by_set")
    op.execute(cost_views.COST_BY_SET)
