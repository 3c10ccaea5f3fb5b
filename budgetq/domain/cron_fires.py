"""When a cron schedule last fired before a given time: the nightly watch asks whether the run of
that night started. Pure: the schedule comes as the sets of values a cron line allows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

SEARCH_DAYS = 400  # a schedule that allows no day in this long is treated as never firing


@dataclass(frozen=True)
class CronFields:
    """The values a cron line allows; days of week count from 0 = Sunday, as cron's do."""

    minutes: Collection[int]
    hours: Collection[int]
    days_of_month: Collection[int]
    months: Collection[int]
    days_of_week: Collection[int]


def _day_allowed(fields: CronFields, day: dt.date) -> bool:
    weekday = (day.weekday() + 1) % 7
    return day.month in fields.months and day.day in fields.days_of_month and weekday in fields.days_of_week


def last_fire(fields: CronFields, now: dt.datetime) -> dt.datetime | None:
    """The latest time at or before ``now`` (aware, UTC) that the schedule fires; None if none is found."""
    for back in range(SEARCH_DAYS):
        day = (now - dt.timedelta(days=back)).date()
        if not _day_allowed(fields, day):
            continue
        times = sorted(
            (
                dt.datetime.combine(day, dt.time(h, m), tzinfo=dt.UTC)
                for h in fields.hours
                for m in fields.minutes
            ),
            reverse=True,
        )
        for at in times:
            if at <= now:
                return at
    return None
