"""The stand-in's Messages replies: the errors a fault draw turns into, the answer, and its message.

``raise_transport_fault`` applies a draw's transport faults (and the spend limit, ``fail_first_n``
and the context window) as API errors; ``answer_for`` writes the answer (refusal, text or one
``record_diagnoses`` tool call with the draw's answer faults); ``message_body`` and
``stream_events`` put it in the API's JSON or server-sent-event shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from budgetq.devtools.standin.answers import (
    categories_of,
    choose_tool,
    diagnose,
    issues_in,
    text_answer,
    tool_answer,
)
from budgetq.devtools.standin.faults import FaultDraw, FaultPlan
from budgetq.devtools.standin.http import ApiFailure, invalid_request, new_id
from budgetq.devtools.standin.mapping import JSONDict
from budgetq.devtools.standin.requests import MessagesRequest, TokenCounter


@dataclass(frozen=True)
class Answer:
    """The assistant's content, why it stopped, its output tokens and the answer faults applied."""

    content: list[JSONDict]
    stop_reason: str
    output_tokens: int
    stop_details: JSONDict | None = None
    faults: tuple[str, ...] = ()


def _first_of_next_month() -> str:
    now = datetime.now(UTC)
    return f"{now.year + now.month // 12}-{now.month % 12 + 1:02d}-01"


def raise_transport_fault(
    plan: FaultPlan, draw: FaultDraw, calls: int, needed: int, context_window: int
) -> None:
    """Raise the API error this request gets before any answer (call number ``calls`` of the plan,
    needing ``needed`` tokens of context), if any; a ``drop`` is left to the caller."""
    if plan.spend_limit:
        raise ApiFailure(
            429,
            "rate_limit_error",
            "You have reached your API usage limits: your organization has crossed its monthly API "
            "usage threshold, set based on your organization's API tier. You will regain access on "
            f"{_first_of_next_month()} at 00:00 UTC.",
            fault="spend_limit",
            details={"error_code": "enforced_spend_limit_reached"},
        )
    if calls <= plan.fail_first_n:
        raise ApiFailure(529, "overloaded_error", "Overloaded", fault="fail_first_n")
    if needed > context_window:
        raise invalid_request(f"prompt is too long: {needed} tokens > {context_window} maximum")
    if draw.transport == "overloaded":
        raise ApiFailure(529, "overloaded_error", "Overloaded", fault="overloaded")
    if draw.transport == "server_error":
        raise ApiFailure(500, "api_error", "Internal server error", fault="server_error")
    if draw.transport == "rate_limited":
        raise ApiFailure(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
            fault="rate_limited",
            retry_after=draw.retry_after,
        )


def answer_for(
    req: MessagesRequest,
    draw: FaultDraw,
    tokens: TokenCounter,
    issues: list[tuple[int, str]] | None = None,
) -> Answer:
    """The answer to ``req`` with the answer faults of ``draw``, its output measured by ``tokens``;
    ``issues`` is ``issues_in(req.user_text)`` when the caller has it already (parsing costs)."""
    if draw.answer == "refusal":
        text = "I can't help with this request."
        details = {"type": "refusal", "category": None, "explanation": None}
        output = tokens.of_text(text)
        return Answer([{"type": "text", "text": text}], "refusal", output, details, ("refusal",))
    try:
        tool = choose_tool(req.tools, req.tool_choice)
    except ValueError as exc:
        raise invalid_request(str(exc)) from None
    if issues is None:
        issues = issues_in(req.user_text)
    if tool is None:
        text, stop_reason = text_answer([i for i, _ in issues], tokens.of_text, req.max_tokens)
        output = req.max_tokens if stop_reason == "max_tokens" else tokens.of_text(text)
        return Answer([{"type": "text", "text": text}], stop_reason, output)
    categories = categories_of(tool)  # once per call, not per issue
    entries = [diagnose(i, t, categories) for i, t in issues]
    tool_input, stop_reason, output = tool_answer(entries, draw, req.max_tokens, tokens.of_json)
    block = {"type": "tool_use", "id": new_id("toolu_"), "name": tool["name"], "input": tool_input}
    applied = tuple(n for n in draw.names() if n not in ("slow", "stream_overloaded"))
    return Answer([block], stop_reason, output, None, applied)


def message_body(req: MessagesRequest, answer: Answer, split: tuple[int, int, int], ttl: str) -> JSONDict:
    """The API's ``message`` object, with usage split into (uncached, cache write, cache read) input."""
    uncached, creation, read = split
    by_ttl = {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}
    by_ttl[f"ephemeral_{ttl}_input_tokens"] = creation
    usage: JSONDict = {"input_tokens": uncached, "cache_creation_input_tokens": creation}
    usage["cache_read_input_tokens"] = read
    usage |= {"cache_creation": by_ttl, "output_tokens": answer.output_tokens, "service_tier": "standard"}
    return {
        "id": new_id("msg_"), "type": "message", "role": "assistant", "model": req.model,
        "content": answer.content, "stop_reason": answer.stop_reason, "stop_sequence": None,
        "stop_details": answer.stop_details, "usage": usage,
    }  # fmt: skip


def _event(kind: str, **fields: object) -> tuple[str, JSONDict]:
    return kind, {"type": kind, **fields}


def stream_events(message: JSONDict, overloaded: bool) -> list[tuple[str, JSONDict]]:
    """The SSE events whose accumulation is ``message`` (or an overloaded error mid-stream)."""
    usage = message["usage"]
    start = dict(message, content=[], stop_reason=None, stop_details=None, usage=dict(usage, output_tokens=1))
    events = [_event("message_start", message=start), _event("ping")]
    if overloaded:
        return [*events, _event("error", error={"type": "overloaded_error", "message": "Overloaded"})]
    for index, block in enumerate(message["content"]):
        tool = block["type"] == "tool_use"
        text = json.dumps(block["input"]) if tool else block["text"]
        kind, key = ("input_json_delta", "partial_json") if tool else ("text_delta", "text")
        skeleton = dict(block, input={}) if tool else dict(block, text="")
        events.append(_event("content_block_start", index=index, content_block=skeleton))
        for at in range(0, len(text), 96):
            events.append(
                _event("content_block_delta", index=index, delta={"type": kind, key: text[at : at + 96]})
            )
        events.append(_event("content_block_stop", index=index))
    delta = {k: message[k] for k in ("stop_reason", "stop_sequence", "stop_details")}
    final = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")}
    final["output_tokens"] = usage["output_tokens"]
    return [*events, _event("message_delta", delta=delta, usage=final), _event("message_stop")]
