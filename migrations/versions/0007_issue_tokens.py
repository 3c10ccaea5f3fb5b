"""Token counts move from columns of ``issues`` to their own narrow table, ``issue_tokens``.

Storing a set's counts was one ``UPDATE issues … FROM`` that rewrote every issue row, text and all,
and a new entry in each of its three indexes: 24.8 s of server CPU for 1M issues, three quarters of
the first planning of the set. Counts are derived data keyed by issue, encoding and calibration
version; COPYing them into a table of their own writes only those few bytes a row.

There is no foreign key to ``issues``: a key would lock every counted issue row ``FOR KEY SHARE``,
dirtying the whole issues table again. Instead, deleting issues (directly or through their set)
deletes their counts, once per statement, and the counter only writes counts for ids it has just
read in the same transaction. Changing an issue's text drops its count, so the next plan counts it
again (the README's SQL contract used to ask writers to reset the count columns themselves).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 12:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "issue_tokens",
        sa.Column("issue_id", sa.BigInteger(), primary_key=True),
        sa.Column("raw_tokens", sa.Integer(), nullable=False),
        sa.Column("token_encoding", sa.String(length=64), nullable=False),
        sa.Column("calibration_version", sa.String(length=32), nullable=False),
    )
    op.execute(
        """
        INSERT INTO issue_tokens (issue_id, raw_tokens, token_encoding, calibration_version)
        SELECT id, raw_tokens, token_encoding, calibration_version FROM issues
        WHERE raw_tokens IS NOT NULL AND token_encoding IS NOT NULL AND calibration_version IS NOT NULL
        """
    )
    op.drop_column("issues", "raw_tokens")
    op.drop_column("issues", "token_encoding")
    op.drop_column("issues", "calibration_version")
    op.execute(
        """
        CREATE FUNCTION budgetq_issues_delete_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM issue_tokens t USING old_rows o WHERE t.issue_id = o.id;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER issues_delete_tokens AFTER DELETE ON issues
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION budgetq_issues_delete_tokens()
        """
    )

    op.execute(
        """
        CREATE FUNCTION budgetq_issues_text_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM issue_tokens WHERE issue_id = NEW.id;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER issues_text_changed AFTER UPDATE OF text ON issues
        FOR EACH ROW WHEN (OLD.text IS DISTINCT FROM NEW.text)
        EXECUTE FUNCTION budgetq_issues_text_changed()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER issues_text_changed ON issues")
    op.execute("DROP FUNCTION budgetq_issues_text_changed()")
    op.execute("DROP TRIGGER issues_delete_tokens ON issues")
    op.execute("DROP FUNCTION budgetq_issues_delete_tokens()")
    op.add_column("issues", sa.Column("raw_tokens", sa.Integer(), nullable=True))
    op.add_column("issues", sa.Column("token_encoding", sa.String(length=64), nullable=True))
    op.add_column("issues", sa.Column("calibration_version", sa.String(length=32), nullable=True))
    op.execute(
        """
        UPDATE issues i SET raw_tokens = t.raw_tokens, token_encoding = t.token_encoding,
            calibration_version = t.calibration_version
        FROM issue_tokens t WHERE t.issue_id = i.id
        """
    )
    op.drop_table("issue_tokens")
