"""Migration 0009 adds the issues' source attributes and state, and the cost views by them, and back."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text

from budgetq.adapters.store.engine import downgrade, make_engine, upgrade

NEW_VIEWS = ("cost_by_owner", "cost_by_tag", "cost_by_dataset", "cost_by_source")


def _columns(conn: object, table: str) -> list[str]:
    return list(
        conn.scalars(  # type: ignore[attr-defined]
            text(
                "SELECT column_name FROM information_schema.columns WHERE table_name = :t "
                "ORDER BY ordinal_position"
            ),
            {"t": table},
        )
    )


def test_issues_gain_attributes_and_views_keep_their_columns_and_back(
    fresh_database: Callable[[], str],
) -> None:
    # Given a database at 0008 with one issue
    url = fresh_database()
    engine = make_engine(url)
    with engine.begin() as conn:
        before = _columns(conn, "cost_by_issue")
    downgrade(url, "0008")
    with engine.begin() as conn:
        old_view = _columns(conn, "cost_by_issue")
        set_id = conn.scalar(text("INSERT INTO issue_sets (name) VALUES ('m9') RETURNING id"))
        conn.execute(
            text("INSERT INTO issues (set_id, priority, text, chars) VALUES (:s, 10, 'x', 1)"), {"s": set_id}
        )

    # When it is upgraded to 0009
    upgrade(url, "0009")

    # Then the issue is open with no tags, cost_by_issue keeps every column, and the new views exist
    with engine.begin() as conn:
        state, tags = conn.execute(
            text("SELECT state, tags FROM issues WHERE set_id = :s"), {"s": set_id}
        ).one()
        views = set(conn.scalars(text("SELECT table_name FROM information_schema.views")))
        new_view = _columns(conn, "cost_by_issue")
    assert (state, tags) == ("open", [])
    assert new_view[: len(old_view)] == old_view and {"owner", "tags", "dataset", "source"} <= set(new_view)
    assert new_view == before
    assert set(NEW_VIEWS) <= views

    # And downgrading drops them and gives the old view back, the issue kept
    downgrade(url, "0008")
    with engine.begin() as conn:
        assert _columns(conn, "cost_by_issue") == old_view
        assert "state" not in _columns(conn, "issues")
        assert conn.scalar(text("SELECT count(*) FROM issues WHERE set_id = :s"), {"s": set_id}) == 1
        views = set(conn.scalars(text("SELECT table_name FROM information_schema.views")))
        conn.execute(text("DELETE FROM issue_sets WHERE id = :s"), {"s": set_id})
    assert not set(NEW_VIEWS) & views
    upgrade(url)
    engine.dispose()
