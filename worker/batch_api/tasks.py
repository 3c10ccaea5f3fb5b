"""The batch-api run mode: a run's packed batches travel as requests of Message Batches (50% off).

``worker.batch_api.submit`` sends them (task ``SUBMIT_MESSAGE_BATCHES``, sent by the scheduler for a
batch-api run); ``worker.batch_api.poll`` polls the API and ingests the results as they end (task
``POLL_MESSAGE_BATCHES``, sent by the beat every ``BUDGETQ_MESSAGE_BATCH_POLL_S``). Both keep every
state in PostgreSQL: a worker restart between submit and ingest loses and duplicates nothing.
"""

from __future__ import annotations

from celery import Celery

from budgetq.adapters.queue.celery_app import POLL_MESSAGE_BATCHES, SUBMIT_MESSAGE_BATCHES
from worker.batch_api.context import BatchApiContext
from worker.batch_api.poll import Poller
from worker.batch_api.submit import Submitter
from worker.resources import Resources


def register(app: Celery, resources: Resources) -> None:
    """Register the batch-api tasks on ``app``, sharing the worker's per-process ``resources``."""
    api = BatchApiContext(resources)
    submitter = Submitter(api)
    poller = Poller(api, submitter)

    @app.task(name=SUBMIT_MESSAGE_BATCHES, ignore_result=True)  # type: ignore[untyped-decorator]
    def submit_message_batches(run_id: int | None = None) -> str:
        """Submit a run's queued batch-api batches (every waiting run's when no id is given)."""
        return submitter.submit(run_id)

    @app.task(name=POLL_MESSAGE_BATCHES, ignore_result=True)  # type: ignore[untyped-decorator]
    def poll_message_batches() -> str:
        """Poll the Message Batches the API holds and ingest those that ended (the beat sends this)."""
        return poller.poll()
