"""Fixtures of the notification tests: a webhook receiver, and a real scheduler process with its beat."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from budgetq.adapters.processes import local_workers as processes
from tests.integration.notify.receiver import Receiver, serve


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
