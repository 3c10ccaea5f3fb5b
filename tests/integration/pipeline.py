"""Test helpers for whole-pipeline tests: make a set, plan it, wait for the run."""

from __future__ import annotations

import time
from itertools import islice

from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.queue.celery_app import make_celery
from budgetq.adapters.store import issues as issue_store
from budgetq.adapters.store import runs as run_store
from budgetq.adapters.store.engine import transaction
from budgetq.devtools.scenario import seed_issues
from budgetq.domain.statuses import RunStatus
from budgetq.services.planning import PlannedRun, enqueue, plan_run
from budgetq.settings import Settings


def make_seed_set(sessions: sessionmaker[Session], name: str, n: int | None = None) -> int:
    """A set holding the first ``n`` issues of the seed scenario (all 3,824 when None)."""
    with transaction(sessions) as session:
        set_id = issue_store.create_set(session, name)
        issue_store.insert_issues(
            session,
            set_id,
            (issue_store.NewIssue(i.priority, i.text, i.external_id) for i in islice(seed_issues(), n)),
        )
    return set_id


def wait_for_run(sessions: sessionmaker[Session], run_id: int, timeout_s: float = 120) -> run_store.Progress:
    """Poll until the run leaves 'running'; fail the test with its progress after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        with transaction(sessions) as session:
            progress = run_store.progress(session, run_id)
        if progress.status != RunStatus.RUNNING.value:
            return progress
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still running after {timeout_s}s: {progress}")
        time.sleep(0.3)


def run_on_workers(
    sessions: sessionmaker[Session], settings: Settings, set_id: int
) -> tuple[PlannedRun, run_store.Progress]:
    """Plan a manual run of the set, send its batches to the worker processes, and wait for it to end."""
    planned = plan_run(sessions, settings, set_id, kind="manual")
    assert planned.run_id is not None
    enqueue(make_celery(settings, settings.redis_url or ""), sessions, planned.batch_ids)
    return planned, wait_for_run(sessions, planned.run_id)
