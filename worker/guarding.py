"""The window guard as both call paths apply it to a claimed batch, synchronous or Message Batches.

One prompt per batch; provenance keeps the estimate at the run's calibration (so billed ÷ estimate
measures that calibration), while the guard decides on the estimate at the calibration provenance
backs, or on the exact count where an estimate is not good enough.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store import batches as store
from budgetq.adapters.store.calibration import FRESH_FOR, observed_ratios
from budgetq.adapters.store.engine import transaction
from budgetq.domain.answers import PromptIssue
from budgetq.domain.budget import guard_limit, needs_exact_count
from budgetq.domain.calls import CallRequest
from budgetq.domain.prompt import build_prompt
from budgetq.domain.tokens import Calibration, checked_calibration
from budgetq.settings import Settings


@dataclass(frozen=True)
class Guarded:
    """A batch's request and the figures the guard decides on."""

    request: CallRequest
    estimated: int  # at the run's calibration: what provenance keeps
    guarded: int  # at the calibration provenance backs: what the guard decides on
    limit: int
    needs_count: bool  # ask ``messages.count_tokens`` before deciding

    def refusal(self, counted: int | None) -> str | None:
        """Why the request may not be sent (its input + max_tokens over the guard), or None."""
        decided = self.guarded if counted is None else counted
        max_tokens = self.request.max_tokens
        if decided + max_tokens <= self.limit:
            return None
        word = "estimated" if counted is None else "counted"
        return f"{word} input {decided} + max_tokens {max_tokens} exceeds the guard of {self.limit}"

    def most_input(self, counted: int | None) -> int:
        """The most input the request can bill (what a spend reservation covers): the exact count when
        known, else the larger estimate."""
        return counted if counted is not None else max(self.estimated, self.guarded)


def calibration_for(sessions: sessionmaker[Session], settings: Settings, claim: store.Claim) -> Calibration:
    """The run's calibration checked against the model's recent provenance."""
    with transaction(sessions) as session:
        ratios = observed_ratios(session, claim.model, max_age=FRESH_FOR)
    return checked_calibration(
        ratios, claim.calibration, settings.calibration_quantile, settings.calibration_min_samples
    )


def guard(
    claim: store.Claim, calibration: Calibration, margin: float, cache_ttl: str | None = "5m"
) -> Guarded:
    """The claimed batch's request, and whether the guard needs an exact count to decide on it."""
    issues = [PromptIssue(i.issue_id, i.priority, i.text) for i in claim.issues]
    prompt = build_prompt(issues, claim.calibration)
    estimated = prompt.estimated_input_tokens
    guarded = (
        estimated
        if calibration.factor == claim.calibration
        else build_prompt(issues, calibration.factor).estimated_input_tokens
    )
    limit = guard_limit(claim.context_window, claim.safe_utilization)
    request = CallRequest(
        model=claim.model,
        system=prompt.system,
        user=prompt.user,
        max_tokens=claim.max_tokens,
        estimated_input_tokens=estimated,
        tools=(prompt.tool,),
        tool_choice=prompt.tool_choice,
        cache_ttl=cache_ttl,
    )
    # Close to the guard, or before provenance confirms the calibration, an estimate is not good enough.
    count = needs_exact_count(guarded, claim.max_tokens, limit, margin, confirmed=calibration.confirmed)
    return Guarded(request, estimated, guarded, limit, count)
