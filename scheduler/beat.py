"""The scheduler's beat schedule: each entry is a function of the settings, listed in ``ENTRIES``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from budgetq.adapters.queue.celery_app import PLAN_NIGHTLY, SCHEDULER_QUEUE
from budgetq.settings import Settings
from scheduler import message_batches, notifications, reaper
from scheduler.cron import parse_cron

BeatEntries = dict[str, dict[str, Any]]

# A nightly planning message not picked up within this long is dropped rather than run the next day.
NIGHTLY_EXPIRES_S = 12 * 3600


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
    notifications.beat_entry,
)


def schedule(settings: Settings) -> BeatEntries:
    """The whole beat schedule: every entry of ``ENTRIES``."""
    merged: BeatEntries = {}
    for entry in ENTRIES:
        merged.update(entry(settings))
    return merged
