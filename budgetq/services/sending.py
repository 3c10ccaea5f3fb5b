"""Hand a planned run's batches to the broker, or end the run with the reason when it cannot be reached.

The batch rows are committed before this is called; a task message carries only a batch (or run) id.
"""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.queue.celery_app import PROCESS_BATCH, SUBMIT_MESSAGE_BATCHES
from budgetq.adapters.store import api_modes, run_issues
from budgetq.adapters.store import runs as run_store
from budgetq.adapters.store.engine import transaction
from budgetq.errors import EnqueueError


def enqueue(app: Celery, sessions: sessionmaker[Session], batch_ids: Sequence[int]) -> None:
    """Send one task per batch, by name, in queue order (highest priority first); the batch-api
    batches of a run go as one submit task for the run (they travel in Message Batches)."""
    with transaction(sessions) as session:
        sync, batch_api_runs = api_modes.route(session, batch_ids)
        runs = run_store.runs_of_batches(session, batch_ids)
        # Noted before the messages go, not after: a worker that takes a message at once found the batch
        # row locked by this UPDATE (a claim waited; a Message Batch submission skipped it until the next
        # poll; once, a deadlock). A batch noted but never sent is sent again by the reaper, as one
        # never noted is.
        run_store.mark_enqueued(session, batch_ids)
    try:
        for batch_id in sync:
            app.send_task(PROCESS_BATCH, args=[batch_id])
        for run_id in batch_api_runs:
            app.send_task(SUBMIT_MESSAGE_BATCHES, args=[run_id])
    except Exception as exc:  # noqa: BLE001 - kombu, redis and socket errors alike: the broker is out of reach
        # Nobody may ever pick these batches up: the run ends now, with the reason, rather than stay
        # 'running' for good (messages already sent find a stopped run and are refused unpaid).
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        reason = (
            f"the broker could not be reached while sending the run's batches ({first}); nothing was called"
        )
        with transaction(sessions) as session:
            for run_id in runs:
                run_issues.stop_run(session, run_id, reason)
        ids = ", ".join(str(r) for r in runs)
        raise EnqueueError(
            f"run {ids} stopped: {reason}. Check BUDGETQ_REDIS_URL and that Redis is up, then start it "
            "again (`budgetq run` or `budgetq reprocess`)"
        ) from exc
