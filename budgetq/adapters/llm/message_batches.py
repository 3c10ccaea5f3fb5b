"""The Message Batches half of the LLM adapter: create, poll and read results through the SDK.

It drives the SDK client of a ``client.BudgetAwareLLMClient`` (same key, base URL, timeouts) and
reuses that module's error classification, retry policy and usage reading, so a failure or a
usage record means the same in both modes; it imports nothing of ``anthropic`` itself. Each result
becomes an ``Attempt`` (one ``llm_calls`` row): a succeeded request priced at the batch rate
(``Usage.batch``), an errored one with the API's error, an expired or canceled one as a retryable
failure that cost nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from budgetq.adapters.llm.client import BudgetAwareLLMClient
from budgetq.adapters.llm.replies import content_of, outcome_of, usage_of
from budgetq.adapters.llm.retries import ApiFailure, retry_policy
from budgetq.adapters.llm.sdk_errors import SDK_ERRORS, api_failure
from budgetq.domain.calls import Attempt, ReplayMode
from budgetq.domain.catalog import prices_on
from budgetq.domain.message_batches import ResultKind
from budgetq.domain.pricing import cost_usd
from budgetq.domain.statuses import CallOutcome
from budgetq.errors import ConfigurationError, LLMCallError, NonRetryableCallError

# Requests of a Message Batch mark their system prompt for the 1-hour cache (docs: a batch can take
# longer than 5 minutes, so the 1-hour TTL keeps cache hits across its requests).
BATCH_CACHE_TTL = "1h"


@dataclass(frozen=True)
class MessageBatchState:
    """What the API says about a Message Batch."""

    api_id: str
    processing_status: str
    counts: Mapping[str, int]
    created_at: dt.datetime
    expires_at: dt.datetime
    ended_at: dt.datetime | None

    @property
    def ended(self) -> bool:
        """True once every request succeeded, errored, expired or was canceled."""
        return self.processing_status == "ended"


@dataclass(frozen=True)
class RequestOutcome:
    """One result line: which request, how it ended, and the attempt to record for it."""

    custom_id: str
    kind: ResultKind
    attempt: Attempt
    tool_input: object | None = None
    stop_reason: str | None = None


def _state(batch: Any) -> MessageBatchState:
    counts = batch.request_counts
    return MessageBatchState(
        api_id=str(batch.id),
        processing_status=str(batch.processing_status),
        counts={
            name: int(getattr(counts, name, 0) or 0)
            for name in ("processing", "succeeded", "errored", "canceled", "expired")
        },
        created_at=batch.created_at,
        expires_at=batch.expires_at,
        ended_at=batch.ended_at,
    )


class MessageBatchesClient:
    """Create, retrieve and read Message Batches for one model, through ``llm``'s SDK client."""

    def __init__(self, llm: BudgetAwareLLMClient, sleep: Callable[[float], None] = time.sleep) -> None:
        if llm.mode not in (ReplayMode.LIVE_TOOLS, ReplayMode.MOCK_TOOLS):
            raise ConfigurationError(
                f"the Message Batches API has no {llm.mode.value} mode; run batch-api runs in live or "
                "standin mode (BUDGETQ_MODE), or run this one in sync mode"
            )
        self.llm = llm
        self._sleep = sleep

    def create(self, entries: Sequence[Mapping[str, Any]]) -> MessageBatchState:
        """Create a Message Batch of ``entries`` ({"custom_id", "params"}); retried only when the API
        answered that it did not create it (a timeout may have created it, so it is not retried)."""
        for attempt in retry_policy(self.llm.settings, self._sleep):
            with attempt:
                try:
                    return _state(self.llm.client.messages.batches.create(requests=list(entries)))  # type: ignore[arg-type]
                except SDK_ERRORS as exc:
                    failure = api_failure(exc)
                    if failure.status is None:
                        raise NonRetryableCallError(
                            f"creating a Message Batch got no answer ({failure.message}); it may exist "
                            "without its id, so it is not sent again",
                            error_type=failure.error_type,
                        ) from exc
                    raise failure.error() from exc
        raise AssertionError("tenacity ended without a result or an error")  # pragma: no cover

    def retrieve(self, api_id: str) -> MessageBatchState:
        """The Message Batch's current state (idempotent; retried like a call)."""
        for attempt in retry_policy(self.llm.settings, self._sleep):
            with attempt:
                try:
                    return _state(self.llm.client.messages.batches.retrieve(api_id))
                except SDK_ERRORS as exc:
                    raise api_failure(exc).error() from exc
        raise AssertionError("tenacity ended without a result or an error")  # pragma: no cover

    def results(self, state: MessageBatchState) -> Iterator[RequestOutcome]:
        """The ended Message Batch's results, one outcome per line, in the API's (any) order."""
        try:
            for line in self.llm.client.messages.batches.results(state.api_id):
                yield self.outcome_of(state, line)
        except SDK_ERRORS as exc:
            raise api_failure(exc).error() from exc

    def outcome_of(self, state: MessageBatchState, line: Any) -> RequestOutcome:
        result = line.result
        kind = ResultKind(result.type)
        base = Attempt(
            number=1,
            started_at=state.created_at,
            finished_at=state.ended_at or dt.datetime.now(dt.UTC),
            outcome=CallOutcome.OK,
        )
        if kind is ResultKind.SUCCEEDED:
            message = result.message
            # Every request of a Message Batch bills at the batch rate, whatever the usage says.
            usage = dataclasses.replace(usage_of(message, BATCH_CACHE_TTL), batch=True)
            prices = prices_on(self.llm.spec, state.created_at.date())
            _, tool_input = content_of(message)
            attempt = dataclasses.replace(
                base,
                http_status=200,
                usage=usage,
                stop_reason=message.stop_reason,
                service_tier=getattr(message.usage, "service_tier", None) or "batch",
                cost_usd=cost_usd(usage, prices),
                price_version=prices.version,
            )
            return RequestOutcome(line.custom_id, kind, attempt, tool_input, message.stop_reason)
        if kind is ResultKind.ERRORED:
            error = _errored(result.error)
            attempt = dataclasses.replace(
                base,
                outcome=outcome_of(error),
                request_id=error.request_id,
                error_type=error.error_type,
                error_message=str(error)[:2000],
            )
            return RequestOutcome(line.custom_id, kind, attempt)
        attempt = dataclasses.replace(
            base,
            outcome=CallOutcome.RETRYABLE_ERROR,
            error_type=kind.value,
            error_message=f"the request was {kind.value} before the Message Batch ran it; nothing billed",
        )
        return RequestOutcome(line.custom_id, kind, attempt)


def _errored(response: Any) -> LLMCallError:
    """The budgetq error of an ``errored`` result (its ``error`` is an ErrorResponse, or older: the
    bare error object)."""
    inner = getattr(response, "error", None)
    error = inner if inner is not None and hasattr(inner, "type") else response
    failure = ApiFailure(
        status=None,
        error_type=str(getattr(error, "type", None) or "api_error"),
        message=str(getattr(error, "message", None) or "the request errored"),
        request_id=getattr(response, "request_id", None),
    )
    return failure.error()
