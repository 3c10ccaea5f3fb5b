"""Migration 0007 moves stored token counts into ``issue_tokens`` and back, losing none."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text

from budgetq.adapters.store.engine import downgrade, make_engine, upgrade


def test_counts_move_to_issue_tokens_and_back(fresh_database: Callable[[], str]) -> None:
    # Given a database at 0006 with one counted and one uncounted issue
    url = fresh_database()
    downgrade(url, "0006")
    engine = make_engine(url)
    with engine.begin() as conn:
        set_id = conn.scalar(text("INSERT INTO issue_sets (name) VALUES ('m7') RETURNING id"))
        conn.execute(
            text(
                "INSERT INTO issues (set_id, priority, text, chars, raw_tokens, token_encoding, "
                "calibration_version) VALUES (:s, 15, 'counted', 7, 2, 'cl100k_base', 'v1'), "
                "(:s, 5, 'not yet', 7, NULL, NULL, NULL)"
            ),
            {"s": set_id},
        )
    engine.dispose()

    # When it is upgraded to 0007
    upgrade(url, "0007")

    # Then the count is in issue_tokens and the columns are gone
    with engine.begin() as conn:
        rows = conn.execute(
            text(
                "SELECT i.text, t.raw_tokens, t.token_encoding, t.calibration_version FROM issue_tokens t "
                "JOIN issues i ON i.id = t.issue_id"
            )
        ).all()
        columns = conn.scalars(
            text("SELECT column_name FROM information_schema.columns WHERE table_name = 'issues'")
        ).all()
    assert [tuple(r) for r in rows] == [("counted", 2, "cl100k_base", "v1")]
    assert "raw_tokens" not in columns

    # And downgrading puts the count back on its issue
    downgrade(url, "0006")
    with engine.begin() as conn:
        back = conn.execute(
            text("SELECT text, raw_tokens, token_encoding, calibration_version FROM issues ORDER BY id")
        ).all()
        conn.execute(text("DELETE FROM issue_sets WHERE id = :s"), {"s": set_id})
    assert [tuple(r) for r in back] == [("counted", 2, "cl100k_base", "v1"), ("not yet", None, None, None)]
    upgrade(url)
    engine.dispose()
