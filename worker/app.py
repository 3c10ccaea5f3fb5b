"""The worker's Celery app: ``celery -A worker.app worker -P threads -c N -Q llm``."""

from __future__ import annotations

from budgetq.adapters.observability import signals as observability
from budgetq.adapters.queue.celery_app import LLM_QUEUE, make_celery
from budgetq.settings import Settings
from worker import tasks

settings = Settings()
if not settings.redis_url:
    raise SystemExit("set BUDGETQ_REDIS_URL (the broker) before starting a worker")
app = make_celery(settings, settings.redis_url, name="budgetq-worker")
tasks.register(app, settings)
observability.install(settings, queues=(LLM_QUEUE,))
