"""Fault-test rig: a database of the test's own, the broker, a stand-in that answers slowly (so calls
are in flight when something breaks), real worker processes, and a fast reaper in this process.

Leases are short (3 s, renewed every second) and the reaper passes every 0.5 s, so recovery that
takes minutes in production takes seconds here; the logic is the same.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.queue.celery_app import make_celery
from budgetq.adapters.store.engine import make_engine, make_sessions, transaction
from budgetq.domain.reaper import ReapReport
from budgetq.services.planning import enqueue, plan_run
from budgetq.settings import Settings
from scheduler.reaper import reap_once
from tests.integration.pipeline import make_seed_set

log = logging.getLogger("tests.faults")

FAST = {
    "BUDGETQ_LEASE_SECONDS": "3",
    "BUDGETQ_REAPER_INTERVAL_S": "0.5",
    "BUDGETQ_REQUEUE_AFTER_S": "60",
    "BUDGETQ_MAX_ISSUES_PER_CALL": "20",
}


@dataclass
class Rig:
    """Everything a fault test drives."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    settings: Settings
    app: Celery
    env: dict[str, str]
    standin: Any
    start_worker: Callable[..., subprocess.Popen[bytes]]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    reaper_sessions: sessionmaker[Session] | None = None  # None: the rig's own

    def worker(self, concurrency: int = 4, **env: str) -> subprocess.Popen[bytes]:
        """Start one more worker process."""
        proc = self.start_worker(concurrency, **{**self.env, **env})
        self.workers.append(proc)
        return proc

    def wait_ready(self, logs: Path, count: int, timeout_s: float = 60) -> None:
        """Wait until ``count`` worker logs under ``logs`` say the worker is ready to consume."""
        deadline = time.monotonic() + timeout_s
        while sum("ready." in f.read_text(errors="replace") for f in logs.glob("worker-*.log")) < count:
            assert time.monotonic() < deadline, f"fewer than {count} workers ready after {timeout_s}s"
            time.sleep(0.1)

    def plan(self, issues: int, name: str, per_call: int = 20) -> tuple[int, tuple[int, ...]]:
        """Plan a run over ``issues`` seed issues, ``per_call`` to a batch, and send its batches; return
        the run and batch ids."""
        set_id = make_seed_set(self.sessions, name, issues)
        settings = self.settings.model_copy(update={"max_issues_per_call": per_call})
        planned = plan_run(self.sessions, settings, set_id, kind="manual")
        assert planned.run_id is not None
        enqueue(self.app, self.sessions, planned.batch_ids)
        return planned.run_id, planned.batch_ids


def sigkill(proc: subprocess.Popen[bytes]) -> None:
    """Kill a worker outright (no cleanup, no acks), as the OOM killer or a power cut would."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture
def rig(
    fresh_database: Callable[[], str],
    broker_url: str,
    standin: Any,
    settings_env: dict[str, str],
    start_worker: Callable[..., subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Rig]:
    """A fresh database, the broker, a stand-in answering in 1 s, and the fast settings above."""
    url = fresh_database()
    env = {**FAST, "BUDGETQ_DATABASE_URL": url}
    for key, value in {**settings_env, **env}.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    standin.config.latency_s = 1.0
    engine = make_engine(url, pool_size=8)
    app = make_celery(settings, broker_url)
    rig = Rig(url, engine, make_sessions(engine), settings, app, env, standin, start_worker)
    yield rig
    # Stop every worker at once (warm shutdown in parallel), so teardown takes one worker's time.
    for proc in rig.workers:
        if proc.poll() is None:
            proc.terminate()
    for proc in rig.workers:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            sigkill(proc)
    rig.app.close()
    engine.dispose()


@pytest.fixture
def reaper(rig: Rig) -> Iterator[list[ReapReport]]:
    """The reaper, passing every ``reaper_interval_s`` in a thread of the test; yields its reports."""
    reports: list[ReapReport] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(rig.settings.reaper_interval_s):
            try:
                report = reap_once(rig.reaper_sessions or rig.sessions, rig.app, rig.settings)
            except Exception as exc:  # noqa: BLE001 - an outage the test causes; the next pass retries
                log.warning("reaper pass failed: %s", exc)
                continue
            if report.anything:
                reports.append(report)

    thread = threading.Thread(target=loop, name="reaper", daemon=True)
    thread.start()
    yield reports
    stop.set()
    thread.join(timeout=10)


@dataclass(frozen=True)
class Outcome:
    """How every issue of a run ended."""

    issues: int
    answered: int
    failed_with_reason: int
    results: int
    duplicate_results: int
    open_batches: int
    run_status: str


def outcome(sessions: sessionmaker[Session], run_id: int) -> Outcome:
    """Count what became of a run's issues, results and batches."""
    with transaction(sessions) as session:
        row = session.execute(
            text(
                """
                SELECT
                  (SELECT count(*) FROM run_issues WHERE run_id = :r) AS issues,
                  (SELECT count(*) FROM run_issues WHERE run_id = :r AND status = 'answered') AS answered,
                  (SELECT count(*) FROM run_issues WHERE run_id = :r AND status = 'failed'
                     AND reason IS NOT NULL AND reason <> '') AS failed_with_reason,
                  (SELECT count(*) FROM results WHERE run_id = :r) AS results,
                  (SELECT count(*) FROM (SELECT issue_id FROM results WHERE run_id = :r
                     GROUP BY issue_id HAVING count(*) > 1) d) AS duplicate_results,
                  (SELECT count(*) FROM batches WHERE run_id = :r
                     AND status NOT IN ('succeeded', 'failed', 'split')) AS open_batches,
                  (SELECT status FROM runs WHERE id = :r) AS run_status
                """
            ),
            {"r": run_id},
        ).one()
    return Outcome(*row)


def assert_every_issue_ended_once(o: Outcome) -> None:
    """Every issue answered exactly once (one result row) or failed with a reason; nothing open."""
    assert o.answered + o.failed_with_reason == o.issues, o
    assert o.results == o.answered, o
    assert o.duplicate_results == 0, o
    assert o.open_batches == 0, o


def wait_until_settled(sessions: sessionmaker[Session], run_id: int, timeout_s: float) -> Outcome:
    """Poll until the run is closed and none of its batches is open; fail with the counts after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        o = outcome(sessions, run_id)
        if o.run_status != "running" and o.open_batches == 0:
            return o
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} not settled after {timeout_s:.0f}s: {o}")
        time.sleep(0.5)
