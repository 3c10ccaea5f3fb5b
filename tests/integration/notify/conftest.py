"""Fixtures of the notification tests: a database of each test's own (the outbox of other tests' runs
would reach this test's receiver), a webhook receiver, and a real scheduler process with its beat."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.processes import local_workers as processes
from budgetq.adapters.store.engine import make_engine, make_sessions
from tests.integration.notify.receiver import Receiver, serve


@pytest.fixture
def database_url(fresh_database: Callable[[], str]) -> str:
    """A migrated database for this test alone: its outbox holds only this test's notifications."""
    return fresh_database()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on this test's database."""
    eng = make_engine(database_url, pool_size=5)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    """A session factory on this test's database."""
    return make_sessions(engine)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1, stopped at teardown."""
    yield from serve()


@pytest.fixture
def start_scheduler(
    settings_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start the scheduler as deployed (threads pool, 2 threads) with its beat embedded (-B); stopped at
    teardown. ``extra_env`` adds settings, e.g. BUDGETQ_NOTIFY_URLS."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**extra_env: str) -> subprocess.Popen[bytes]:
        n = len(started)
        command = [sys.executable, "-m", "celery", "-A", "scheduler.app", "worker", "-Q", "scheduler"]
        command += ["-P", "threads", "-c", "2", "-B", "-s", str(tmp_path / f"beat-{n}")]
        command += ["--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        env = {**os.environ, **settings_env, "BUDGETQ_LOG_FORMAT": "text", **extra_env}
        with (tmp_path / f"scheduler-{n}.log").open("ab") as log:
            proc = subprocess.Popen(
                command,
                cwd=processes.PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        processes.stop(proc, timeout=10)
