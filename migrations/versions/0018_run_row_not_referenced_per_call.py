"""The rows written per call reference the batch or the run's issue, not the run's row.

A foreign key locks the row it references (``FOR KEY SHARE``) in every transaction that inserts a
referencing row. ``results``, ``llm_calls`` and ``spend_reservations`` referenced ``runs`` directly,
so every call's transactions locked the run's one row, and a capped run's counter UPDATEs on that row
had to fold those lockers into a new MultiXact each time: the capped pipeline ran at 0.64 × the
uncapped one at 100k issues (docs/benchmarks.md). Each now references a row that is its own:

- ``results (run_id, issue_id)`` → ``run_issues (run_id, issue_id)``: a result is for an issue of
  its run (stronger than before: the run alone was checked);
- ``llm_calls (batch_id, run_id)`` and ``spend_reservations (batch_id, run_id)`` →
  ``batches (id, run_id)``: the call's and the reservation's run is their batch's run (a reservation
  without a batch, ``batch_id`` NULL, is checked by no key, as MATCH SIMPLE has it).

Deleting a run still deletes them all: through ``run_issues`` and ``batches``, which cascade from
``runs``. The new keys are added ``NOT VALID``: enforced for every row written from now on, without
a scan of the tables (rows written before were written under the old keys).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 20:50:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_unique_constraint("batches_id_run_key", "batches", ["id", "run_id"])
    op.drop_constraint("results_run_id_fkey", "results", type_="foreignkey")
    op.execute(
        "ALTER TABLE results ADD CONSTRAINT results_run_issue_fkey FOREIGN KEY (run_id, issue_id) "
        "REFERENCES run_issues (run_id, issue_id) ON DELETE CASCADE NOT VALID"
    )
    for table in ("llm_calls", "spend_reservations"):
        op.drop_constraint(f"{table}_run_id_fkey", table, type_="foreignkey")
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {table}_batch_run_fkey FOREIGN KEY (batch_id, run_id) "
            "REFERENCES batches (id, run_id) ON DELETE CASCADE NOT VALID"
        )


def downgrade() -> None:
    for table in ("llm_calls", "spend_reservations"):
        op.drop_constraint(f"{table}_batch_run_fkey", table, type_="foreignkey")
        op.create_foreign_key(f"{table}_run_id_fkey", table, "runs", ["run_id"], ["id"], ondelete="CASCADE")
    op.drop_constraint("results_run_issue_fkey", "results", type_="foreignkey")
    op.create_foreign_key("results_run_id_fkey", "results", "runs", ["run_id"], ["id"], ondelete="CASCADE")
    op.drop_constraint("batches_id_run_key", "batches", type_="unique")
