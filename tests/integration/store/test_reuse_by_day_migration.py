"""Migration 0016 appends ``reused_issues`` and ``saved_usd`` to ``cost_by_day`` and ``cost_by_set``,
keeping every column in place, and downgrading restores the views exactly."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text

from budgetq.adapters.store.engine import downgrade, make_engine, upgrade

VIEWS = ("cost_by_day", "cost_by_set")


def _columns(conn: object, table: str) -> list[str]:
    query = text(
        "SELECT column_name FROM information_schema.columns WHERE table_name = :t ORDER BY ordinal_position"
    )
    return list(conn.scalars(query, {"t": table}).all())  # type: ignore[attr-defined]


def test_reuse_columns_are_appended_to_the_day_and_set_views_and_removed(
    fresh_database: Callable[[], str],
) -> None:
    # Given a database at 0015 and its views' columns
    url = fresh_database()
    downgrade(url, "0015")
    engine = make_engine(url)
    with engine.begin() as conn:
        before = {v: _columns(conn, v) for v in VIEWS}
        assert "reused_issues" not in before["cost_by_day"]

    # When it is upgraded, the old columns stay in place and the two new ones come last
    upgrade(url, "0016")
    with engine.begin() as conn:
        for view in VIEWS:
            assert _columns(conn, view) == [*before[view], "reused_issues", "saved_usd"]
        assert conn.execute(text("SELECT count(*) FROM cost_by_set")).scalar() == 0

    # And downgrading restores them exactly
    downgrade(url, "0015")
    with engine.begin() as conn:
        assert {v: _columns(conn, v) for v in VIEWS} == before
    upgrade(url)
    engine.dispose()
