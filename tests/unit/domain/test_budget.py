"""The seed's TokenBudget (its own tests, verbatim) and the per-call window guard."""

from __future__ import annotations

import pytest

from budgetq import TokenBudget
from budgetq.domain.budget import budget_error, check_call, ensure_affordable, guard_limit, utilization
from budgetq.errors import BudgetExceededError, ConfigurationError


class TestTokenBudget:
    """Test CEMAF token budgeting."""

    def test_creates_budget_with_75_percent_guard(self) -> None:
        """
        GIVEN: Budget with 200K max tokens
        WHEN: Check available tokens
        THEN: Only 75% (150K) are available due to safety guard
        """
        budget = TokenBudget(max_tokens=200_000)

        assert budget.max_tokens == 200_000
        assert budget.safe_utilization == 0.75
        assert budget.available_tokens == 150_000  # 75% of 200K
        assert budget.utilization_percentage == 0.0

    def test_tracks_token_consumption(self) -> None:
        """
        GIVEN: Budget with 100K tokens
        WHEN: Consume 30K tokens
        THEN: Available reduces to 45K (75K safe limit - 30K used)
        """
        budget = TokenBudget(max_tokens=100_000)

        budget.consume(30_000)

        assert budget.used_tokens == 30_000
        assert budget.available_tokens == 45_000  # 75K - 30K
        assert budget.utilization_percentage == 30.0

    def test_prevents_budget_overflow(self) -> None:
        """
        GIVEN: Budget with 10K tokens (7.5K safe limit)
        WHEN: Check if can afford 8K tokens
        THEN: Returns False (exceeds safe limit)
        """
        budget = TokenBudget(max_tokens=10_000)

        can_afford = budget.can_afford(8_000)

        assert can_afford is False
        assert budget.available_tokens == 7_500


class TestBudgetError:
    def test_the_message_keeps_the_seeds_wording_and_numbers(self) -> None:
        # Given a 1000-token budget, a quarter of it already used
        budget = TokenBudget(max_tokens=1000)
        budget.consume(250)

        # When an operation of ~900 tokens is refused
        error = budget_error(budget, 900)

        # Then the message says what was needed, what was left and the utilization, then advice
        assert isinstance(error, BudgetExceededError)
        assert str(error).startswith(
            "Operation requires ~900 tokens, but only 500 available (current utilization: 25.0%)"
        )
        assert "split the batch" in str(error)

    def test_ensure_affordable_passes_exactly_at_the_limit_and_raises_one_past_it(self) -> None:
        # Given the seed's small budget with 750 tokens available
        budget = TokenBudget(max_tokens=1000)

        # When asking for exactly 750, then nothing is raised
        ensure_affordable(budget, 750)

        # When asking for 751, then the seed's error is raised
        with pytest.raises(BudgetExceededError, match="only 750 available"):
            ensure_affordable(budget, 751)

    def test_ensure_affordable_does_not_consume(self) -> None:
        # Given a budget, when a check passes, then nothing is used up
        budget = TokenBudget(max_tokens=1000)
        ensure_affordable(budget, 100)
        assert budget.used_tokens == 0


class TestGuardLimit:
    @pytest.mark.parametrize(
        ("window", "safe", "expected"),
        [(200_000, 0.75, 150_000), (1_000_000, 0.75, 750_000), (1000, 0.75, 750), (999, 0.75, 749)],
    )
    def test_guard_limit_is_the_truncated_share_of_the_window(
        self, window: int, safe: float, expected: int
    ) -> None:
        # Given a window and a safe share, when the limit is computed, then it matches TokenBudget's
        fresh = TokenBudget(max_tokens=window, safe_utilization=safe)
        assert guard_limit(window, safe) == expected == fresh.available_tokens

    @pytest.mark.parametrize(("window", "safe"), [(0, 0.75), (-1, 0.75), (1000, 0.0), (1000, 1.5)])
    def test_guard_limit_refuses_a_nonsense_window_or_share(self, window: int, safe: float) -> None:
        with pytest.raises(ConfigurationError):
            guard_limit(window, safe)


class TestCheckCall:
    def test_a_call_that_fits_under_the_guard_passes(self) -> None:
        # Given a 200K window at 75%, when input + max_tokens is exactly 150K, then it passes
        check_call(input_tokens=142_000, max_tokens=8_000, context_window=200_000, safe_utilization=0.75)

    def test_a_call_one_token_over_the_guard_is_refused_with_the_seeds_message(self) -> None:
        # Given a 200K window at 75%, when input + max_tokens is 150,001
        with pytest.raises(BudgetExceededError) as exc_info:
            check_call(input_tokens=142_001, max_tokens=8_000, context_window=200_000, safe_utilization=0.75)

        # Then the message names the need, what a fresh window allows, and 0% utilization
        message = str(exc_info.value)
        assert "requires ~150001 tokens" in message
        assert "only 150000 available" in message
        assert "(current utilization: 0.0%)" in message

    def test_the_seeds_prompt_of_3200_chars_is_refused_on_a_1000_token_window(self) -> None:
        # Given the seed's scenario: ~800 input tokens and max_tokens=100 on a 1000-token window
        with pytest.raises(BudgetExceededError) as exc_info:
            check_call(input_tokens=800, max_tokens=100, context_window=1000, safe_utilization=0.75)

        # Then the seed's own assertions hold
        assert "only 750 available" in str(exc_info.value)
        assert "utilization" in str(exc_info.value)

    def test_negative_token_counts_are_a_programming_error(self) -> None:
        with pytest.raises(ValueError):
            check_call(input_tokens=-1, max_tokens=10, context_window=1000, safe_utilization=0.75)


class TestUtilization:
    def test_utilization_is_the_fraction_of_the_window_planned_for(self) -> None:
        # Given 142K input and 8K output on a 200K window, then it plans for 75% of it
        assert utilization(142_000, 8_000, 200_000) == pytest.approx(0.75)

    def test_utilization_of_an_empty_call_is_zero(self) -> None:
        assert utilization(0, 0, 200_000) == 0.0

    def test_utilization_refuses_an_empty_window(self) -> None:
        with pytest.raises(ConfigurationError):
            utilization(1, 1, 0)
