"""The SDK's exceptions as budgetq sees them: what a failed call said (``ApiFailure``), the error reply's
headers, and the budgetq error that says what to do about it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anthropic
import httpx2

from budgetq.adapters.llm.retries import ApiFailure, retry_after_seconds
from budgetq.errors import LLMCallError

# What the SDK and its transport raise; the Message Batches calls (message_batches.py) catch these too.
SDK_ERRORS: tuple[type[Exception], ...] = (anthropic.AnthropicError, httpx2.TransportError)


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """One header of a reply, or None when there were no headers."""
    return None if headers is None else headers.get(name)


def api_failure(exc: Exception) -> ApiFailure:
    """What an SDK (or transport) exception says, as plain fields."""
    if isinstance(exc, anthropic.APIStatusError):
        headers = exc.response.headers
        body: Mapping[str, Any] = exc.body if isinstance(exc.body, Mapping) else {}
        raw_error = body.get("error")
        error: Mapping[str, Any] = raw_error if isinstance(raw_error, Mapping) else {}
        raw_details = error.get("details")
        details: Mapping[str, Any] = raw_details if isinstance(raw_details, Mapping) else {}
        code = details.get("error_code")
        return ApiFailure(
            status=exc.status_code,
            error_type=str(error.get("type") or type(exc).__name__),
            message=str(error.get("message") or exc.message),
            error_code=code if isinstance(code, str) else None,
            request_id=header(headers, "request-id") or str_or_none(body.get("request_id")),
            retry_after=retry_after_seconds(headers),
        )
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return ApiFailure(status=None, error_type="timeout", message=f"timed out: {exc}")
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        return ApiFailure(status=None, error_type="connection_error", message=f"connection failed: {exc}")
    return ApiFailure(status=None, error_type=type(exc).__name__, message=f"unexpected: {exc}")


def str_or_none(value: object) -> str | None:
    """``value`` when it is a string, else None (a reply's fields are untrusted)."""
    return value if isinstance(value, str) else None


def reply_headers(error: BaseException) -> dict[str, str] | None:
    """The headers of the error reply behind ``error`` (a 429's ``retry-after`` and
    ``anthropic-ratelimit-*`` among them), or None when no reply came (or it was replayed)."""
    cause = error.__cause__
    if isinstance(cause, anthropic.APIStatusError):
        return {name.lower(): value for name, value in cause.response.headers.items()}
    return None


def translate_error(exc: Exception) -> LLMCallError:
    """Map an SDK exception to the budgetq error that says what to do about it."""
    return api_failure(exc).error()
