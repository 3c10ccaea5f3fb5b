"""Migration 0002 (spend caps) goes up and down cleanly."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import inspect

from budgetq.adapters.store.engine import downgrade, make_engine, upgrade


def test_the_spend_tables_come_with_0002_and_go_with_its_downgrade(fresh_database: Callable[[], str]) -> None:
    # Given a database migrated to the head
    url = fresh_database()
    engine = make_engine(url)
    assert {"daily_spend", "spend_reservations"} <= set(inspect(engine).get_table_names())

    # When it is downgraded below 0002
    downgrade(url, "0001")
    engine.dispose()

    # Then the spend tables are gone, and upgrading brings them back
    assert not {"daily_spend", "spend_reservations"} & set(inspect(engine).get_table_names())
    upgrade(url)
    engine.dispose()
    assert {"daily_spend", "spend_reservations"} <= set(inspect(engine).get_table_names())
    engine.dispose()
