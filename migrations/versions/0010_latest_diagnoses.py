"""Diagnosis views: ``run_diagnoses`` (one row per issue of a run) and ``latest_diagnoses`` (one per issue).

``run_diagnoses`` is every ``run_issues`` row with its answer (if any) and the issue's share of the
run's cost (``issue_costs``, largest-remainder micro-dollars). ``latest_diagnoses`` keeps, per issue,
the latest run that answered it, else the latest run that covered it (its status and reason). Both are
what `budgetq results` reads, and what BI tools and dbt models join to their data
(docs/cost-reporting.md).

The issue attributes source, dataset, column, check, owner and tags come from the ``issues`` row (its
columns since 0009, this revision's parent).

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-03 16:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

RUN_DIAGNOSES = """
CREATE VIEW run_diagnoses AS
SELECT
    ri.issue_id,
    i.set_id,
    s.name AS set_name,
    i.external_id,
    i.source AS source,
    i.dataset AS dataset,
    i.column_name AS column_name,
    i.check_name AS check_name,
    i.owner AS owner,
    i.tags AS tags,
    ri.priority,
    ri.status,
    ri.reason,
    res.category,
    res.diagnosis,
    res.proposed_fix,
    res.confidence,
    ri.run_id,
    res.created_at AS answered_at,
    COALESCE(c.cost_usd, 0)::numeric(18, 6) AS cost_usd
FROM run_issues ri
JOIN issues i ON i.id = ri.issue_id
JOIN issue_sets s ON s.id = i.set_id
LEFT JOIN results res ON res.run_id = ri.run_id AND res.issue_id = ri.issue_id
LEFT JOIN (
    SELECT run_id, issue_id, sum(cost_usd) AS cost_usd FROM issue_costs GROUP BY run_id, issue_id
) c ON c.run_id = ri.run_id AND c.issue_id = ri.issue_id
"""


# The latest answer wins over any later status; without an answer, the latest status.
LATEST_DIAGNOSES = """
CREATE VIEW latest_diagnoses AS
SELECT DISTINCT ON (issue_id) *
FROM run_diagnoses
ORDER BY issue_id, (answered_at IS NOT NULL) DESC, run_id DESC
"""


def upgrade() -> None:
    op.execute(RUN_DIAGNOSES)
    op.execute(LATEST_DIAGNOSES)
    # The latest run of an issue is looked up by issue.
    op.create_index("run_issues_issue_run_idx", "run_issues", ["issue_id", "run_id"], unique=False)


def downgrade() -> None:
    op.drop_index("run_issues_issue_run_idx", table_name="run_issues")
    op.execute("DROP VIEW IF EXISTS latest_diagnoses")
    op.execute("DROP VIEW IF EXISTS run_diagnoses")
