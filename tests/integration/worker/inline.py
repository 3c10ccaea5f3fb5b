"""Drive the worker's real batch processing in the test process, without Celery.

``drain`` runs ``worker.process.BatchProcessor.process`` (the same code a Celery task runs) on each batch
of a run, and on every batch it queues in turn (halves, follow-ups, releases), one at a time, until
none is left. Tests that need a real worker process use the ``start_worker`` fixture instead.
"""

from __future__ import annotations

import uuid
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store import issues as issue_store
from budgetq.adapters.store.engine import transaction
from budgetq.services.planning import PlannedRun, plan_run
from budgetq.settings import Settings
from worker.process import BatchProcessor
from worker.resources import Resources


class InlineQueue:
    """Stands in for the Celery app: keeps the batch ids sent to it (countdowns are not waited)."""

    def __init__(self) -> None:
        self.pending: deque[int] = deque()
        self.countdowns: list[float] = []

    def send_task(self, name: str, args: Sequence[Any], countdown: float | None = None, **_: Any) -> None:
        self.pending.append(int(args[0]))
        if countdown is not None:
            self.countdowns.append(countdown)


def drain(settings: Settings, batch_ids: Iterable[int], limit: int = 2_000) -> Counter[str]:
    """Process the batches and all they spawn; return how many times each outcome happened."""
    queue = InlineQueue()
    queue.pending.extend(batch_ids)
    processor = BatchProcessor(Resources(settings, queue))  # type: ignore[arg-type]
    outcomes: Counter[str] = Counter()
    while queue.pending:
        outcomes[processor.process(queue.pending.popleft())] += 1
        if sum(outcomes.values()) > limit:
            raise AssertionError(f"more than {limit} batch runs: {outcomes}")
    return outcomes


def make_set(sessions: sessionmaker[Session], texts: Sequence[str], priority: int = 10) -> int:
    """A new issue set holding ``texts``."""
    with transaction(sessions) as session:
        set_id = issue_store.create_set(session, f"worker-{uuid.uuid4().hex[:8]}")
        issue_store.insert_issues(session, set_id, (issue_store.NewIssue(priority, t, None) for t in texts))
    return set_id


def plan_and_drain(
    sessions: sessionmaker[Session], settings: Settings, set_id: int
) -> tuple[PlannedRun, Counter[str]]:
    """Plan a manual run of the set and process it in this process."""
    planned = plan_run(sessions, settings, set_id, kind="manual")
    assert planned.run_id is not None
    return planned, drain(settings, planned.batch_ids)


def issue_outcomes(sessions: sessionmaker[Session], run_id: int) -> list[Any]:
    """Per issue of the run: its status, reason and how many results it has."""
    with transaction(sessions) as session:
        return list(
            session.execute(
                text(
                    "SELECT ri.issue_id, ri.status, ri.reason, count(r.id) AS results "
                    "FROM run_issues ri LEFT JOIN results r "
                    "ON r.run_id = ri.run_id AND r.issue_id = ri.issue_id "
                    "WHERE ri.run_id = :run GROUP BY ri.issue_id, ri.status, ri.reason"
                ),
                {"run": run_id},
            )
        )


def assert_each_issue_settled_once(sessions: sessionmaker[Session], run_id: int) -> list[Any]:
    """Every issue of the run has exactly one result (answered) or none and a reason (failed)."""
    rows = issue_outcomes(sessions, run_id)
    assert rows
    for row in rows:
        if row.status == "answered":
            assert row.results == 1, row
        else:
            assert row.status == "failed" and row.results == 0 and row.reason, row
    return rows
