"""Celery task bodies of the worker; thin: they hand an id to the batch processor."""

from __future__ import annotations

from celery import Celery

from budgetq.adapters.observability.metrics import observe_batch
from budgetq.adapters.queue.celery_app import PROCESS_BATCH
from budgetq.settings import Settings
from worker.batch_api import tasks as batch_api
from worker.process import BatchProcessor
from worker.resources import Resources


def register(app: Celery, settings: Settings) -> None:
    """Register the worker's tasks on ``app``."""
    resources = Resources(settings, app)
    processor = BatchProcessor(resources)
    batch_api.register(app, resources)  # the batch-api run mode's submit and poll tasks

    @app.task(name=PROCESS_BATCH, ignore_result=True)  # type: ignore[untyped-decorator]
    def process_batch(batch_id: int) -> str:
        """Process one batch by id (the message carries nothing else)."""
        result = processor.process(batch_id)
        observe_batch(result)
        return result
