"""BudgetAwareLLMClient: guard → gate → SDK call (retries off) → tenacity retries → provenance per attempt.

This folder is the one place that imports ``anthropic`` (and its transport, ``httpx2``): the SDK's
exceptions become ``retries.ApiFailure`` in ``sdk_errors``, so nothing else in budgetq knows the
SDK's error classes. What a failure means and when to retry is ``retries``; ``message_batches``
fails and retries like this client.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import anthropic
import httpx2

from budgetq.adapters.llm.cassettes import CassetteLibrary, cassette_key
from budgetq.adapters.llm.endpoint import check_base_url, sdk_api_key
from budgetq.adapters.llm.replies import content_of, outcome_of, usage_of
from budgetq.adapters.llm.retries import ApiFailure, retry_policy
from budgetq.adapters.llm.sdk_errors import api_failure, header, reply_headers, str_or_none
from budgetq.domain.budget import TokenBudget, ensure_affordable
from budgetq.domain.calls import Attempt as Attempt
from budgetq.domain.calls import AttemptGate as AttemptGate
from budgetq.domain.calls import CallRequest as CallRequest
from budgetq.domain.calls import LLMCallResult as LLMCallResult
from budgetq.domain.calls import OpenGate as OpenGate
from budgetq.domain.calls import ReplayMode as ReplayMode
from budgetq.domain.catalog import get_model, prices_on
from budgetq.domain.model_spec import ModelSpec
from budgetq.domain.pricing import cost_usd
from budgetq.domain.statuses import CallOutcome
from budgetq.domain.tokens import estimate
from budgetq.errors import (
    CassetteMissingError,
    CountTokensUnavailableError,
    LLMCallError,
)
from budgetq.settings import Settings

# Above this max_tokens the SDK refuses non-streaming requests (it expects them to outlive the HTTP timeout).
STREAMING_THRESHOLD = 16_384
# What a gateway without messages.count_tokens answers it: no such endpoint, or not this method.
COUNT_TOKENS_MISSING = frozenset({404, 405})


class BudgetAwareLLMClient:
    """The seed's client: a guarded, retried Messages API call with cost and provenance.

    ``mode`` picks where calls go: the live API, the stand-in (``ANTHROPIC_BASE_URL``), either of them
    while saving cassettes (record), or the cassettes alone with no network (replay). ``gate`` runs
    around every HTTP attempt (a rate limiter); ``sdk`` replaces the SDK client (tests).
    """

    def __init__(
        self,
        budget: TokenBudget | None = None,
        mode: ReplayMode = ReplayMode.LIVE_TOOLS,
        *,
        model: str | None = None,
        temperature: float | None = None,
        settings: Settings,
        base_url: str | None = None,
        api_key: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        gate: AttemptGate | None = None,
        sdk: anthropic.Anthropic | None = None,
        cassettes: CassetteLibrary | None = None,
    ) -> None:
        self.settings = settings
        self.spec: ModelSpec = get_model(model or self.settings.model)
        self.budget = budget if budget is not None else TokenBudget(max_tokens=self.spec.context_window)
        self.mode = mode
        self.temperature = temperature
        self.gate: AttemptGate = gate or OpenGate()
        self._base_url = base_url or self.settings.anthropic_base_url
        key = self.settings.anthropic_api_key
        self._api_key = api_key or (key.get_secret_value() if key is not None else None)
        self._sleep = sleep
        self._client: anthropic.Anthropic | None = sdk
        self._cassettes = cassettes
        self.host = socket.gethostname()

    @property
    def client(self) -> anthropic.Anthropic:
        """The SDK client, built on first use so a guard rejection needs no key and no network."""
        if self._client is None:
            api_key = sdk_api_key(self.mode, self._api_key, self._base_url)
            check_base_url(
                self._base_url,
                sends_key=self._api_key is not None,
                allow_plain_http=self.settings.allow_plain_http_base_url,
            )
            self._client = anthropic.Anthropic(
                api_key=api_key,
                base_url=self._base_url,
                max_retries=0,
                timeout=self.settings.call_timeout_s,
            )
        return self._client

    @property
    def cassettes(self) -> CassetteLibrary:
        """The cassette folder of the record and replay modes (``BUDGETQ_CASSETTE_DIR``)."""
        if self._cassettes is None:
            self._cassettes = CassetteLibrary(
                self.settings.cassette_dir or self.settings.data_dir / "cassettes"
            )
        return self._cassettes

    def _record(self, endpoint: str, params: Mapping[str, Any], interaction: Mapping[str, Any]) -> None:
        if self.mode is ReplayMode.RECORD:
            self.cassettes.record(endpoint, params, interaction)

    def _replay(self, endpoint: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """The next recorded interaction of a request; a recorded failure is raised again."""
        interaction = self.cassettes.next(endpoint, params)
        if interaction is None:
            raise CassetteMissingError(
                f"replay mode has no cassette for this {endpoint} request (key "
                f"{cassette_key(endpoint, params)[:16]}...) in {self.cassettes.folder}; record it first "
                "with BUDGETQ_MODE=record and the same settings",
                error_type="cassette_missing",
            )
        if interaction["kind"] == "error":
            raise ApiFailure.from_interaction(interaction).error()
        return interaction

    def count_tokens(self, request: CallRequest) -> int:
        """The exact input token count of ``request`` from ``messages.count_tokens``, retried like a call."""
        params = request.params()
        params.pop("max_tokens")
        params.pop("extra_body", None)
        for attempt in retry_policy(self.settings, self._sleep):
            with attempt:
                return self._count(params)
        raise AssertionError("tenacity ended without a result or an error")  # pragma: no cover

    def _count(self, params: Mapping[str, Any]) -> int:
        if self.mode is ReplayMode.REPLAY:
            return int(self._replay("count_tokens", params)["input_tokens"])
        try:
            counted = int(self.client.messages.count_tokens(**params).input_tokens)
        except (anthropic.AnthropicError, httpx2.TransportError) as exc:
            failure = api_failure(exc)
            self._record("count_tokens", params, failure.interaction())
            if failure.status in COUNT_TOKENS_MISSING:
                raise CountTokensUnavailableError(
                    f"messages.count_tokens answered {failure.status} {failure.error_type}: "
                    f"{failure.message} (the endpoint at {self._base_url or 'the API'} has none)",
                    status=failure.status,
                    request_id=failure.request_id,
                    error_type=failure.error_type,
                ) from exc
            raise failure.error() from exc
        self._record("count_tokens", params, {"kind": "count", "input_tokens": counted})
        return counted

    def _exchange(self, request: CallRequest) -> tuple[Any, str | None, Mapping[str, str] | None]:
        """One HTTP exchange (or its cassette): the answer, its request id and its headers; failures raise
        LLMCallError."""
        params = request.params()
        if self.mode is ReplayMode.REPLAY:
            interaction = self._replay("messages", params)
            message = anthropic.types.Message.model_validate(interaction["message"])
            return message, str_or_none(interaction.get("request_id")), None
        failure: ApiFailure | None = None
        headers: Mapping[str, str] | None = None
        try:
            if request.max_tokens > STREAMING_THRESHOLD:
                # The SDK refuses long non-streaming requests; the stream's final message is the same answer.
                with self.client.messages.stream(**params) as stream:
                    message = stream.get_final_message()
                    headers = dict(stream.response.headers)
                    request_id = header(headers, "request-id")
                if message.stop_reason is None:
                    failure = ApiFailure(
                        None,
                        "connection_error",
                        "the stream ended before message_stop",
                        request_id=request_id,
                    )
            else:
                raw = self.client.messages.with_raw_response.create(**params)
                headers = dict(raw.headers)
                request_id = header(headers, "request-id")
                message = raw.parse()
        except (anthropic.AnthropicError, httpx2.TransportError) as exc:
            failure = api_failure(exc)
            self._record("messages", params, failure.interaction())
            raise failure.error() from exc
        if failure is not None:
            self._record("messages", params, failure.interaction())
            raise failure.error()
        answer = {"kind": "message", "request_id": request_id, "message": message.model_dump(mode="json")}
        self._record("messages", params, answer)
        return message, request_id, headers

    def _attempt(
        self, request: CallRequest, number: int, on_attempt: Callable[[Attempt], None]
    ) -> LLMCallResult:
        self.gate.before_attempt(request)
        started = dt.datetime.now(dt.UTC)
        try:
            message, request_id, headers = self._exchange(request)
        except LLMCallError as error:
            failed = Attempt(
                number=number,
                started_at=started,
                finished_at=dt.datetime.now(dt.UTC),
                outcome=outcome_of(error),
                http_status=error.status,
                request_id=error.request_id,
                error_type=error.error_type,
                error_message=str(error)[:2000],
                retry_after_s=error.retry_after,
                headers=reply_headers(error),
            )
            self.gate.after_attempt(request, failed)
            on_attempt(failed)
            raise
        finished = dt.datetime.now(dt.UTC)
        usage = usage_of(message, request.cache_ttl)
        prices = prices_on(self.spec, started.date())
        cost = cost_usd(usage, prices)
        text, tool_input = content_of(message)
        attempt = Attempt(
            number=number,
            started_at=started,
            finished_at=finished,
            outcome=CallOutcome.OK,
            http_status=200,
            request_id=request_id,
            usage=usage,
            stop_reason=message.stop_reason,
            service_tier=getattr(message.usage, "service_tier", None),
            cost_usd=cost,
            price_version=prices.version,
            headers=headers,
        )
        self.gate.after_attempt(request, attempt)
        return LLMCallResult(
            text=text,
            tool_input=tool_input,
            stop_reason=message.stop_reason,
            usage=usage,
            cost_usd=cost,
            request_id=request_id,
            model=str(message.model),
            estimated_input_tokens=request.estimated_input_tokens,
            attempts=(attempt,),
        )

    def send(
        self, request: CallRequest, on_attempt: Callable[[Attempt], None] = lambda a: None
    ) -> LLMCallResult:
        """Send ``request``, retrying what retrying can fix; ``on_attempt`` sees every failed attempt.

        The successful attempt is ``result.attempts[-1]``, for the caller to record with its results.
        """
        for attempt in retry_policy(self.settings, self._sleep):
            with attempt:
                return self._attempt(request, attempt.retry_state.attempt_number, on_attempt)
        raise AssertionError("tenacity ended without a result or an error")  # pragma: no cover

    async def call_with_retry(
        self,
        prompt: str,
        max_tokens: int | None = None,
        timeout: float = 60.0,
    ) -> LLMCallResult:
        """The seed's call: check the 75% guard, then call with retries, cost tracking and provenance."""
        estimated_input_tokens = estimate(prompt, self.spec.calibration)
        estimated_output_tokens = max_tokens or 1000
        ensure_affordable(self.budget, estimated_input_tokens + estimated_output_tokens)
        request = CallRequest(
            model=self.spec.name,
            system="You are a careful assistant.",
            user=prompt,
            max_tokens=estimated_output_tokens,
            estimated_input_tokens=estimated_input_tokens,
            temperature=self.temperature,
            cache_ttl=None,
        )
        result = await asyncio.wait_for(asyncio.to_thread(self.send, request), timeout=timeout)
        self.budget.consume(result.billed_input_tokens + result.usage.output_tokens)
        return result
