"""The seed's TokenBudget and the per-call window guard built on it.

``TokenBudget`` is the user's API, kept exactly as the seed wrote it (mutable on purpose:
``consume`` updates it in place). The helpers below are pure: they take token counts and
settings and either return or raise ``BudgetExceededError`` before any network call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from budgetq.errors import BudgetExceededError, ConfigurationError

_ADVICE = "; split the batch or lower max_tokens"


@dataclass
class TokenBudget:
    """Token budget for LLM calls with CEMAF 75% utilization guard."""

    max_tokens: int  # Maximum tokens allowed (e.g., 200K for Sonnet 4)
    used_tokens: int = 0  # Tokens used so far
    safe_utilization: float = 0.75  # CEMAF best practice (Anthropic recommendation)

    @property
    def available_tokens(self) -> int:
        """Get remaining tokens respecting 75% safety margin."""
        safe_max = int(self.max_tokens * self.safe_utilization)
        return max(0, safe_max - self.used_tokens)

    @property
    def utilization_percentage(self) -> float:
        """Get current utilization as percentage."""
        return (self.used_tokens / self.max_tokens) * 100 if self.max_tokens > 0 else 0

    def can_afford(self, estimated_tokens: int) -> bool:
        """Check if we can afford this operation within budget."""
        return self.available_tokens >= estimated_tokens

    def consume(self, tokens: int) -> None:
        """Consume tokens from budget."""
        self.used_tokens += tokens


def _check_window(context_window: int, safe_utilization: float) -> None:
    if context_window <= 0:
        raise ConfigurationError(
            f"context_window must be a positive token count, got {context_window}; "
            "check the model entry in budgetq/domain/catalog.py"
        )
    if not 0 < safe_utilization <= 1:
        raise ConfigurationError(
            f"safe_utilization must be in (0, 1], got {safe_utilization}; "
            "set BUDGETQ_SAFE_UTILIZATION to e.g. 0.75"
        )


def guard_limit(context_window: int, safe_utilization: float) -> int:
    """The most tokens (input + max_tokens) one call may plan for: ``int(window * safe_utilization)``."""
    _check_window(context_window, safe_utilization)
    return int(context_window * safe_utilization)


def budget_error(budget: TokenBudget, estimated_total: int) -> BudgetExceededError:
    """Build the seed's BudgetExceededError for an operation of ``estimated_total`` tokens."""
    return BudgetExceededError(
        f"Operation requires ~{estimated_total} tokens, "
        f"but only {budget.available_tokens} available "
        f"(current utilization: {budget.utilization_percentage:.1f}%)" + _ADVICE
    )


def ensure_affordable(budget: TokenBudget, estimated_total: int) -> None:
    """Raise the seed's BudgetExceededError unless ``budget`` can afford ``estimated_total`` tokens."""
    if not budget.can_afford(estimated_total):
        raise budget_error(budget, estimated_total)


def check_call(input_tokens: int, max_tokens: int, context_window: int, safe_utilization: float) -> None:
    """Per-call window guard: raise BudgetExceededError unless input + max_tokens fit under the guard."""
    if input_tokens < 0 or max_tokens < 0:
        raise ValueError(f"token counts must be >= 0, got input={input_tokens}, max_tokens={max_tokens}")
    _check_window(context_window, safe_utilization)
    # Each call starts from an empty window, so the guard is a fresh budget, not a shared one.
    budget = TokenBudget(max_tokens=context_window, safe_utilization=safe_utilization)
    ensure_affordable(budget, input_tokens + max_tokens)


def utilization(input_tokens: int, max_tokens: int, context_window: int) -> float:
    """Fraction (0..1 when it fits) of the context window that input + max_tokens would occupy."""
    if context_window <= 0:
        raise ConfigurationError(
            f"context_window must be a positive token count, got {context_window}; "
            "check the model entry in budgetq/domain/catalog.py"
        )
    return (input_tokens + max_tokens) / context_window


def billable_input(estimated: int, counted: int | None, room: int, margin: float) -> int:
    """The most input tokens a call can bill, what its spend reservation covers: the exact count when
    known; else the estimate with the count margin's headroom (an estimate is trusted to within
    ``margin``, closer to the guard it is counted), never more than the ``room`` the guard leaves."""
    if counted is not None:
        return counted
    if not 0 < margin <= 1:
        raise ValueError(f"margin must be in (0, 1], got {margin}")
    return max(estimated, min(room, math.ceil(estimated / margin)))


def needs_exact_count(
    estimated_input: int, max_tokens: int, limit: int, margin: float, *, confirmed: bool
) -> bool:
    """Whether to ask ``messages.count_tokens`` before a call: the estimate plus ``max_tokens`` is
    within ``margin`` of the guard ``limit``, or provenance has not yet confirmed the calibration."""
    if not 0 < margin <= 1:
        raise ValueError(f"margin must be in (0, 1], got {margin}")
    return not confirmed or estimated_input + max_tokens > margin * limit
