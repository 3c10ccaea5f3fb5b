"""Runs remember the request that started them: ``runs.request_key``, unique when set.

A REPROCESS task redelivered by the broker (acks_late, its worker died after the run was written)
carries the same message id; planning with that id as the request key finds the run already written
instead of starting a second run of the same issues. Runs written before this revision have none.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 16:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("request_key", sa.Text(), nullable=True))
    op.create_unique_constraint("runs_one_per_request", "runs", ["request_key"])


def downgrade() -> None:
    op.drop_constraint("runs_one_per_request", "runs", type_="unique")
    op.drop_column("runs", "request_key")
