"""The spend cap keeps the highest priorities that fit and defers the rest, each with a reason."""

from __future__ import annotations

from decimal import Decimal

import pytest

from budgetq.domain.deferral import CostedIssue, defer_to_cap


def _issues(*specs: tuple[int, int, str]) -> list[CostedIssue]:
    return [CostedIssue(issue_id, priority, Decimal(cost)) for issue_id, priority, cost in specs]


def test_a_set_within_the_cap_defers_nothing() -> None:
    deferral = defer_to_cap(_issues((1, 5, "1"), (2, 10, "2")), Decimal("3"))
    assert deferral.kept == (2, 1) and deferral.deferred == () and deferral.kept_cost_usd == Decimal(3)


def test_the_lowest_priorities_are_deferred_first() -> None:
    # Given issues of every priority, in mixed arrival order, each costing $1
    issues = _issues((1, 1, "1"), (2, 15, "1"), (3, 5, "1"), (4, 10, "1"), (5, 15, "1"))

    # When the cap covers three of them
    deferral = defer_to_cap(issues, Decimal("3"))

    # Then both priority-15 issues and the priority-10 one are kept, the 5 and the 1 deferred
    assert deferral.kept == (2, 5, 4)
    assert [(d.issue_id, d.priority) for d in deferral.deferred] == [(3, 5), (1, 1)]


def test_arrival_order_decides_within_a_priority() -> None:
    deferral = defer_to_cap(_issues((9, 10, "1"), (3, 10, "1"), (7, 10, "1")), Decimal("2"))
    assert deferral.kept == (9, 3)
    assert [d.issue_id for d in deferral.deferred] == [7]


def test_no_lower_priority_is_kept_once_a_higher_one_was_deferred() -> None:
    # Given an expensive priority-10 issue and a cheap priority-5 one that alone would still fit
    issues = _issues((1, 10, "5"), (2, 5, "0.5"))

    # When the cap is $1
    deferral = defer_to_cap(issues, Decimal("1"))

    # Then both wait: keeping the cheap one would put a lower priority ahead of a higher one
    assert deferral.kept == ()
    assert [d.issue_id for d in deferral.deferred] == [1, 2]


def test_the_overhead_is_paid_before_any_issue() -> None:
    deferral = defer_to_cap(_issues((1, 10, "1"), (2, 10, "1")), Decimal("2"), overhead_usd=Decimal("0.5"))
    assert deferral.kept == (1,) and deferral.kept_cost_usd == Decimal("1.5")


def test_the_reason_gives_the_cap_what_was_kept_and_the_first_issue_that_did_not_fit() -> None:
    deferral = defer_to_cap(_issues((1, 15, "0.4"), (2, 10, "0.7"), (3, 1, "0.1")), Decimal("1"))
    reason = deferral.deferred[0].reason
    assert "spend cap of $1.00" in reason
    assert "the 1 higher-priority issues kept are expected to cost $0.4000" in reason
    assert "priority-10 issue 2 ($0.700000)" in reason
    assert {d.reason for d in deferral.deferred} == {reason}


def test_a_zero_cap_defers_everything_and_a_negative_one_is_refused() -> None:
    assert defer_to_cap(_issues((1, 10, "0.01")), Decimal(0)).kept == ()
    with pytest.raises(ValueError, match="spend cap"):
        defer_to_cap([], Decimal("-1"))
