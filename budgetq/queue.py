"""The Celery app both processes share: broker settings and task names, no task bodies.

The scheduler sends batch tasks *by name*; the worker registers the bodies. Messages carry
only ids; every task re-reads its state from PostgreSQL.
"""

from __future__ import annotations

from celery import Celery
from kombu.entity import Queue

from budgetq.settings import Settings

PROCESS_BATCH = "budgetq.process_batch"
REAP = "budgetq.reap"
PLAN_NIGHTLY = "budgetq.plan_nightly"
REPROCESS = "budgetq.reprocess"

LLM_QUEUE = "llm"
SCHEDULER_QUEUE = "scheduler"


def make_celery(settings: Settings, broker_url: str, *, name: str = "budgetq") -> Celery:
    """A Celery app for ``broker_url`` with the at-least-once settings budgetq relies on."""
    hard_limit = settings.call_timeout_s * settings.retry_max_attempts + settings.retry_max_seconds
    app = Celery(name, broker=broker_url)
    app.conf.update(
        task_default_queue=LLM_QUEUE,
        task_queues=(Queue(LLM_QUEUE), Queue(SCHEDULER_QUEUE)),  # type: ignore[no-untyped-call]
        task_routes={
            PROCESS_BATCH: {"queue": LLM_QUEUE},
            REAP: {"queue": SCHEDULER_QUEUE},
            PLAN_NIGHTLY: {"queue": SCHEDULER_QUEUE},
            REPROCESS: {"queue": SCHEDULER_QUEUE},
        },
        # A task is acknowledged only after its effects are committed; a lost worker's task is redelivered.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_soft_time_limit=hard_limit,
        task_time_limit=hard_limit + 60,
        # Redelivery of unacked messages must come well after the hard limit, or a slow call runs twice.
        broker_transport_options={"visibility_timeout": int(hard_limit * 2 + 600)},
        broker_connection_retry_on_startup=True,
        broker_pool_limit=settings.worker_concurrency + 4,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        timezone="UTC",
    )
    return app
