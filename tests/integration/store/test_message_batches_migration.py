"""Migration 0006 (Message Batches) goes up and down cleanly."""

from __future__ import annotations

from collections.abc import Callable

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from budgetq.adapters.store.engine import MIGRATIONS_DIR, downgrade, make_engine, upgrade


def _columns(engine: object, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(table)}  # type: ignore[arg-type]


def test_the_message_batch_tables_and_api_modes_come_with_0006_and_go_with_its_downgrade(
    fresh_database: Callable[[], str],
) -> None:
    # Given a database migrated to the head
    url = fresh_database()
    engine = make_engine(url)
    assert {"message_batches", "message_batch_requests"} <= set(inspect(engine).get_table_names())
    assert "api_mode" in _columns(engine, "runs") and "message_batch_id" in _columns(engine, "llm_calls")

    # When it is downgraded to the revision below 0006
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    below = ScriptDirectory.from_config(config).get_revision("0006").down_revision
    assert isinstance(below, str)
    downgrade(url, below)
    engine.dispose()

    # Then the tables and columns are gone, and upgrading brings them back
    assert not {"message_batches", "message_batch_requests"} & set(inspect(engine).get_table_names())
    assert "api_mode" not in _columns(engine, "batches") | _columns(engine, "runs") | _columns(
        engine, "issue_sets"
    )
    assert "message_batch_id" not in _columns(engine, "llm_calls")
    upgrade(url)
    engine.dispose()
    assert {"message_batches", "message_batch_requests"} <= set(inspect(engine).get_table_names())
    assert "api_mode" in _columns(engine, "batches")
    engine.dispose()
