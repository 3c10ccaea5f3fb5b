"""What the worker tells the outside about each call attempt: Prometheus metrics and one JSON log event.

The event carries ids and numbers only (run, batch, request id, tokens, cost): never an issue's text
nor an API key, so INFO logs can go anywhere.
"""

from __future__ import annotations

import logging

from budgetq.adapters.llm.client import Attempt
from budgetq.adapters.observability import metrics
from budgetq.adapters.store.batches import Claim
from budgetq.domain.statuses import CallOutcome

log = logging.getLogger("budgetq.worker.calls")

# Modes whose calls are priced at list price but billed to nobody.
UNBILLED_MODES = frozenset({"standin", "replay"})


def observe_attempt(
    claim: Claim, attempt: Attempt, *, estimated_input: int, counted_input: int | None
) -> None:
    """Count ``attempt`` in the metrics and log it as one ``llm_call_attempt`` event."""
    u = attempt.usage
    billed_input = (
        None if u is None else u.input_tokens + u.cache_creation_5m + u.cache_creation_1h + u.cache_read
    )
    utilization = None if billed_input is None else (billed_input + claim.max_tokens) / claim.context_window
    billed = claim.mode not in UNBILLED_MODES
    # A retry: a later attempt of one send, or any attempt at a batch that failed before.
    retry = attempt.number > 1 or claim.failures > 0
    metrics.observe_attempt(
        metrics.AttemptFigures(
            model=claim.model,
            outcome=attempt.outcome.value,
            retry=retry,
            seconds=attempt.latency_ms / 1000,
            billed=billed,
            cost_usd=float(attempt.cost_usd),
            input_tokens=0 if u is None else u.input_tokens,
            cache_write_tokens=0 if u is None else u.cache_creation_5m + u.cache_creation_1h,
            cache_read_tokens=0 if u is None else u.cache_read,
            output_tokens=0 if u is None else u.output_tokens,
            utilization=utilization,
            http_status=attempt.http_status,
            retry_after_s=attempt.retry_after_s,
        )
    )
    ok = attempt.outcome is CallOutcome.OK
    log.log(
        logging.INFO if ok else logging.WARNING,
        "llm call attempt %s of batch %s: %s",
        attempt.number,
        claim.batch_id,
        attempt.outcome.value,
        extra={
            "event": "llm_call_attempt",
            "run_id": claim.run_id,
            "batch_id": claim.batch_id,
            "attempt": attempt.number,
            "retry": retry,
            "issues": len(claim.issues),
            "model": claim.model,
            "mode": claim.mode,
            "outcome": attempt.outcome.value,
            "http_status": attempt.http_status,
            "request_id": attempt.request_id,
            "error_type": attempt.error_type,
            "retry_after_s": attempt.retry_after_s,
            "estimated_input_tokens": estimated_input,
            "counted_input_tokens": counted_input,
            "billed_input_tokens": billed_input,
            "output_tokens": None if u is None else u.output_tokens,
            "cache_read_tokens": None if u is None else u.cache_read,
            "max_tokens": claim.max_tokens,
            "utilization": None if utilization is None else round(utilization, 6),
            "stop_reason": attempt.stop_reason,
            "cost_usd": str(attempt.cost_usd),
            "billed": billed,
            "latency_ms": attempt.latency_ms,
        },
    )
