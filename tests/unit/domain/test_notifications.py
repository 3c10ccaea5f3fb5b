"""The pure side of notifications: thresholds, the text people read, retry delays, the last time a
cron line fired, and targets parsed without their URL ever showing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pydantic import SecretStr

from budgetq.adapters.notify.targets import parse_targets
from budgetq.domain.cron_fires import CronFields, last_fire
from budgetq.domain.notifications import (
    EventKind,
    RunSummary,
    TargetKind,
    body_for,
    crossed,
    retry_delay,
    retryable,
    text_of,
)
from budgetq.errors import ConfigurationError
from scheduler.cron import cron_fields, parse_cron


@pytest.mark.parametrize(
    ("spent", "cap", "reached"),
    [
        ("0", "10", ()),
        ("4.99", "10", ()),
        ("5", "10", (50,)),
        ("9.5", "10", (50, 80, 95)),
        ("10", "10", (50, 80, 95, 100)),
        ("12", "10", (50, 80, 95, 100)),
        ("1", None, ()),
        ("1", "0", ()),
    ],
)
def test_thresholds_reached(spent: str, cap: str | None, reached: tuple[int, ...]) -> None:
    assert crossed(Decimal(spent), Decimal(cap) if cap is not None else None) == reached


def test_a_run_summary_reads_as_counts_cost_categories_datasets_and_the_results_command() -> None:
    summary = RunSummary(
        7,
        "warehouse",
        "stopped",
        "spend cap reached",
        {"answered": 3, "reused": 2},
        Decimal("0.5"),
        [("nulls", 3)],
        [("orders", 2)],
    )
    text = text_of(EventKind.RUN_STOPPED, summary.to_json())
    assert text.splitlines() == [
        "budgetq: run 7 of set warehouse stopped: spend cap reached",
        "issues: 3 answered, 2 reused; cost $0.5",
        "top categories: nulls (3)",
        "top datasets: orders (2)",
        "results: budgetq results --run 7",
    ]
    assert body_for(TargetKind.SLACK, 1, "run_stopped", summary.to_json()) == {"text": text}
    generic = body_for(TargetKind.JSON, 1, "run_stopped", summary.to_json())
    assert generic["event"] == "run_stopped" and generic["counts"] == {"answered": 3, "reused": 2}


def test_retry_delays_double_up_to_the_ceiling_and_only_no_answer_408_429_and_5xx_retry() -> None:
    assert [retry_delay(n, 1.0, 5.0, 0.999999) for n in (1, 2, 3, 4)] == pytest.approx([1, 2, 4, 5], rel=1e-3)
    assert retry_delay(1, 1.0, 5.0, 0.0) == 0.5  # never hammering at once
    assert [retryable(s) for s in (None, 408, 429, 500, 503, 400, 401, 404, 410)] == [True] * 5 + [False] * 4


def _fields(line: str) -> CronFields:
    return cron_fields(parse_cron(line))


def test_the_last_fire_of_a_cron_line() -> None:
    at = dt.datetime(2026, 12, 4, 19, 30, tzinfo=dt.UTC)  # a Friday
    assert last_fire(_fields("0 2 * * *"), at) == dt.datetime(2026, 12, 4, 2, 0, tzinfo=dt.UTC)
    assert last_fire(_fields("0 20 * * *"), at) == dt.datetime(2026, 12, 3, 20, 0, tzinfo=dt.UTC)
    assert last_fire(_fields("15 3 * * 1"), at) == dt.datetime(2026, 11, 30, 3, 15, tzinfo=dt.UTC)  # Monday
    assert last_fire(_fields("30 19 * * *"), at) == at
    assert last_fire(_fields("0 0 31 2 *"), at) is None  # February 31st never comes


def test_targets_take_their_kind_from_the_host_or_a_prefix_and_never_show_their_url() -> None:
    slack, mattermost, generic = parse_targets(
        SecretStr(
            "https://hooks.slack.com/services/T/B/secret1, slack+https://chat.example/hooks/secret2 "
            "http://127.0.0.1:8080/secret3"
        )
    )
    assert (slack.kind, mattermost.kind, generic.kind) == (
        TargetKind.SLACK,
        TargetKind.SLACK,
        TargetKind.JSON,
    )
    assert mattermost.url == "https://chat.example/hooks/secret2"
    assert generic.redacted.startswith("json http://127.0.0.1:8080/… (")
    for target in (slack, mattermost, generic):
        assert "secret" not in target.redacted and "secret" not in repr(target)
    assert len({slack.digest, mattermost.digest, generic.digest}) == 3
    with pytest.raises(ConfigurationError, match="target 1 of 1 is not an http"):
        parse_targets(SecretStr("ftp://example.com/x"))
