"""The seed's client test (its "Testing & Validation" section), unchanged but for the import line."""

from __future__ import annotations

import pytest

from budgetq import BudgetAwareLLMClient, BudgetExceededError, ReplayMode, TokenBudget


class TestBudgetAwareLLMClient:
    """The seed's TestBudgetAwareLLMClient."""

    @pytest.mark.asyncio
    async def test_enforces_token_budget(self) -> None:
        """
        GIVEN: Small budget (1000 tokens, 750 safe limit)
        WHEN: Try to make call requiring 800 tokens
        THEN: Raises BudgetExceededError (respects 75% guard)
        """
        budget = TokenBudget(max_tokens=1000)  # Only 750 available (75%)
        client = BudgetAwareLLMClient(budget=budget, mode=ReplayMode.MOCK_TOOLS)

        # Try to make large call
        with pytest.raises(BudgetExceededError) as exc_info:
            await client.call_with_retry(
                prompt="x" * 3200,  # ~800 tokens (4 chars per token)
                max_tokens=100,
            )

        assert "only 750 available" in str(exc_info.value)
        assert "utilization" in str(exc_info.value)
