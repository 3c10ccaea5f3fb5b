"""Engines and sessions. Build one engine per process (never share pooled connections across a fork)."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

from budgetq.errors import ConfigurationError
from budgetq.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "migrations"


def sqlalchemy_url(url: str) -> str:
    """Turn any PostgreSQL URL (``postgres://``, ``postgresql://``, a socket URL) into one for psycopg 3."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            converted = "postgresql+psycopg://" + url[len(prefix) :]
            try:
                make_url(converted)  # a port that is not a number is a ValueError here, not later
            except (ArgumentError, ValueError) as exc:
                raise ConfigurationError(
                    f"cannot parse the database URL {url.split('@')[-1]!r}: {exc}; set BUDGETQ_DATABASE_URL "
                    "to postgresql://user:password@host:5432/dbname"
                ) from None
            return converted
    raise ConfigurationError(
        f"database URL {url.split('@')[-1]!r} is not a PostgreSQL URL; "
        "set BUDGETQ_DATABASE_URL to postgresql://user:password@host:5432/dbname"
    )


@dataclass(frozen=True)
class DatabaseTimeouts:
    """How long a connection may take to open and a statement to run, so a silent host never hangs us."""

    connect_s: float = 10.0
    statement_s: float | None = 600.0

    @classmethod
    def of(cls, settings: Settings) -> DatabaseTimeouts:
        """The timeouts the settings configure (BUDGETQ_DB_CONNECT_TIMEOUT_S, ..._STATEMENT_TIMEOUT_S)."""
        return cls(settings.db_connect_timeout_s, settings.db_statement_timeout_s)

    def connect_args(self) -> dict[str, object]:
        """psycopg's connection arguments: libpq's connect timeout (whole seconds, at least 2), TCP
        keepalives (a peer that vanishes mid-query is noticed) and PostgreSQL's statement timeout."""
        args: dict[str, object] = {
            "connect_timeout": max(2, math.ceil(self.connect_s)),
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
        if self.statement_s is not None:
            args["options"] = f"-c statement_timeout={math.ceil(self.statement_s * 1000)}"
        return args


def make_engine(url: str, *, pool_size: int = 5, timeouts: DatabaseTimeouts | None = None) -> Engine:
    """An engine for ``url`` whose pool holds at least ``pool_size`` connections, every connection
    bounded by ``timeouts`` (the defaults when None)."""
    try:
        return create_engine(
            make_url(sqlalchemy_url(url)),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            connect_args=(timeouts or DatabaseTimeouts()).connect_args(),
        )
    except ArgumentError as exc:
        raise ConfigurationError(f"cannot parse the database URL: {exc}") from exc


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to ``engine``."""
    return sessionmaker(engine, expire_on_commit=False)


class ProcessSessions:
    """A session factory per process, made on first use from the settings' database URL."""

    def __init__(
        self,
        settings: Settings,
        pool_size: int = 2,
        *,
        process: str,
        missing_url: Callable[[str], BaseException] = ConfigurationError,
    ) -> None:
        self.settings = settings
        self.pool_size = pool_size
        # ``process`` names who needs the URL in the error; a worker passes SystemExit to stop there.
        self._process = process
        self._missing_url = missing_url
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._sessions: sessionmaker[Session] | None = None

    def get(self) -> sessionmaker[Session]:
        """The session factory of the current process."""
        with self._lock:
            if self._sessions is None or self._pid != os.getpid():
                if not self.settings.database_url:
                    raise self._missing_url(f"set BUDGETQ_DATABASE_URL before starting {self._process}")
                engine = make_engine(
                    self.settings.database_url,
                    pool_size=self.pool_size,
                    timeouts=DatabaseTimeouts.of(self.settings),
                )
                self._sessions, self._pid = make_sessions(engine), os.getpid()
            return self._sessions


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One session in one transaction: committed on success, rolled back on any error."""
    with sessions() as session, session.begin():
        yield session


def _migration_config(url: str, connect_timeout_s: float) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    # A migration may rewrite a large table: bounded in connecting, never cut by a statement timeout.
    config.attributes["connect_args"] = DatabaseTimeouts(connect_timeout_s, None).connect_args()
    return config


def _current(config: Config) -> tuple[str, ...]:
    """The revisions the database at the config's URL is at (none for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(
        make_url(sqlalchemy_url(config.attributes["database_url"])),
        connect_args=config.attributes["connect_args"],
    )
    try:
        with engine.connect() as conn:
            return tuple(sorted(MigrationContext.configure(conn).get_current_heads()))
    finally:
        engine.dispose()


def _described(script: ScriptDirectory, revisions: tuple[str, ...]) -> str:
    heads = set(script.get_heads())
    return ", ".join(f"{r} (head)" if r in heads else r for r in revisions) or "no budgetq schema"


def _refuse_going_down(script: ScriptDirectory, revision: str, current: tuple[str, ...]) -> None:
    """Alembic's upgrade to a revision below the database's does nothing and reports nothing: say so."""
    try:
        target = script.get_revision(revision)
    except Exception:  # noqa: BLE001 - an unknown or relative revision: the upgrade itself reports it
        return
    if target is None:
        return
    for at in current:
        below = {s.revision for s in script.walk_revisions(base="base", head=at)}
        if target.revision != at and target.revision in below:
            raise ConfigurationError(
                f"`budgetq db upgrade {revision}` would be a downgrade: the database is at "
                f"{_described(script, current)}, above {target.revision}; an upgrade only moves toward "
                "head, and a downgrade is a restore from backup (docs/operations.md)"
            )


def _migrate(url: str, revision: str, *, up: bool, connect_timeout_s: float) -> str:
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError
    from sqlalchemy.exc import OperationalError

    config = _migration_config(url, connect_timeout_s)
    script = ScriptDirectory.from_config(config)
    try:
        if up:
            _refuse_going_down(script, revision, _current(config))
        (command.upgrade if up else command.downgrade)(config, revision)
        return _described(script, _current(config))
    except CommandError as exc:
        raise ConfigurationError(f"cannot migrate to revision {revision!r}: {exc}") from exc
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise ConfigurationError(
            f"cannot reach PostgreSQL at {make_url(sqlalchemy_url(url)).render_as_string()}: {reason}"
        ) from exc


def upgrade(url: str, revision: str = "head", *, connect_timeout_s: float = 10.0) -> str:
    """Run the Alembic migrations up to ``revision`` against ``url``; the revision it ends at, described.

    A ``revision`` below the database's is refused (ConfigurationError): an upgrade never goes down.
    """
    return _migrate(url, revision, up=True, connect_timeout_s=connect_timeout_s)


def downgrade(url: str, revision: str, *, connect_timeout_s: float = 10.0) -> str:
    """Run the Alembic migrations down to ``revision`` against ``url``; the revision it ends at."""
    return _migrate(url, revision, up=False, connect_timeout_s=connect_timeout_s)


def ensure_migrated(engine: Engine) -> None:
    """Raise ConfigurationError, naming the fix, unless the database is at this code's schema revision."""
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    heads = set(ScriptDirectory.from_config(config).get_heads())
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    if current != heads:
        at = ", ".join(sorted(current)) or "no budgetq schema"
        raise ConfigurationError(
            f"the database at {engine.url.render_as_string()} has {at}, this budgetq needs revision "
            f"{', '.join(sorted(heads))}: run `budgetq db upgrade`"
        )


def ping(engine: Engine) -> None:
    """Check the database answers; raise ConfigurationError with the reason when it does not."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any driver error means the same to the user
        # The driver's first line says why; SQLAlchemy's wrapping adds lines and a link.
        reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigurationError(
            f"cannot reach PostgreSQL at {engine.url.render_as_string()}: {reason}"
        ) from exc
