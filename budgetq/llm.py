"""BudgetAwareLLMClient: guard → SDK call (retries off) → tenacity retries → provenance per attempt.

This is the one place that imports ``anthropic``: its exceptions become budgetq errors here
(see ``translate_error``), so nothing else in budgetq knows the SDK's error classes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

import anthropic
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay

from budgetq.budget import TokenBudget, ensure_affordable
from budgetq.catalog import ModelSpec, get_model, prices_on
from budgetq.errors import (
    ConfigurationError,
    LLMCallError,
    NonRetryableCallError,
    PromptTooLongError,
    RetryableCallError,
    SpendLimitReachedError,
)
from budgetq.pricing import Usage, cost_usd
from budgetq.settings import Settings
from budgetq.statuses import CallOutcome
from budgetq.tokens import estimate

# Above this max_tokens the SDK refuses non-streaming requests (it expects them to outlive the HTTP timeout).
STREAMING_THRESHOLD = 16_384
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


class ReplayMode(StrEnum):
    """Where calls go: the seed's two modes, plus cassette recording and replay."""

    LIVE_TOOLS = "live"
    MOCK_TOOLS = "standin"
    RECORD = "record"
    REPLAY = "replay"


@dataclass(frozen=True)
class CallRequest:
    """One Messages API request, with the estimate the guard admitted it on."""

    model: str
    system: str
    user: str
    max_tokens: int
    estimated_input_tokens: int
    tools: tuple[Mapping[str, Any], ...] = ()
    tool_choice: Mapping[str, Any] | None = None
    temperature: float | None = None
    cache_ttl: str | None = "5m"

    def params(self) -> dict[str, Any]:
        """The keyword arguments for ``messages.create``, the system prompt marked for caching."""
        system_block: dict[str, Any] = {"type": "text", "text": self.system}
        if self.cache_ttl is not None:
            system_block["cache_control"] = {"type": "ephemeral", "ttl": self.cache_ttl}
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "system": [system_block],
            "messages": [{"role": "user", "content": self.user}],
        }
        if self.temperature is not None:
            # SDK 2.x dropped the keyword; the API still takes it on the models that support it.
            params["extra_body"] = {"temperature": self.temperature}
        if self.tools:
            params["tools"] = [dict(t) for t in self.tools]
        if self.tool_choice is not None:
            params["tool_choice"] = dict(self.tool_choice)
        return params


@dataclass(frozen=True)
class Attempt:
    """What one HTTP attempt did; becomes one ``llm_calls`` row."""

    number: int
    started_at: dt.datetime
    finished_at: dt.datetime
    outcome: CallOutcome
    http_status: int | None = None
    request_id: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    retry_after_s: float | None = None
    usage: Usage | None = None
    stop_reason: str | None = None
    service_tier: str | None = None
    cost_usd: Decimal = Decimal(0)
    price_version: str | None = None

    @property
    def latency_ms(self) -> int:
        """Wall time of the attempt in milliseconds."""
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


@dataclass(frozen=True)
class LLMCallResult:
    """The outcome of a call that got an answer, after however many attempts it took."""

    text: str
    tool_input: object | None
    stop_reason: str | None
    usage: Usage
    cost_usd: Decimal
    request_id: str | None
    model: str
    estimated_input_tokens: int
    attempts: tuple[Attempt, ...] = field(default=())

    @property
    def billed_input_tokens(self) -> int:
        """All input the model read: uncached, cache writes and cache reads."""
        u = self.usage
        return u.input_tokens + u.cache_creation_5m + u.cache_creation_1h + u.cache_read


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    return None if headers is None else headers.get(name)


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The server's requested wait, from ``retry-after-ms`` or ``retry-after`` (seconds)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = _header(headers, name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / scale)
        except ValueError:
            continue
    return None


