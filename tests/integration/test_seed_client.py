"""The seed's example usage, run against the local stand-in through the real SDK instead of the live API."""

from __future__ import annotations

from budgetq import BudgetAwareLLMClient, ReplayMode, TokenBudget


class TestSeedClientEndToEnd:
    """The seed's example usage, run against the local stand-in instead of the live API."""

    async def test_a_call_within_budget_reports_cost_and_consumes_the_budget(self, standin: object) -> None:
        # Given a 200K budget and a client pointed at the stand-in
        budget = TokenBudget(max_tokens=200_000)
        client = BudgetAwareLLMClient(
            budget=budget,
            mode=ReplayMode.MOCK_TOOLS,
            base_url=standin.url,  # type: ignore[attr-defined]
        )

        # When a small prompt is sent
        result = await client.call_with_retry(prompt="Analyze these data quality issues...", max_tokens=2000)

        # Then the budget holds what the call billed, and the call has a request id and a cost
        assert budget.used_tokens == result.billed_input_tokens + result.usage.output_tokens > 0
        assert result.request_id
        assert result.cost_usd > 0
        assert budget.utilization_percentage < 75
