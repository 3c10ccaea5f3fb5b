"""Alembic environment: the URL comes from the caller or from budgetq's settings, never from alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from budgetq.adapters.store import (
    message_batch_models,  # noqa: F401 - its tables join Base.metadata
    notification_models,  # noqa: F401 - its tables join Base.metadata
)
from budgetq.adapters.store.engine import sqlalchemy_url
from budgetq.adapters.store.models import Base
from budgetq.settings import Settings

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("database_url") or Settings().database_url
    if not url:
        raise SystemExit("set BUDGETQ_DATABASE_URL to migrate")
    return sqlalchemy_url(str(url))


def run_migrations_offline() -> None:
    """Emit SQL without a connection."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate over a connection."""
    engine = create_engine(
        _url(), poolclass=pool.NullPool, connect_args=config.attributes.get("connect_args", {})
    )
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
