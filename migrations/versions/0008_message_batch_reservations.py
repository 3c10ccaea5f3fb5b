"""Message Batch requests hold spend: each request row names the reservation made when it was submitted.

A batch-api submission reserves each request's worst case (at the batch rate) in the transaction that
writes its ``message_batch_requests`` row; ``spend_reservation_id`` ties the two, so whichever worker
ingests the result settles exactly that reservation, once. Rows written before this revision have none.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("message_batch_requests", sa.Column("spend_reservation_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        "message_batch_requests_spend_reservation_id_fkey",
        "message_batch_requests",
        "spend_reservations",
        ["spend_reservation_id"],
        ["id"],
        ondelete="SET NULL",
    )


def downgrade() -> None:
    op.drop_constraint(
        "message_batch_requests_spend_reservation_id_fkey", "message_batch_requests", type_="foreignkey"
    )
    op.drop_column("message_batch_requests", "spend_reservation_id")
