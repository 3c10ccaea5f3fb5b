"""Engines and sessions. Build one engine per process (never share pooled connections across a fork)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from budgetq.errors import ConfigurationError

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def sqlalchemy_url(url: str) -> str:
    """Turn any PostgreSQL URL (``postgres://``, ``postgresql://``, a socket URL) into one for psycopg 3."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ConfigurationError(
        f"database URL {url.split('@')[-1]!r} is not a PostgreSQL URL; "
        "set BUDGETQ_DATABASE_URL to postgresql://user:password@host:5432/dbname"
    )


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for ``url`` whose pool holds at least ``pool_size`` connections."""
    try:
        return create_engine(
            make_url(sqlalchemy_url(url)),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
        )
    except ArgumentError as exc:
        raise ConfigurationError(f"cannot parse the database URL: {exc}") from exc


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to ``engine``."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One session in one transaction: committed on success, rolled back on any error."""
    with sessions() as session, session.begin():
        yield session


def upgrade(url: str, revision: str = "head") -> None:
    """Run the Alembic migrations up to ``revision`` against ``url``."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    command.upgrade(config, revision)


def downgrade(url: str, revision: str) -> None:
    """Run the Alembic migrations down to ``revision`` against ``url``."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    command.downgrade(config, revision)


def ping(engine: Engine) -> None:
    """Check the database answers; raise ConfigurationError with the reason when it does not."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any driver error means the same to the user
        raise ConfigurationError(
            f"cannot reach PostgreSQL at {engine.url.render_as_string()}: {exc}"
        ) from exc