def translate_error(exc: Exception) -> LLMCallError:
    """Map an SDK exception to the budgetq error that says what to do about it."""
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        headers = exc.response.headers
        request_id = _header(headers, "request-id")
        body: Mapping[str, Any] = exc.body if isinstance(exc.body, Mapping) else {}
        raw_error = body.get("error")
        error: Mapping[str, Any] = raw_error if isinstance(raw_error, Mapping) else {}
        error_type = str(error.get("type") or type(exc).__name__)
        message = str(error.get("message") or exc.message)
        kwargs: dict[str, Any] = {
            "status": status,
            "request_id": request_id,
            "error_type": error_type,
            "retry_after": retry_after_seconds(headers),
        }
        lowered = f"{type(exc).__name__} {error_type} {message}".lower()
        if status == 429 and (
            "spend limit" in lowered or "spend_limit" in lowered or "spendlimit" in lowered
        ):
            return SpendLimitReachedError(
                f"the API says the spend limit is reached ({message}); raise the limit in the Anthropic "
                "console or wait for the next period, then reprocess the run",
                **kwargs,
            )
        if status == 413 or "prompt is too long" in message.lower():
            return PromptTooLongError(f"request too large for the model ({status}: {message})", **kwargs)
        if status in RETRYABLE_STATUS:
            return RetryableCallError(f"{status} {error_type}: {message}", **kwargs)
        return NonRetryableCallError(f"{status} {error_type}: {message}", **kwargs)
    if isinstance(exc, anthropic.APITimeoutError):
        return RetryableCallError(f"timed out: {exc}", error_type="timeout")
    if isinstance(exc, anthropic.APIConnectionError):
        return RetryableCallError(f"connection failed: {exc}", error_type="connection_error")
    return NonRetryableCallError(f"unexpected {type(exc).__name__}: {exc}", error_type=type(exc).__name__)


def _outcome(error: LLMCallError) -> CallOutcome:
    if isinstance(error, SpendLimitReachedError):
        return CallOutcome.SPEND_LIMIT
    if isinstance(error, PromptTooLongError):
        return CallOutcome.PROMPT_TOO_LONG
    if isinstance(error, RetryableCallError):
        return CallOutcome.RETRYABLE_ERROR
    return CallOutcome.ERROR


def _usage_of(message: Any, requested_ttl: str | None) -> Usage:
    u = message.usage
    creation = int(getattr(u, "cache_creation_input_tokens", 0) or 0)
    split = getattr(u, "cache_creation", None)
    five = int(getattr(split, "ephemeral_5m_input_tokens", 0) or 0) if split is not None else 0
    hour = int(getattr(split, "ephemeral_1h_input_tokens", 0) or 0) if split is not None else 0
    if five + hour != creation:
        # Older responses have no per-TTL split: attribute all writes to the TTL we asked for.
        five, hour = (0, creation) if requested_ttl == "1h" else (creation, 0)
    return Usage(
        input_tokens=int(u.input_tokens or 0),
        output_tokens=int(u.output_tokens or 0),
        cache_creation_5m=five,
        cache_creation_1h=hour,
        cache_read=int(getattr(u, "cache_read_input_tokens", 0) or 0),
        batch=getattr(u, "service_tier", None) == "batch",
    )


def _content(message: Any) -> tuple[str, object | None]:
    texts: list[str] = []
    tool_input: object | None = None
    for block in message.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use" and tool_input is None:
            tool_input = block.input
    return "".join(texts), tool_input


def full_jitter_wait(base: float, cap: float, retry_after_cap: float) -> Callable[[RetryCallState], float]:
    """Exponential backoff with full jitter, never shorter than the server's retry-after (capped)."""

    def wait(state: RetryCallState) -> float:
        backoff = random.uniform(0, min(cap, base * 2 ** (state.attempt_number - 1)))
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is None:
            return backoff
        return max(min(float(retry_after), retry_after_cap), backoff)

    return wait


