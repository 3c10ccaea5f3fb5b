"""The nightly cron line of the settings as Celery's crontab, and as the values the nightly watch checks."""

from __future__ import annotations

from celery.schedules import crontab

from budgetq.domain.cron_fires import CronFields
from budgetq.errors import ConfigurationError


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


def cron_fields(schedule: crontab) -> CronFields:
    """The values ``schedule`` allows, for the pure ``last_fire``."""
    return CronFields(
        minutes=frozenset(schedule.minute),
        hours=frozenset(schedule.hour),
        days_of_month=frozenset(schedule.day_of_month),
        months=frozenset(schedule.month_of_year),
        days_of_week=frozenset(schedule.day_of_week),
    )
