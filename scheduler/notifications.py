"""The scheduler's notification tasks: DELIVER_NOTIFICATIONS sends the outbox (every ``notify_poll_s``,
when targets are configured) and WATCH_NIGHTLY reports a nightly set whose run did not start."""

from __future__ import annotations

import datetime as dt
from typing import Any

from celery import Celery

from budgetq.adapters.notify.targets import parse_targets
from budgetq.adapters.queue.celery_app import DELIVER_NOTIFICATIONS, SCHEDULER_QUEUE, WATCH_NIGHTLY
from budgetq.adapters.store.engine import ProcessSessions
from budgetq.services.notifying import deliver_due, watch_nightly
from budgetq.settings import Settings
from scheduler.cron import cron_fields, parse_cron

# The nightly watch looks every this many seconds; a run is late only after nightly_start_window_s.
WATCH_EVERY_S = 300.0


def register(app: Celery, settings: Settings) -> None:
    """Register DELIVER_NOTIFICATIONS and WATCH_NIGHTLY on ``app`` (the scheduler's)."""
    sessions = ProcessSessions(settings, process="the scheduler")
    targets = parse_targets(settings.notify_urls)
    fields = cron_fields(parse_cron(settings.nightly_cron))

    @app.task(name=DELIVER_NOTIFICATIONS, ignore_result=True)  # type: ignore[untyped-decorator]
    def deliver_notifications_task() -> dict[str, int]:
        """One delivery pass over the outbox; a second one at the same time finds nothing to claim."""
        return deliver_due(sessions.get(), settings, targets).__dict__

    @app.task(name=WATCH_NIGHTLY, ignore_result=True)  # type: ignore[untyped-decorator]
    def watch_nightly_task() -> list[str]:
        """Record a notification for each nightly set that has no run for the last night the cron fired."""
        return watch_nightly(sessions.get(), settings, fields, dt.datetime.now(dt.UTC))


def beat_entry(settings: Settings) -> dict[str, dict[str, Any]]:
    """The nightly watch always (its notifications wait in the outbox); delivery when targets are set."""
    entries: dict[str, dict[str, Any]] = {
        "budgetq-watch-nightly": {
            "task": WATCH_NIGHTLY,
            "schedule": WATCH_EVERY_S,
            "options": {"queue": SCHEDULER_QUEUE, "expires": WATCH_EVERY_S},
        }
    }
    if settings.notify_urls is not None:
        entries["budgetq-deliver-notifications"] = {
            "task": DELIVER_NOTIFICATIONS,
            "schedule": settings.notify_poll_s,
            "options": {"queue": SCHEDULER_QUEUE, "expires": settings.notify_poll_s * 3},
        }
    return entries