class BudgetAwareLLMClient:
    """The seed's client: a guarded, retried Messages API call with cost and provenance."""

    def __init__(
        self,
        budget: TokenBudget | None = None,
        mode: ReplayMode = ReplayMode.LIVE_TOOLS,
        *,
        model: str | None = None,
        temperature: float | None = None,
        settings: Settings | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings or Settings()
        self.spec: ModelSpec = get_model(model or self.settings.model)
        self.budget = budget if budget is not None else TokenBudget(max_tokens=self.spec.context_window)
        self.mode = mode
        self.temperature = temperature
        self._base_url = base_url or self.settings.anthropic_base_url
        key = self.settings.anthropic_api_key
        self._api_key = api_key or (key.get_secret_value() if key is not None else None)
        self._sleep = sleep
        self._client: anthropic.Anthropic | None = None
        self.host = socket.gethostname()

    @property
    def client(self) -> anthropic.Anthropic:
        """The SDK client, built on first use so a guard rejection needs no key and no network."""
        if self._client is None:
            if self.mode in (ReplayMode.RECORD, ReplayMode.REPLAY):
                raise ConfigurationError(
                    f"mode {self.mode.value!r} is not available yet; use 'live' or 'standin'"
                )
            if self.mode is ReplayMode.MOCK_TOOLS:
                if not self._base_url:
                    raise ConfigurationError(
                        "standin mode needs ANTHROPIC_BASE_URL pointing at a running stand-in "
                        "(python -m budgetq.standin)"
                    )
                api_key = self._api_key or "standin"
            else:
                if not self._api_key:
                    raise ConfigurationError(
                        "live mode needs ANTHROPIC_API_KEY; set it, or run against the local stand-in"
                    )
                api_key = self._api_key
            self._client = anthropic.Anthropic(
                api_key=api_key,
                base_url=self._base_url,
                max_retries=0,
                timeout=self.settings.call_timeout_s,
            )
        return self._client

    def count_tokens(self, request: CallRequest) -> int:
        """The exact input token count of ``request`` from ``messages.count_tokens``."""
        params = request.params()
        params.pop("max_tokens")
        params.pop("extra_body", None)
        try:
            return int(self.client.messages.count_tokens(**params).input_tokens)
        except anthropic.AnthropicError as exc:
            raise translate_error(exc) from exc

    def _attempt(
        self, request: CallRequest, number: int, on_attempt: Callable[[Attempt], None]
    ) -> LLMCallResult:
        started = dt.datetime.now(dt.UTC)
        try:
            if request.max_tokens > STREAMING_THRESHOLD:
                with self.client.messages.stream(**request.params()) as stream:
                    message = stream.get_final_message()
                    request_id = _header(stream.response.headers, "request-id")
            else:
                raw = self.client.messages.with_raw_response.create(**request.params())
                request_id = _header(raw.headers, "request-id")
                message = raw.parse()
        except anthropic.AnthropicError as exc:
            error = translate_error(exc)
            on_attempt(
                Attempt(
                    number=number,
                    started_at=started,
                    finished_at=dt.datetime.now(dt.UTC),
                    outcome=_outcome(error),
                    http_status=error.status,
                    request_id=error.request_id,
                    error_type=error.error_type,
                    error_message=str(error)[:2000],
                    retry_after_s=error.retry_after,
                )
            )
            raise error from exc
        finished = dt.datetime.now(dt.UTC)
        usage = _usage_of(message, request.cache_ttl)
        prices = prices_on(self.spec, started.date())
        cost = cost_usd(usage, prices)
        text, tool_input = _content(message)
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
        )
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
        s = self.settings
        retrying = Retrying(
            retry=retry_if_exception_type(RetryableCallError),
            stop=stop_after_attempt(s.retry_max_attempts) | stop_after_delay(s.retry_max_seconds),
            wait=full_jitter_wait(s.retry_base_s, s.retry_max_backoff_s, s.retry_after_cap_s),
            sleep=self._sleep,
            reraise=True,
        )
        for attempt in retrying:
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
