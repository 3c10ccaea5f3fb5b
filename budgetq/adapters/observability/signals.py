"""Logs and metrics wired into a Celery process, worker or scheduler, through Celery's signals."""

from __future__ import annotations

from typing import Any

from celery.signals import setup_logging, worker_init

from budgetq.adapters.observability import logs, metrics
from budgetq.settings import Settings


def install(settings: Settings, queues: tuple[str, ...]) -> None:
    """JSON logs instead of Celery's (BUDGETQ_LOG_LEVEL, BUDGETQ_LOG_FORMAT), and Prometheus metrics on
    BUDGETQ_METRICS_PORT once the process starts (with the depth of ``queues``)."""

    def configure_logging(**_: Any) -> None:
        logs.configure(settings.log_level, settings.log_format)

    def serve_metrics(**_: Any) -> None:
        # The threads pool keeps a worker in one process, so one registry per port holds all of it.
        if settings.metrics_port:
            metrics.serve(settings.metrics_port, settings.redis_url, queues, host=settings.metrics_host)

    # Connecting to setup_logging is what stops Celery from configuring logging its own way.
    setup_logging.connect(configure_logging, weak=False)
    worker_init.connect(serve_metrics, weak=False)
