"""Answer reuse: answers bought once serve the same question again, in later runs and inside one run.

- ``results.reuse_key`` (the issue's key, ``budgetq.domain.reuse``) and an index on it among paid
  answers, so planning finds earlier answers by indexed equality, one set-based query per chunk of keys;
- ``results.reused_from_result_id`` (the answer a reused row copies) and ``results.saved_usd`` (what that
  answer cost when first bought: its call's cost over the answers that call recorded); a reused row has
  no batch and no call, so ``batch_id`` and ``llm_call_id`` become nullable;
- ``run_issues.reuse_key`` and ``run_issues.same_as_issue_id`` (a duplicate inside the run, answered
  when that issue is), and a check constraint on ``run_issues.status`` including ``reused``;
- ``issue_sets.reuse_answers``: a set that wants every issue paid for on its own says false;
- ``cost_by_run`` gains ``reused_issues`` and ``saved_usd``; ``run_diagnoses`` and ``latest_diagnoses``
  gain ``reused_from_run_id`` and ``reused_from_answered_at``.

Revision ID: 0013_answer_reuse
Revises: 0011
Create Date: 2026-12-04 19:20:00.000000
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ISSUE_STATUSES = ("pending", "answered", "failed", "oversize", "deferred", "cancelled", "reused")


def _sibling(name: str) -> ModuleType:
    """An earlier revision's module, for the exact view text it created (file names start with digits)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Appended to cost_by_run (CREATE OR REPLACE keeps every existing column and may add new ones last).
REUSE_COLUMNS = """,
    (SELECT count(*) FROM run_issues x WHERE x.run_id = r.id AND x.status = 'reused') AS reused_issues,
    COALESCE((SELECT sum(x.saved_usd) FROM results x WHERE x.run_id = r.id
        AND x.reused_from_result_id IS NOT NULL), 0)::numeric(18, 6) AS saved_usd
FROM runs r
"""

DIAGNOSIS_COLUMNS = """,
    src.run_id AS reused_from_run_id,
    src.created_at AS reused_from_answered_at
FROM run_issues ri
"""


def _cost_by_run(old: str) -> str:
    assert "\nFROM runs r\n" in old
    return old.replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1).replace(
        "\nFROM runs r\n", REUSE_COLUMNS, 1
    )


def _run_diagnoses(old: str) -> str:
    joined = "LEFT JOIN results res ON res.run_id = ri.run_id AND res.issue_id = ri.issue_id\n"
    assert "\nFROM run_issues ri\n" in old and joined in old
    new = old.replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1).replace(
        "\nFROM run_issues ri\n", DIAGNOSIS_COLUMNS, 1
    )
    return new.replace(joined, joined + "LEFT JOIN results src ON src.id = res.reused_from_result_id\n", 1)


def upgrade() -> None:
    op.add_column("results", sa.Column("reuse_key", sa.Text(), nullable=True))
    op.add_column(
        "results",
        sa.Column(
            "reused_from_result_id",
            sa.BigInteger(),
            sa.ForeignKey("results.id", ondelete="SET NULL", name="results_reused_from_fkey"),
            nullable=True,
        ),
    )
    op.add_column("results", sa.Column("saved_usd", sa.Numeric(18, 6), nullable=True))
    op.alter_column("results", "batch_id", nullable=True)
    op.alter_column("results", "llm_call_id", nullable=True)
    # Only paid answers are ever reused (a reused row's age is its source's), newest first per key.
    op.create_index(
        "results_reuse_key_idx",
        "results",
        ["reuse_key", sa.text("created_at DESC")],
        postgresql_where=sa.text("reuse_key IS NOT NULL AND llm_call_id IS NOT NULL"),
    )
    op.create_index("results_reused_from_idx", "results", ["reused_from_result_id"])
    op.add_column("run_issues", sa.Column("reuse_key", sa.Text(), nullable=True))
    op.add_column("run_issues", sa.Column("same_as_issue_id", sa.BigInteger(), nullable=True))
    op.create_index(
        "run_issues_same_as_idx",
        "run_issues",
        ["run_id", "same_as_issue_id"],
        postgresql_where=sa.text("same_as_issue_id IS NOT NULL"),
    )
    statuses = ", ".join(f"'{s}'" for s in ISSUE_STATUSES)
    op.create_check_constraint("run_issues_status_allowed", "run_issues", f"status IN ({statuses})")
    op.add_column(
        "issue_sets",
        sa.Column("reuse_answers", sa.Boolean(), nullable=False, server_default=sa.text("true")),
    )
    op.execute(_cost_by_run(_sibling("0003_cost_views").COST_BY_RUN))
    diagnoses = _sibling("0010_latest_diagnoses")
    op.execute(_run_diagnoses(diagnoses.RUN_DIAGNOSES))
    op.execute(diagnoses.LATEST_DIAGNOSES.replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1))


def downgrade() -> None:
    # Views cannot lose columns in place: drop and make them as the earlier revisions did.
    op.execute("DROP VIEW IF EXISTS latest_diagnoses")
    op.execute("DROP VIEW IF EXISTS run_diagnoses")
    op.execute("DROP VIEW IF EXISTS cost_by_run")
    op.execute(_sibling("0003_cost_views").COST_BY_RUN)
    diagnoses = _sibling("0010_latest_diagnoses")
    op.execute(diagnoses.RUN_DIAGNOSES)
    op.execute(diagnoses.LATEST_DIAGNOSES)
    op.drop_column("issue_sets", "reuse_answers")
    op.drop_constraint("run_issues_status_allowed", "run_issues", type_="check")
    op.drop_index("run_issues_same_as_idx", table_name="run_issues")
    op.drop_column("run_issues", "same_as_issue_id")
    op.drop_column("run_issues", "reuse_key")
    op.drop_index("results_reused_from_idx", table_name="results")
    op.drop_index("results_reuse_key_idx", table_name="results")
    # Reused rows have no call: they go with the columns that explain them.
    op.execute("DELETE FROM results WHERE llm_call_id IS NULL")
    op.alter_column("results", "llm_call_id", nullable=False)
    op.alter_column("results", "batch_id", nullable=False)
    op.drop_column("results", "saved_usd")
    op.drop_column("results", "reused_from_result_id")
    op.drop_column("results", "reuse_key")
