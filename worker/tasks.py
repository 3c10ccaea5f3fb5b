"""Celery task bodies of the worker; thin: they hand an id to worker.process."""

from __future__ import annotations

from celery import Celery

from budgetq.metrics import observe_batch
from budgetq.queue import PROCESS_BATCH
from budgetq.settings import Settings
from worker import batch_api
from worker.process import Context


def register(app: Celery, settings: Settings) -> None:
    """Register the worker's tasks on ``app``."""
    context = Context(settings, app)
    batch_api.register(app, context)  # the batch-api run mode's submit and poll tasks

    @app.task(name=PROCESS_BATCH, ignore_result=True)  # type: ignore[untyped-decorator]
    def process_batch(batch_id: int) -> str:
        """Process one batch by id (the message carries nothing else)."""
        result = context.process(batch_id)
        observe_batch(result)
        return result
