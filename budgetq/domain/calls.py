"""The vocabulary of a Messages API call: where it goes, the request, each attempt, the result, the gate."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from budgetq.domain.pricing import Usage
from budgetq.domain.statuses import CallOutcome


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
    # The reply's headers (anthropic-ratelimit-* among them), for the gate; not stored.
    headers: Mapping[str, str] | None = field(default=None, compare=False, repr=False)

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


class AttemptGate(Protocol):
    """What runs around each HTTP attempt at the Messages API; a distributed rate limiter plugs in here."""

    def before_attempt(self, request: CallRequest) -> None:
        """Called right before each attempt; may block until the attempt may go, or raise to stop it."""

    def after_attempt(self, request: CallRequest, attempt: Attempt) -> None:
        """Called after each attempt, failed or not, with what it did (its usage when it got an answer)."""


class OpenGate:
    """The default gate: every attempt goes at once."""

    def before_attempt(self, request: CallRequest) -> None:
        """Let the attempt go."""

    def after_attempt(self, request: CallRequest, attempt: Attempt) -> None:
        """Nothing to settle."""
