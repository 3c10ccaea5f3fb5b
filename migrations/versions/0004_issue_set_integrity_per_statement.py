"""Issues belong to an existing set, checked once per statement instead of once per row.

The foreign key ``issues.set_id → issue_sets.id`` ran one lookup-and-lock per inserted row: on a
COPY of 1M issues it took 4.8 of the server's 10.6 CPU seconds (measured on this machine: all
indexes and the key 10.6 s, all indexes alone 5.8 s), holding a bulk load under 100,000 rows/s.
The same rules are now triggers:

- ``issues_set_exists``: after each INSERT or COPY statement, the sets of its new rows (a
  transition table) are locked ``FOR KEY SHARE``, as the foreign key did, and a missing one
  aborts the statement with SQLSTATE 23503 (foreign_key_violation), as the foreign key did;
- ``issues_set_id_fixed``: an issue never moves to another set (no statement changes set_id);
- ``issue_sets_delete_issues``: deleting a set deletes its issues (the former ON DELETE CASCADE).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 09:20:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("issues_set_id_fkey", "issues", type_="foreignkey")
    op.execute(
        """
        CREATE FUNCTION budgetq_issues_set_exists() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            missing bigint;
        BEGIN
            -- Lock the referenced sets as a foreign key would, so a concurrent delete waits for us.
            PERFORM 1 FROM issue_sets s
            WHERE s.id IN (SELECT DISTINCT n.set_id FROM new_rows n) FOR KEY SHARE;
            SELECT d.set_id INTO missing
            FROM (SELECT DISTINCT n.set_id FROM new_rows n) d
            WHERE NOT EXISTS (SELECT 1 FROM issue_sets s WHERE s.id = d.set_id)
            LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'insert into issues refers to issue set % which does not exist', missing
                    USING ERRCODE = 'foreign_key_violation';
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER issues_set_exists AFTER INSERT ON issues
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION budgetq_issues_set_exists()
        """
    )
    op.execute(
        """
        CREATE FUNCTION budgetq_issues_set_id_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'issue % cannot move from set % to set %', OLD.id, OLD.set_id, NEW.set_id
                USING ERRCODE = 'foreign_key_violation';
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER issues_set_id_fixed BEFORE UPDATE OF set_id ON issues
        FOR EACH ROW WHEN (OLD.set_id IS DISTINCT FROM NEW.set_id)
        EXECUTE FUNCTION budgetq_issues_set_id_fixed()
        """
    )
    op.execute(
        """
        CREATE FUNCTION budgetq_issue_sets_delete_issues() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM issues WHERE set_id = OLD.id;
            RETURN OLD;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER issue_sets_delete_issues AFTER DELETE ON issue_sets
        FOR EACH ROW EXECUTE FUNCTION budgetq_issue_sets_delete_issues()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER issue_sets_delete_issues ON issue_sets")
    op.execute("DROP FUNCTION budgetq_issue_sets_delete_issues()")
    op.execute("DROP TRIGGER issues_set_id_fixed ON issues")
    op.execute("DROP FUNCTION budgetq_issues_set_id_fixed()")
    op.execute("DROP TRIGGER issues_set_exists ON issues")
    op.execute("DROP FUNCTION budgetq_issues_set_exists()")
    op.create_foreign_key(
        "issues_set_id_fkey", "issues", "issue_sets", ["set_id"], ["id"], ondelete="CASCADE"
    )
