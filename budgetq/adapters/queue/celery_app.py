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
# Notifications (scheduler.notifications): send the outbox's due deliveries; report a nightly run that
# did not start. Both on the beat, both harmless when run twice.
DELIVER_NOTIFICATIONS = "budgetq.deliver_notifications"
WATCH_NIGHTLY = "budgetq.watch_nightly"
# The batch-api run mode (worker.batch_api.tasks): submit a run's batches as Message Batches (args: run id,
# or none for every waiting run); poll the API holding them and ingest those that ended (beat).
SUBMIT_MESSAGE_BATCHES = "budgetq.submit_message_batches"
POLL_MESSAGE_BATCHES = "budgetq.poll_message_batches"

LLM_QUEUE = "llm"
SCHEDULER_QUEUE = "scheduler"


def task_time_bound(settings: Settings) -> float:
    """The longest a batch task can run: every attempt waiting its longest for the rate limit and
    timing out, plus the retry budget (tenacity starts no wait that would end past it)."""
    per_attempt = settings.call_timeout_s + settings.rate_limit_max_wait_s
    return per_attempt * settings.retry_max_attempts + settings.retry_max_seconds


def visibility_timeout(settings: Settings) -> float:
    """Seconds before Redis hands an unacknowledged task to another worker: the configured value, else
    twice the task's time bound plus ten minutes (a slow call must not be redelivered while it runs)."""
    if settings.visibility_timeout_s is not None:
        return settings.visibility_timeout_s
    return task_time_bound(settings) * 2 + 600


def make_celery(settings: Settings, broker_url: str, *, name: str = "budgetq") -> Celery:
    """A Celery app for ``broker_url`` with the at-least-once settings budgetq relies on."""
    hard_limit = task_time_bound(settings)
    visibility = visibility_timeout(settings)
    app = Celery(name, broker=broker_url)
    app.conf.update(
        task_default_queue=LLM_QUEUE,
        task_queues=(Queue(LLM_QUEUE), Queue(SCHEDULER_QUEUE)),  # type: ignore[no-untyped-call]
        task_routes={
            PROCESS_BATCH: {"queue": LLM_QUEUE},
            REAP: {"queue": SCHEDULER_QUEUE},
            PLAN_NIGHTLY: {"queue": SCHEDULER_QUEUE},
            REPROCESS: {"queue": SCHEDULER_QUEUE},
            DELIVER_NOTIFICATIONS: {"queue": SCHEDULER_QUEUE},
            WATCH_NIGHTLY: {"queue": SCHEDULER_QUEUE},
            # API calls, made by the workers that hold the SDK clients.
            SUBMIT_MESSAGE_BATCHES: {"queue": LLM_QUEUE},
            POLL_MESSAGE_BATCHES: {"queue": LLM_QUEUE},
        },
        # A task is acknowledged only after its effects are committed; a lost worker's task is redelivered.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        # Enforced by the prefork pool only; on the threads pool the bound comes from the call itself
        # (timeouts, the retry budget, the rate limiter's longest wait: task_time_bound).
        task_soft_time_limit=hard_limit,
        task_time_limit=hard_limit + 60,
        broker_transport_options={
            # Redelivery of unacked messages must come well after the hard limit, or a slow call runs
            # twice (the lease would refuse the second claim anyway: it costs a message, not a call).
            "visibility_timeout": int(visibility),
            # Sweep for abandoned messages at a pace that matches the timeout.
            "unacked_restore_interval": max(1, min(10, int(visibility / 10))),
            "unacked_restore_throttle": 1 if visibility < 600 else 10,
            # A dead broker connection is noticed and replaced instead of hanging a publish.
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
            "health_check_interval": 10,
        },
        # Reconnect after a Redis restart, forever, at startup and at run time, without operator help.
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_channel_error_retry=True,
        broker_pool_limit=settings.worker_concurrency + 4,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        timezone="UTC",
    )
    return app
