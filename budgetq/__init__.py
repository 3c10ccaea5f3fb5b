"""budgetq: a token-budgeted LLM batch pipeline (the seed's public API is re-exported here).

Names are imported lazily so that the pure core can be used without loading the SDK.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from budgetq.adapters.llm.client import LLMCallResult, ReplayMode
    from budgetq.domain.budget import TokenBudget
    from budgetq.errors import BudgetExceededError, BudgetqError
    from budgetq.seed import BudgetAwareLLMClient

_EXPORTS = {
    "TokenBudget": "budgetq.domain.budget",
    "BudgetExceededError": "budgetq.errors",
    "BudgetqError": "budgetq.errors",
    "BudgetAwareLLMClient": "budgetq.seed",
    "LLMCallResult": "budgetq.adapters.llm.client",
    "ReplayMode": "budgetq.adapters.llm.client",
}

__all__ = [
    "BudgetAwareLLMClient",
    "BudgetExceededError",
    "BudgetqError",
    "LLMCallResult",
    "ReplayMode",
    "TokenBudget",
]


def __getattr__(name: str) -> Any:
    """Import an exported name on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'budgetq' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
