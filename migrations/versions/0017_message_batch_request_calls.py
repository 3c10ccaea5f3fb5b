"""A Message Batch request names its ``llm_calls`` row, written ``pending`` before the create is sent.

The submitter opens each request's row (worst case at the batch rate in ``unknown_usd``, its
reservation in ``reservation_id``) in the transaction that reserves its spend and records the request;
``message_batch_requests.llm_call_id`` ties the two, so ingestion settles that same row, and a
request whose Message Batch is lost or whose create went unanswered marks it ``unknown``. Rows
written before this revision have none: their results are recorded as before, a row each.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 20:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "message_batch_requests",
        sa.Column(
            "llm_call_id",
            sa.BigInteger(),
            sa.ForeignKey(
                "llm_calls.id", ondelete="SET NULL", name="message_batch_requests_llm_call_id_fkey"
            ),
            nullable=True,
        ),
    )


def downgrade() -> None:
    op.drop_constraint(
        "message_batch_requests_llm_call_id_fkey", "message_batch_requests", type_="foreignkey"
    )
    op.drop_column("message_batch_requests", "llm_call_id")
