"""Reprocess selectors: one option at a time, ids as numbers, a JSON round trip for tasks and runs."""

from __future__ import annotations

import pytest

from budgetq.domain.selector import Selector, SelectorKind, from_options
from budgetq.errors import SelectorError


@pytest.mark.parametrize(
    ("failed_only", "issues", "priority", "expected"),
    [
        (False, None, None, Selector()),
        (True, None, None, Selector(SelectorKind.FAILED)),
        (False, "12, 14,12,", None, Selector(SelectorKind.ISSUES, (12, 14))),
        (False, None, 5, Selector(SelectorKind.PRIORITY, priority=5)),
    ],
)
def test_the_options_name_one_selection(
    failed_only: bool, issues: str | None, priority: int | None, expected: Selector
) -> None:
    assert from_options(failed_only, issues, priority) == expected


@pytest.mark.parametrize(
    ("failed_only", "issues", "priority", "message"),
    [
        (True, "1", None, "not --failed-only and --issues"),
        (False, "1,x", None, "issue id 'x' is not a number"),
        (False, " , ", None, "at least one issue id"),
        (False, None, 7, "priority 7 is not one of 15, 10, 5, 1"),
    ],
)
def test_malformed_options_are_refused_with_what_to_do(
    failed_only: bool, issues: str | None, priority: int | None, message: str
) -> None:
    with pytest.raises(SelectorError, match=message):
        from_options(failed_only, issues, priority)


@pytest.mark.parametrize(
    "selector",
    [
        Selector(),
        Selector(SelectorKind.UNANSWERED),
        Selector(SelectorKind.ISSUES, (3, 1)),
        Selector(SelectorKind.PRIORITY, priority=10),
    ],
)
def test_a_selector_survives_a_json_round_trip(selector: Selector) -> None:
    assert Selector.from_json(selector.to_json()) == selector


def test_json_with_an_unknown_kind_is_refused() -> None:
    with pytest.raises(SelectorError, match="unknown selector kind 'latest'"):
        Selector.from_json({"kind": "latest"})
