"""The seed's public client: ``BudgetAwareLLMClient(budget=..., mode=...)`` as the user's design
document writes it, with no settings argument.

Library code takes ``Settings`` as an argument and never reads the environment; this class is an
entry point (a user's script constructs it), so it is where the environment is read when the
caller passes no settings.
"""

from __future__ import annotations

from typing import Any

from budgetq.adapters.llm import client
from budgetq.domain.budget import TokenBudget
from budgetq.domain.calls import ReplayMode
from budgetq.settings import Settings


class BudgetAwareLLMClient(client.BudgetAwareLLMClient):
    """The adapter's client, with settings from the environment unless given."""

    def __init__(
        self,
        budget: TokenBudget | None = None,
        mode: ReplayMode = ReplayMode.LIVE_TOOLS,
        *,
        settings: Settings | None = None,
        **options: Any,
    ) -> None:
        super().__init__(budget, mode, settings=settings if settings is not None else Settings(), **options)
