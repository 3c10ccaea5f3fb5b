"""Priority bin-packing: order, limits, oversize, the lower bound and packing quality."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budgetq.domain.packing import (
    PackItem,
    PackLimits,
    PackPlan,
    PlannedBatch,
    derive_limits,
    lower_bound,
    pack,
)
from budgetq.errors import ConfigurationError

SEED_LIMITS = derive_limits(
    context_window=200_000,
    safe_utilization=0.75,
    model_max_output=64_000,
    max_tokens=8192,
    fixed_input_tokens=1500,
    max_items=100,
)


def assert_valid_plan(items: Sequence[PackItem], limits: PackLimits, plan: PackPlan) -> None:
    """Every item once, every batch within every limit, and the queue in priority order."""
    by_id = {item.issue_id: item for item in items}
    placed = [issue_id for batch in plan.batches for issue_id in batch.issue_ids]
    placed += [o.issue_id for o in plan.oversize]
    assert sorted(placed) == sorted(by_id)
    for batch in plan.batches:
        members = [by_id[i] for i in batch.issue_ids]
        assert members, "a batch is never empty"
        assert batch.input_tokens == sum(m.input_tokens for m in members) <= limits.input_limit
        assert batch.output_tokens == sum(m.output_tokens for m in members) <= limits.output_limit
        assert limits.max_items is None or len(members) <= limits.max_items
        assert batch.priority == max(m.priority for m in members)
    queue = [batch.priority for batch in plan.batches]
    assert queue == sorted(queue, reverse=True), "a batch of lower priority is queued before a higher one"
    for oversize in plan.oversize:
        item = by_id[oversize.issue_id]
        assert item.input_tokens > limits.input_limit or item.output_tokens > limits.output_limit


def uniform_long_items(n: int, limits: PackLimits, rng: random.Random) -> list[PackItem]:
    """Long issues, lengths uniform from 1% to 60% of the input limit."""
    low, high = limits.input_limit // 100, int(0.6 * limits.input_limit)
    return [PackItem(i, rng.choice([15, 10, 5, 1]), rng.randint(low, high), 80) for i in range(n)]


limits_strategy = st.builds(
    PackLimits,
    input_limit=st.integers(1, 500),
    output_limit=st.integers(1, 300),
    max_items=st.none() | st.integers(1, 12),
)


@st.composite
def item_lists(draw: st.DrawFn) -> list[PackItem]:
    """Items with unique ids, priorities mostly from 15/10/5/1, sizes around the limits."""
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from([15, 10, 5, 1]) | st.integers(-3, 20),
                st.integers(0, 600),
                st.integers(0, 350),
            ),
            max_size=120,
        )
    )
    return [PackItem(i, p, tokens_in, tokens_out) for i, (p, tokens_in, tokens_out) in enumerate(rows)]


@settings(max_examples=300, deadline=None)
@given(items=item_lists(), limits=limits_strategy)
def test_every_item_is_packed_exactly_once_or_reported_oversize(
    items: list[PackItem], limits: PackLimits
) -> None:
    # Given any items and any limits
    # When they are packed
    plan = pack(items, limits)
    # Then each is in one batch or oversize, batches obey every limit and the queue runs by priority
    assert_valid_plan(items, limits, plan)


@st.composite
def long_item_lists(draw: st.DrawFn) -> tuple[list[PackItem], PackLimits]:
    """Items up to 60% of the input limit, where input binds and the decreasing fallback runs."""
    limits = PackLimits(
        input_limit=draw(st.integers(100, 1000)),
        output_limit=draw(st.integers(50, 100)),
        max_items=draw(st.none() | st.integers(3, 6)),
    )
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from([15, 10, 5, 1]),
                st.integers(limits.input_limit // 100, limits.input_limit * 6 // 10),
                st.integers(0, 3),
            ),
            min_size=50,
            max_size=300,
        )
    )
    return [
        PackItem(i, p, tokens_in, tokens_out) for i, (p, tokens_in, tokens_out) in enumerate(rows)
    ], limits


@settings(max_examples=150, deadline=None)
@given(case=long_item_lists())
def test_long_items_are_packed_exactly_once_within_every_limit(
    case: tuple[list[PackItem], PackLimits],
) -> None:
    # Given long items, where plain first-fit often misses the bound and the decreasing fallback runs
    items, limits = case
    # When they are packed
    plan = pack(items, limits)
    # Then the plan keeps every promise all the same
    assert_valid_plan(items, limits, plan)


@settings(max_examples=200, deadline=None)
@given(items=item_lists(), limits=limits_strategy)
def test_the_plan_never_uses_fewer_batches_than_the_lower_bound(
    items: list[PackItem], limits: PackLimits
) -> None:
    # Given any items and limits
    # When they are packed
    plan = pack(items, limits)
    # Then the lower bound really is a lower bound
    assert len(plan.batches) >= lower_bound(items, limits)


def test_higher_priorities_are_queued_before_lower_ones() -> None:
    # Given issues of every priority arriving low priority first, each alone filling a call
    limits = PackLimits(input_limit=100, output_limit=1000, max_items=None)
    items = [PackItem(i, p, 100, 10) for i, p in enumerate([1, 5, 10, 15, 1, 15])]
    # When they are packed
    plan = pack(items, limits)
    # Then the batches run 15, 15, 10, 5, 1, 1, in arrival order within a priority
    assert [b.priority for b in plan.batches] == [15, 15, 10, 5, 1, 1]
    assert [b.issue_ids for b in plan.batches] == [(3,), (5,), (2,), (1,), (0,), (4,)]


def test_a_batch_is_topped_up_with_lower_priority_issues_it_has_room_for() -> None:
    # Given one critical issue and three medium ones, three issues per call
    limits = PackLimits(input_limit=1000, output_limit=1000, max_items=3)
    items = [PackItem(1, 5, 10, 10), PackItem(2, 15, 10, 10), PackItem(3, 5, 10, 10), PackItem(4, 5, 10, 10)]
    # When they are packed
    plan = pack(items, limits)
    # Then the critical issue leads the first batch, topped up with the first medium issues
    assert plan.batches == (
        PlannedBatch(priority=15, issue_ids=(2, 1, 3), input_tokens=30, output_tokens=30),
        PlannedBatch(priority=5, issue_ids=(4,), input_tokens=10, output_tokens=10),
    )


def test_an_issue_too_long_for_any_call_is_reported_oversize_with_the_numbers() -> None:
    # Given one issue longer than a call allows among issues that fit
    limits = PackLimits(input_limit=7100, output_limit=8192, max_items=100)
    items = [PackItem(1, 10, 100, 80), PackItem(2, 15, 9000, 80), PackItem(3, 5, 100, 80)]
    # When they are packed
    plan = pack(items, limits)
    # Then it is reported with its numbers and a remedy, and the others are packed
    (oversize,) = plan.oversize
    assert (oversize.issue_id, oversize.priority, oversize.input_tokens) == (2, 15, 9000)
    assert "needs 9,000 input tokens but a call allows 7,100" in oversize.reason
    assert "shorten the issue text" in oversize.reason
    assert [b.issue_ids for b in plan.batches] == [(1, 3)]


def test_an_issue_expecting_more_output_than_max_tokens_is_reported_oversize() -> None:
    # Given an issue whose expected answer exceeds max_tokens
    limits = PackLimits(input_limit=10_000, output_limit=8192, max_items=None)
    # When it is packed
    plan = pack([PackItem(7, 10, 50, 9000)], limits)
    # Then it is oversize, with the output figures
    assert plan.batches == ()
    assert "expects 9,000 output tokens but max_tokens allows 8,192" in plan.oversize[0].reason


def test_an_item_that_exactly_fills_a_call_is_not_oversize() -> None:
    # Given an issue using exactly the input and output limits
    limits = PackLimits(input_limit=500, output_limit=200, max_items=1)
    # When it is packed
    plan = pack([PackItem(1, 1, 500, 200)], limits)
    # Then it gets a batch of its own
    assert plan.oversize == () and plan.batches[0].fill(limits) == 1.0


def test_no_items_give_an_empty_plan() -> None:
    # Given nothing to pack / When packing / Then there is nothing to queue
    assert pack([], SEED_LIMITS) == PackPlan(batches=(), oversize=())


def test_repeated_ids_and_negative_estimates_are_refused() -> None:
    # Given items with a repeated id, and an item with a negative estimate
    # When they are packed / Then packing refuses, naming the issue
    with pytest.raises(ValueError, match="issue 1 appears twice"):
        pack([PackItem(1, 10, 5, 5), PackItem(1, 5, 5, 5)], SEED_LIMITS)
    with pytest.raises(ValueError, match="issue 2 has a negative"):
        pack([PackItem(2, 10, -5, 5)], SEED_LIMITS)


def test_derive_limits_keeps_input_plus_max_tokens_within_the_guard() -> None:
    # Given a 200k window at 75%, 8,192 output tokens and a 1,500-token fixed prompt
    limits = SEED_LIMITS
    # When / Then a full batch plus the fixed prompt and max_tokens uses exactly 75% of the window
    assert limits.input_limit == 150_000 - 8192 - 1500
    assert limits.input_limit + 1500 + limits.output_limit <= 0.75 * 200_000
    assert (limits.output_limit, limits.max_items) == (8192, 100)


def test_derive_limits_clamps_max_tokens_to_the_models_maximum_output() -> None:
    # Given max_tokens above what the model can produce
    limits = derive_limits(
        context_window=200_000,
        safe_utilization=0.75,
        model_max_output=4096,
        max_tokens=8192,
        fixed_input_tokens=1000,
        max_items=None,
    )
    # Then the output limit is the model's, and the input limit leaves room for it only
    assert limits.output_limit == 4096
    assert limits.input_limit == 150_000 - 4096 - 1000


def test_derive_limits_refuses_a_call_with_no_room_for_issues() -> None:
    # Given a window too small for max_tokens and the fixed prompt
    # When the limits are derived / Then the error gives the numbers
    with pytest.raises(ConfigurationError, match=r"7,500 tokens.*max_tokens takes 8,192"):
        derive_limits(
            context_window=10_000,
            safe_utilization=0.75,
            model_max_output=64_000,
            max_tokens=8192,
            fixed_input_tokens=500,
            max_items=None,
        )


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (PackLimits(input_limit=100, output_limit=10_000, max_items=None), 30),  # input binds
        (PackLimits(input_limit=10_000, output_limit=100, max_items=None), 16),  # output binds
        (PackLimits(input_limit=10_000, output_limit=10_000, max_items=7), 15),  # item count binds
    ],
)
def test_lower_bound_is_the_tightest_of_input_output_and_item_count(
    limits: PackLimits, expected: int
) -> None:
    # Given 100 issues of 30 input and 16 output tokens
    items = [PackItem(i, 10, 30, 16) for i in range(100)]
    # When / Then the bound is the largest of the three ceilings
    assert lower_bound(items, limits) == expected


def test_lower_bound_leaves_oversize_issues_out() -> None:
    # Given two small issues and one no call can carry
    limits = PackLimits(input_limit=100, output_limit=100, max_items=None)
    items = [PackItem(1, 10, 60, 1), PackItem(2, 10, 60, 1), PackItem(3, 10, 1000, 1)]
    # When / Then only the packable ones count
    assert lower_bound(items, limits) == 2


def test_fill_is_the_tightest_dimension_of_a_batch() -> None:
    # Given a batch at 50% of input, 25% of output and 80% of the item count
    limits = PackLimits(input_limit=100, output_limit=100, max_items=5)
    batch = PlannedBatch(priority=10, issue_ids=(1, 2, 3, 4), input_tokens=50, output_tokens=25)
    # When / Then its fill is 80%
    assert batch.fill(limits) == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("input_limit", "output_limit", "max_items"), [(0, 10, None), (10, 0, None), (10, 10, 0)]
)
def test_limits_without_room_are_refused(input_limit: int, output_limit: int, max_items: int | None) -> None:
    # Given a limit of zero / When the limits are made / Then they are refused
    with pytest.raises(ConfigurationError):
        PackLimits(input_limit=input_limit, output_limit=output_limit, max_items=max_items)


def test_the_seed_scenario_is_packed_within_one_percent_of_the_lower_bound() -> None:
    # Given the seed's 3,824 issues of about 40 tokens (2,231 at 10, 1,304 at 5, 289 at 1), 80 output each
    rng = random.Random(3824)
    priorities = [10] * 2231 + [5] * 1304 + [1] * 289
    rng.shuffle(priorities)
    items = [PackItem(i, p, rng.randint(20, 60) + 40, 80) for i, p in enumerate(priorities)]
    # When they are packed under the default limits
    plan = pack(items, SEED_LIMITS)
    # Then the plan is valid and within the bound plus 1%
    assert_valid_plan(items, SEED_LIMITS, plan)
    bound = lower_bound(items, SEED_LIMITS)
    assert bound == 39
    assert len(plan.batches) <= bound + math.ceil(bound / 100)


def test_long_issues_of_mixed_sizes_are_packed_within_one_percent_of_the_lower_bound() -> None:
    # Given 3,000 issues uniform up to 60% of the input limit, where plain first-fit is over 1%
    limits = PackLimits(input_limit=SEED_LIMITS.input_limit, output_limit=8192, max_items=None)
    items = uniform_long_items(3000, limits, random.Random(60))
    # When they are packed
    plan = pack(items, limits)
    # Then the plan is valid and within the bound plus 1%
    assert_valid_plan(items, limits, plan)
    bound = lower_bound(items, limits)
    assert len(plan.batches) <= bound + math.ceil(bound / 100)


def test_short_issues_among_long_ones_are_packed_within_one_percent_of_the_lower_bound() -> None:
    # Given 20,000 issues, one in ten up to 60% of the input limit, at most 100 per call
    rng = random.Random(10)
    items = []
    for i in range(20_000):
        long = rng.random() < 0.1
        size = rng.randint(1000, int(0.6 * SEED_LIMITS.input_limit)) if long else rng.randint(45, 400)
        items.append(PackItem(i, rng.choice([15, 10, 5, 1]), size, 80))
    # When they are packed
    plan = pack(items, SEED_LIMITS)
    # Then the plan is valid and within the bound plus 1%
    assert_valid_plan(items, SEED_LIMITS, plan)
    bound = lower_bound(items, SEED_LIMITS)
    assert len(plan.batches) <= bound + math.ceil(bound / 100)
