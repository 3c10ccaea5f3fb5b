"""The scheduler's beat schedule: the nightly planning on a 5-field cron line from the settings."""

from __future__ import annotations

import datetime as dt

import pytest

from budgetq.adapters.queue.celery_app import PLAN_NIGHTLY, SCHEDULER_QUEUE
from budgetq.errors import ConfigurationError
from budgetq.services.nightly import parse_night
from budgetq.settings import Settings
from scheduler.beat import parse_cron, schedule


def test_the_nightly_planning_runs_on_the_configured_cron_line() -> None:
    # Given a cron line for 03:30 UTC on weekdays
    entries = schedule(Settings(nightly_cron="30 3 * * 1-5"))

    # Then PLAN_NIGHTLY is sent then, for "today", to the scheduler's queue
    entry = entries["budgetq-plan-nightly"]
    assert entry["task"] == PLAN_NIGHTLY and entry["args"] == ["today"]
    assert entry["options"]["queue"] == SCHEDULER_QUEUE
    assert entry["schedule"].minute == {30} and entry["schedule"].hour == {3}
    assert entry["schedule"].day_of_week == {1, 2, 3, 4, 5}


@pytest.mark.parametrize(
    ("line", "message"), [("0 2 * *", "has 4 fields"), ("0 25 * * *", "not a valid cron")]
)
def test_a_malformed_cron_line_is_a_configuration_error(line: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_cron(line)


def test_the_night_is_today_or_an_iso_date() -> None:
    today = dt.date(2026, 11, 29)
    assert parse_night("today", today) == today
    assert parse_night("2026-01-02", today) == dt.date(2026, 1, 2)
    with pytest.raises(ConfigurationError, match="neither 'today' nor a date"):
        parse_night("tomorrow", today)
