"""The scheduler's Celery app.

``celery -A scheduler.app worker -Q scheduler -P threads -c 2`` runs its tasks (threads, not prefork:
token counting starts processes of its own, which a prefork child may not), and
``celery -A scheduler.app beat`` sends them on schedule (``scheduler.beat``).
"""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery

from budgetq.adapters.observability import signals as observability
from budgetq.adapters.queue.celery_app import LLM_QUEUE, SCHEDULER_QUEUE, make_celery
from budgetq.settings import Settings, read_or_exit
from scheduler import beat, notifications, reaper, tasks

# Add a module's register(app, settings) here to put its tasks on the scheduler (one line per module).
REGISTRARS: tuple[Callable[[Celery, Settings], None], ...] = (
    tasks.register,
    reaper.register,
    notifications.register,
)


def create_app(settings: Settings) -> Celery:
    """The scheduler's app on the settings' broker, with every task registered and the beat schedule set."""
    if not settings.redis_url:
        raise SystemExit("set BUDGETQ_REDIS_URL (the broker) before starting the scheduler")
    app = make_celery(settings, settings.redis_url, name="budgetq-scheduler")
    for register in REGISTRARS:
        register(app, settings)
    app.conf.beat_schedule = beat.schedule(settings)
    return app


# Celery's -A loads a module attribute: this module is the scheduler's entry point, where its settings
# are read from the environment.
settings = read_or_exit()
app = create_app(settings)
observability.install(settings, queues=(LLM_QUEUE, SCHEDULER_QUEUE))
