"""The scheduler's beat schedule: each entry is a function of the settings, listed in ``ENTRIES``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.schedules import crontab

from budgetq.adapters.queue.celery_app import PLAN_NIGHTLY, SCHEDULER_QUEUE
from budgetq.errors import ConfigurationError
from budgetq.settings import Settings
from scheduler import message_batches, reaper

BeatEntries = dict[str, dict[str, Any]]

# A nightly planning message not picked up within this long is dropped rather than run the next day.
NIGHTLY_EXPIRES_S = 12 * 3600


def parse_cron(expression: str) -> crontab:
    """A crontab from a 5-field cron string (minute hour day-of-month month day-of-week), in UTC."""
    fields = expression.split()
    if len(fields) != 5:
        raise ConfigurationError(
            f"BUDGETQ_NIGHTLY_CRON={expression!r} has {len(fields)} fields; it needs 5 "
            "(minute hour day-of-month month day-of-week), e.g. '0 2 * * *' for 02:00 UTC"
        )
    minute, hour, day_of_month, month, day_of_week = fields
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month,
            day_of_week=day_of_week,
        )
    except Exception as exc:  # noqa: BLE001 - celery raises ValueError or its own ParseException
        raise ConfigurationError(
            f"BUDGETQ_NIGHTLY_CRON={expression!r} is not a valid cron line: {exc}"
        ) from exc


def nightly_entry(settings: Settings) -> BeatEntries:
    """PLAN_NIGHTLY on ``nightly_cron``, for the night of the day it runs (UTC)."""
    return {
        "budgetq-plan-nightly": {
            "task": PLAN_NIGHTLY,
            "schedule": parse_cron(settings.nightly_cron),
            "args": ["today"],
            "options": {"queue": SCHEDULER_QUEUE, "expires": NIGHTLY_EXPIRES_S},
        }
    }


# Add a module's entry function here to schedule its task (one line per entry).
ENTRIES: tuple[Callable[[Settings], BeatEntries], ...] = (
    nightly_entry,
    message_batches.beat_entry,
    reaper.beat_entry,
)


def schedule(settings: Settings) -> BeatEntries:
    """The whole beat schedule: every entry of ``ENTRIES``."""
    merged: BeatEntries = {}
    for entry in ENTRIES:
        merged.update(entry(settings))
    return merged
