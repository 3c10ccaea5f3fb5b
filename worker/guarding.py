"""The window guard as both call paths apply it to a claimed batch, synchronous or Message Batches.

One prompt per batch; provenance keeps the estimate at the run's calibration (so billed ÷ estimate
measures that calibration), while the guard decides on the estimate at the calibration provenance
backs, or on the exact count where an estimate is not good enough.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.llm.client import BudgetAwareLLMClient
from budgetq.adapters.store import batches as store
from budgetq.adapters.store.calibration import FRESH_FOR, observed_ratios
from budgetq.adapters.store.engine import transaction
from budgetq.domain.answers import PromptIssue
from budgetq.domain.budget import billable_input, guard_limit, needs_exact_count
from budgetq.domain.calls import CallRequest
from budgetq.domain.prompt import build_prompt
from budgetq.domain.tokens import Calibration, checked_calibration
from budgetq.errors import CassetteMissingError, CountTokensUnavailableError
from budgetq.settings import Settings

log = logging.getLogger("budgetq.worker")

# How long a worker process keeps a run's checked calibration (CalibrationCache).
CALIBRATION_KEEP_S = 5.0

_said: set[str] = set()
_said_lock = threading.Lock()


@dataclass(frozen=True)
class Guarded:
    """A batch's request and the figures the guard decides on."""

    request: CallRequest
    estimated: int  # at the run's calibration: what provenance keeps
    guarded: int  # at the calibration provenance backs: what the guard decides on
    limit: int
    needs_count: bool  # ask ``messages.count_tokens`` before deciding
    # Where an estimate must stay when the exact count was needed but cannot be had (count_tokens is
    # missing behind the base URL): ``margin`` of the guard, the room the count would have checked.
    estimate_only_limit: int = 0
    margin: float = 1.0  # how far below the truth an estimate is trusted to be (the count margin)

    def refusal(self, counted: int | None, *, uncountable: bool = False) -> str | None:
        """Why the request may not be sent (its input + max_tokens over the guard), or None;
        ``uncountable``: the exact count was needed but is unavailable, so the estimate must fit the
        smaller fill."""
        decided = self.guarded if counted is None else counted
        max_tokens = self.request.max_tokens
        limit = self.estimate_only_limit if uncountable and counted is None else self.limit
        if decided + max_tokens <= limit:
            return None
        if limit != self.limit:
            return (
                f"estimated input {decided} + max_tokens {max_tokens} exceeds {limit}, the smaller fill "
                f"an estimate must keep when count_tokens is unavailable (guard {self.limit})"
            )
        word = "estimated" if counted is None else "counted"
        return f"{word} input {decided} + max_tokens {max_tokens} exceeds the guard of {self.limit}"

    def most_input(self, counted: int | None) -> int:
        """The most input the request can bill (what a spend reservation covers, and the price tier it
        is priced at): the exact count when known, else the larger estimate with the margin's headroom,
        within what the guard leaves."""
        room = self.limit - self.request.max_tokens
        return billable_input(max(self.estimated, self.guarded), counted, room, self.margin)


def calibration_for(sessions: sessionmaker[Session], settings: Settings, claim: store.Claim) -> Calibration:
    """The run's calibration checked against the model's recent provenance."""
    with transaction(sessions) as session:
        ratios = observed_ratios(session, claim.model, max_age=FRESH_FOR)
    return checked_calibration(
        ratios, claim.calibration, settings.calibration_quantile, settings.calibration_min_samples
    )


class CalibrationCache:
    """``calibration_for`` per run, kept a few seconds by a worker process: read per batch it cost a
    transaction and a quantile of 500 ratios each time, and the stored ratios change slowly
    (``FRESH_FOR``). Keyed by run, so a run planned after a recount starts from the recount."""

    def __init__(
        self, keep_s: float = CALIBRATION_KEEP_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._keep_s = keep_s
        self._clock = clock
        self._lock = threading.Lock()
        self._kept: dict[int, tuple[float, Calibration]] = {}

    def get(self, sessions: sessionmaker[Session], settings: Settings, claim: store.Claim) -> Calibration:
        """The claim's checked calibration, read again once the kept one is ``keep_s`` old."""
        now = self._clock()
        with self._lock:
            kept = self._kept.get(claim.run_id)
        if kept is not None and now - kept[0] < self._keep_s:
            return kept[1]
        calibration = calibration_for(sessions, settings, claim)
        with self._lock:
            if len(self._kept) > 64:  # runs end; their entries need not outlive them
                self._kept = {r: v for r, v in self._kept.items() if now - v[0] < self._keep_s}
            self._kept[claim.run_id] = (now, calibration)
        return calibration


def guard(
    claim: store.Claim, calibration: Calibration, margin: float, cache_ttl: str | None = "5m"
) -> Guarded:
    """The claimed batch's request, and whether the guard needs an exact count to decide on it."""
    issues = [PromptIssue(i.issue_id, i.priority, i.text) for i in claim.issues]
    prompt = build_prompt(issues, claim.calibration)
    estimated = prompt.estimated_input_tokens
    guarded = (
        estimated if calibration.factor == claim.calibration else prompt.estimated_at(calibration.factor)
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
    return Guarded(request, estimated, guarded, limit, count, int(limit * margin), margin)


def exact_count(client: BudgetAwareLLMClient, g: Guarded, model: str) -> tuple[int | None, bool]:
    """The exact input count of the guarded request when it is needed, and whether it was needed but
    cannot be had (the endpoint is missing: decide on the estimate under the smaller fill). Other
    failures raise LLMCallError."""
    if not g.needs_count:
        return None, False
    try:
        # The exact count is free, and rate-limited apart from calls.
        return client.count_tokens(g.request), False
    except CassetteMissingError:
        # Replay of a run that trusted its estimate here: decide on the estimate, as it did.
        return None, False
    except CountTokensUnavailableError as exc:
        # A gateway without the endpoint must not fail every batch near the guard.
        say_uncountable(model, exc)
        return None, True


def say_uncountable(model: str, exc: CountTokensUnavailableError) -> None:
    """Log, once per process and model, that batches near the guard are decided on their estimate."""
    with _said_lock:
        if model in _said:
            return
        _said.add(model)
    log.warning(
        "%s; %s batches near the guard are decided on their conservative estimate with a smaller fill "
        "(BUDGETQ_COUNT_TOKENS_MARGIN of the guard), split when they do not fit; said once",
        exc,
        model,
    )
