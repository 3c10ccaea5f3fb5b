"""The pure parts of reporting: `--since` days, report totals and the spend-against-cap line."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import typer

from budgetq.adapters.store.reports import Report
from budgetq.adapters.store.runs import Progress
from budgetq.cli.report import parse_since

TODAY = dt.date(2026, 11, 29)


@pytest.mark.parametrize(
    ("given", "day"),
    [
        ("2026-11-01", dt.date(2026, 11, 1)),
        ("today", TODAY),
        ("Yesterday", dt.date(2026, 11, 28)),
        ("7d", dt.date(2026, 11, 22)),
        ("0d", TODAY),
    ],
)
def test_since_takes_a_date_or_a_day_relative_to_today(given: str, day: dt.date) -> None:
    # Given a --since value, When it is parsed, Then it is that day
    assert parse_since(given, TODAY) == day


@pytest.mark.parametrize("given", ["last tuesday", "2026-13-01", "-3d", ""])
def test_since_refuses_what_is_not_a_day(given: str) -> None:
    # Given a value that names no day, When it is parsed, Then typer reports a bad parameter
    with pytest.raises(typer.BadParameter, match="YYYY-MM-DD"):
        parse_since(given, TODAY)


def test_report_totals_add_up_the_measures_and_leave_the_keys_alone() -> None:
    # Given a report keyed by run id, with a count and a cost
    report = Report(
        columns=("run_id", "attempts", "cost_usd"),
        rows=((7, 3, Decimal("0.100001")), (9, 2, Decimal("0.200002"))),
        measures=("attempts", "cost_usd"),
    )

    # When its totals are taken
    totals = report.totals()

    # Then the measures add up exactly and the run ids are not summed
    assert totals == {"attempts": Decimal(5), "cost_usd": Decimal("0.300003")}


@pytest.mark.parametrize(
    ("cap", "shown"),
    [(None, "$1.2346"), (Decimal("5"), "$1.2346 of $5.00 cap")],
)
def test_progress_shows_spend_against_the_cap_when_there_is_one(cap: Decimal | None, shown: str) -> None:
    # Given a run's progress with some spend, with or without a cap
    progress = Progress(run_id=1, status="running", cost_usd=Decimal("1.23456"), spend_cap_usd=cap)

    # Then the spend line says how much of the cap is used
    assert progress.spend == shown
