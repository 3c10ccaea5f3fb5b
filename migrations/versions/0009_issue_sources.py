"""Issues loaded from data-quality tools carry where they came from; snapshots resolve fixed checks.

``issues`` gains the check's source tool, dataset, column, check name, owner and tags (queryable, and
grouped by in the new cost views), a ``state`` (``open``, or ``resolved`` when a snapshot load no
longer finds the check failing: kept for history, left out of runs) with ``resolved_at``, and
``due_after_run``: when a snapshot changes an issue's text, answers from runs up to this id no
longer count, so the issue is due again.

``cost_by_issue`` is dropped and made again with every column it had plus source, dataset, owner
and tags; ``cost_by_owner``, ``cost_by_tag``, ``cost_by_dataset`` and ``cost_by_source`` are new.
An issue with several tags counts in full under each of them (so the tag rows add up to more than
the total when issues share tags); issues with no owner, dataset or source group under NULL.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ISSUE_MEASURES = """
    sum(billed_input_tokens)::bigint AS billed_input_tokens,
    sum(output_tokens)::bigint AS output_tokens,
    sum(cost_usd) AS cost_usd,
    sum(billed_cost_usd) AS billed_cost_usd,
    sum(would_have_cost_usd) AS would_have_cost_usd"""

OLD_COST_BY_ISSUE = f"""
CREATE VIEW cost_by_issue AS
SELECT ic.run_id, ic.issue_id, i.external_id, ic.priority, ri.status,
    count(*) AS attempts,
    count(*) FILTER (WHERE ic.ok) AS ok_calls,
    count(*) FILTER (WHERE NOT ic.ok) AS failed_attempts,
    {ISSUE_MEASURES}
FROM issue_costs ic
JOIN issues i ON i.id = ic.issue_id
JOIN run_issues ri ON ri.run_id = ic.run_id AND ri.issue_id = ic.issue_id
GROUP BY ic.run_id, ic.issue_id, i.external_id, ic.priority, ri.status
"""

COST_BY_ISSUE = f"""
CREATE VIEW cost_by_issue AS
SELECT ic.run_id, ic.issue_id, i.external_id, ic.priority, ri.status,
    count(*) AS attempts,
    count(*) FILTER (WHERE ic.ok) AS ok_calls,
    count(*) FILTER (WHERE NOT ic.ok) AS failed_attempts,
    {ISSUE_MEASURES},
    i.source, i.dataset, i.owner, i.tags
FROM issue_costs ic
JOIN issues i ON i.id = ic.issue_id
JOIN run_issues ri ON ri.run_id = ic.run_id AND ri.issue_id = ic.issue_id
GROUP BY ic.run_id, ic.issue_id, i.external_id, ic.priority, ri.status, i.source, i.dataset, i.owner, i.tags
"""


def _by(name: str, column: str, source: str = "issues i") -> str:
    """A view of cost per day and ``column`` of the issues the calls were for."""
    return f"""
CREATE VIEW {name} AS
SELECT ic.day, {column},
    count(DISTINCT (ic.run_id, ic.issue_id)) AS issues,
    count(DISTINCT ic.llm_call_id) AS calls,
    count(DISTINCT ic.llm_call_id) FILTER (WHERE NOT ic.ok) AS failed_calls,
    sum(ic.billed_input_tokens)::bigint AS billed_input_tokens,
    sum(ic.output_tokens)::bigint AS output_tokens,
    sum(ic.cost_usd) AS cost_usd,
    sum(ic.billed_cost_usd) AS billed_cost_usd,
    sum(ic.would_have_cost_usd) AS would_have_cost_usd
FROM issue_costs ic
JOIN {source} ON i.id = ic.issue_id
GROUP BY ic.day, {column.split(" AS ")[-1]}
"""


NEW_VIEWS = (
    ("cost_by_owner", _by("cost_by_owner", "i.owner AS owner")),
    ("cost_by_dataset", _by("cost_by_dataset", "i.dataset AS dataset")),
    ("cost_by_source", _by("cost_by_source", "i.source AS source")),
    (
        "cost_by_tag",
        _by(
            "cost_by_tag",
            "t.tag AS tag",
            "issues i CROSS JOIN LATERAL unnest(COALESCE(NULLIF(i.tags, '{}'), ARRAY[NULL::text])) AS t(tag)",
        ),
    ),
)


def upgrade() -> None:
    op.add_column("issues", sa.Column("source", sa.Text(), nullable=True))
    op.add_column("issues", sa.Column("dataset", sa.Text(), nullable=True))
    op.add_column("issues", sa.Column("column_name", sa.Text(), nullable=True))
    op.add_column("issues", sa.Column("check_name", sa.Text(), nullable=True))
    op.add_column("issues", sa.Column("owner", sa.Text(), nullable=True))
    op.add_column(
        "issues",
        sa.Column("tags", postgresql.ARRAY(sa.Text()), nullable=False, server_default=sa.text("'{}'")),
    )
    op.add_column("issues", sa.Column("state", sa.String(16), nullable=False, server_default="open"))
    op.add_column("issues", sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("issues", sa.Column("due_after_run", sa.BigInteger(), nullable=True))
    op.create_check_constraint("issues_state_allowed", "issues", "state IN ('open', 'resolved')")
    op.execute("DROP VIEW cost_by_issue")
    op.execute(COST_BY_ISSUE)
    for _, sql in NEW_VIEWS:
        op.execute(sql)


def downgrade() -> None:
    for name, _ in reversed(NEW_VIEWS):
        op.execute(f"DROP VIEW {name}")
    op.execute("DROP VIEW cost_by_issue")
    op.execute(OLD_COST_BY_ISSUE)
    op.drop_constraint("issues_state_allowed", "issues", type_="check")
    for name in (
        "due_after_run",
        "resolved_at",
        "state",
        "tags",
        "owner",
        "check_name",
        "column_name",
        "dataset",
        "source",
    ):
        op.drop_column("issues", name)
