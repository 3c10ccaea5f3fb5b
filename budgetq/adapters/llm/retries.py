"""Failures of Messages API calls and the one retry policy every call uses.

``ApiFailure`` is what the API (or the network) said, as plain fields; ``classify`` decides what it
means: stop the run (spend limit), split the batch (too long), retry, or give up on the request.
Errors are classified by HTTP status *and* by the API's error type, because an error inside a stream
arrives with HTTP 200 (``overloaded_error`` mid-stream is as retryable as a 529). ``retry_policy`` is
the tenacity policy: full-jitter exponential backoff, never shorter than the server's retry-after,
bounded by attempts and by total time. ``client`` (beside this module) turns SDK exceptions into
``ApiFailure``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_before_delay

from budgetq.errors import (
    LLMCallError,
    NonRetryableCallError,
    PromptTooLongError,
    RetryableCallError,
    SpendLimitReachedError,
)
from budgetq.settings import Settings

# Retried whatever the body says: request timeout, conflict, rate limit; and every 5xx (529 included).
RETRYABLE_STATUS = frozenset({408, 409, 429})
# An error that arrives inside a stream (HTTP 200) is classified by its type alone.
RETRYABLE_ERROR_TYPES = frozenset({"overloaded_error", "api_error", "rate_limit_error", "timeout_error"})
# The API's ``error.details.error_code`` when an organisation's spend limit stops it (429 or 402).
SPEND_LIMIT_CODES = frozenset(
    {
        "enforced_spend_limit_reached",
        "contract_spend_limit_reached",
        "linked_organization_spend_limit_reached",
    }
)
_SPEND_LIMIT_WORDS = ("spend limit", "spend_limit", "api usage limits", "credit balance is too low")


def retry_after_seconds(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """The server's requested wait in seconds, from ``retry-after-ms``, else ``retry-after`` (seconds or
    an HTTP date, measured from ``now``, a Unix time, default the clock)."""
    if headers is None:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class ApiFailure:
    """What the API (or the network) said when an attempt failed; recorded as is in cassettes."""

    status: int | None
    error_type: str
    message: str
    error_code: str | None = None
    request_id: str | None = None
    retry_after: float | None = None

    def interaction(self) -> dict[str, Any]:
        """This failure as a cassette interaction."""
        return {"kind": "error", **asdict(self)}

    @classmethod
    def from_interaction(cls, data: Mapping[str, Any]) -> ApiFailure:
        """The failure a cassette recorded."""
        return cls(**{k: v for k, v in data.items() if k != "kind"})

    def error(self) -> LLMCallError:
        """The budgetq error that says what to do about this failure."""
        return classify(self)


def classify(failure: ApiFailure) -> LLMCallError:
    """Decide what a failure means: stop the run, split the batch, retry, or give up on the request."""
    status, etype, text = failure.status, failure.error_type, failure.message
    lowered = text.lower()
    kwargs: dict[str, Any] = {
        "status": status,
        "request_id": failure.request_id,
        "error_type": etype,
        "retry_after": failure.retry_after,
    }
    label = f"{status if status is not None else 'no response'} {etype}: {text}"
    spend_words = status in (400, 402, 429) and any(w in lowered for w in _SPEND_LIMIT_WORDS)
    if failure.error_code in SPEND_LIMIT_CODES or spend_words:
        return SpendLimitReachedError(
            f"the API says the spend limit is reached ({label}); raise the limit in the Anthropic "
            "console or wait for the next period, then reprocess the run",
            **kwargs,
        )
    if status == 413 or etype == "request_too_large" or "prompt is too long" in lowered:
        return PromptTooLongError(f"request too large for the model ({label}); split the batch", **kwargs)
    in_stream = status is None or 200 <= status < 300
    if (
        status in RETRYABLE_STATUS
        or (status is not None and status >= 500)
        or (in_stream and etype in RETRYABLE_ERROR_TYPES)
        or (status is None and etype in ("connection_error", "timeout"))
    ):
        return RetryableCallError(label, **kwargs)
    return NonRetryableCallError(
        f"{label}; the same request would fail again, so it is not retried", **kwargs
    )


def full_jitter_wait(
    base: float, cap: float, retry_after_cap: float, rng: random.Random | None = None
) -> Callable[[RetryCallState], float]:
    """Exponential backoff with full jitter (uniform in [0, min(cap, base * 2**(n-1))]), never shorter
    than the server's retry-after (up to ``retry_after_cap``)."""
    uniform = (rng or random.Random()).uniform

    def wait(state: RetryCallState) -> float:
        backoff = uniform(0, min(cap, base * 2 ** (state.attempt_number - 1)))
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is None:
            return backoff
        return max(min(float(retry_after), retry_after_cap), backoff)

    return wait


def retryable(exc: BaseException, retry_after_cap: float) -> bool:
    """Whether to try the same request again in this call: a retryable error whose retry-after (if
    any) is within the cap; a longer wait goes back to the queue instead of holding a thread."""
    if not isinstance(exc, RetryableCallError):
        return False
    return exc.retry_after is None or exc.retry_after <= retry_after_cap


def retry_policy(
    settings: Settings, sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None
) -> Retrying:
    """The one tenacity policy of every call: retry what retrying can fix, with full jitter and the
    server's retry-after, bounded by attempts and by total time (a wait that would end past the time
    budget is not started)."""
    return Retrying(
        retry=retry_if_exception(lambda exc: retryable(exc, settings.retry_after_cap_s)),
        stop=stop_after_attempt(settings.retry_max_attempts) | stop_before_delay(settings.retry_max_seconds),
        wait=full_jitter_wait(
            settings.retry_base_s, settings.retry_max_backoff_s, settings.retry_after_cap_s, rng
        ),
        sleep=sleep,
        reraise=True,
    )
