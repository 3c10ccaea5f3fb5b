"""Reading a Messages API reply: its usage as a pricing record, its content, and an error's outcome.

Replies are read by attribute (the SDK's models), so this module needs no SDK import.
"""

from __future__ import annotations

from typing import Any

from budgetq.domain.pricing import Usage
from budgetq.domain.statuses import CallOutcome
from budgetq.errors import LLMCallError, PromptTooLongError, RetryableCallError, SpendLimitReachedError


def outcome_of(error: LLMCallError) -> CallOutcome:
    """The ``llm_calls`` status an error stands for."""
    if isinstance(error, SpendLimitReachedError):
        return CallOutcome.SPEND_LIMIT
    if isinstance(error, PromptTooLongError):
        return CallOutcome.PROMPT_TOO_LONG
    if isinstance(error, RetryableCallError):
        return CallOutcome.RETRYABLE_ERROR
    return CallOutcome.ERROR


def usage_of(message: Any, requested_ttl: str | None) -> Usage:
    """The reply's usage as a pricing record; cache writes without a TTL split go to the TTL asked for."""
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


def content_of(message: Any) -> tuple[str, object | None]:
    """The reply's text and the input of its first tool_use block."""
    texts: list[str] = []
    tool_input: object | None = None
    for block in message.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use" and tool_input is None:
            tool_input = block.input
    return "".join(texts), tool_input
