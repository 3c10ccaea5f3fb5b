"""The worker's Celery app: ``celery -A worker.app worker -P threads -c N -Q llm``.

Celery's ``-A`` loads a module attribute, so this module is the worker's entry point: the one place
its settings are read from the environment. ``create_app`` builds an app from given settings.
"""

from __future__ import annotations

from celery import Celery

from budgetq.adapters.observability import signals as observability
from budgetq.adapters.queue.celery_app import LLM_QUEUE, make_celery
from budgetq.settings import Settings, read_or_exit
from worker import tasks


def create_app(settings: Settings) -> Celery:
    """The worker's app on the settings' broker, with its tasks registered."""
    if not settings.redis_url:
        raise SystemExit("set BUDGETQ_REDIS_URL (the broker) before starting a worker")
    app = make_celery(settings, settings.redis_url, name="budgetq-worker")
    tasks.register(app, settings)
    return app


settings = read_or_exit()
app = create_app(settings)
observability.install(settings, queues=(LLM_QUEUE,))
