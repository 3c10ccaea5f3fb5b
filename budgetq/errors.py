"""The budgetq error tree.

BudgetqError
├── ConfigurationError        a setting is missing or wrong (bad URL, no API key in live mode)
├── BudgetExceededError       a call would break the per-call window guard (the seed's error)
├── SpendCapExceededError     a call's worst-case cost does not fit the run's or day's USD cap
│   └── SpendCapBusyError     …only while calls in flight hold reservations: it may fit once they settle
├── RateLimitUnavailableError the shared rate limiter (Redis) admitted nothing in time; nothing was sent
├── RequestOverRateLimitError one request exceeds a per-minute limit on its own: split the batch
├── LLMCallError              a Messages API call failed; carries status and request id
│   ├── RetryableCallError    429, 529, 5xx, 408, 409, connection errors and timeouts
│   ├── NonRetryableCallError 400, 401, 403, 404 and other 4xx: retrying unchanged cannot help
│   │   ├── CassetteMissingError replay mode has no recorded answer for the request
│   │   └── CountTokensUnavailableError the endpoint has no count_tokens (a gateway's 404): estimate instead
│   ├── PromptTooLongError    the request overflowed the window or max_tokens: split the batch
│   └── SpendLimitReachedError the organisation's spend limit is reached: stop the run
├── AnswerInvalidError        the model's answer could not be used (malformed, refused, truncated)
├── LeaseLostError            a worker lost its batch lease; it must not write
├── IngestError               an issue file could not be loaded
├── SelectorError             a selection of issues (reprocess --failed-only, --issues …) is malformed
├── NotFoundError             an issue set, run or batch does not exist (or a selection matches nothing)
│   └── NothingSelectedError  a selection matches no issue of the set (--failed-only: nothing failed)
└── QueryFailedError          a read-only query of `budgetq db query` was refused by PostgreSQL
"""

from __future__ import annotations


class BudgetqError(Exception):
    """Base class for all budgetq errors."""


class ConfigurationError(BudgetqError):
    """A setting is missing or malformed."""


class BudgetExceededError(BudgetqError):
    """A call would exceed the per-call window guard; raised before any network call."""


class SpendCapExceededError(BudgetqError):
    """A call's worst-case cost does not fit the remaining USD spend cap."""


class SpendCapBusyError(SpendCapExceededError):
    """The cap is taken up by reservations of calls in flight; the call may fit once they settle."""


class RateLimitUnavailableError(BudgetqError):
    """The shared rate limiter could not admit a call in time (Redis down, or no free slot); not sent."""


class RequestOverRateLimitError(BudgetqError):
    """One request alone exceeds a per-minute limit; only a smaller request can ever be admitted."""


class LLMCallError(BudgetqError):
    """A Messages API call failed."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        self.error_type = error_type


class RetryableCallError(LLMCallError):
    """A failure that a later attempt can fix (rate limit, overload, server error, network)."""


class NonRetryableCallError(LLMCallError):
    """A failure that the same request will meet again (bad request, auth, not found)."""


class CountTokensUnavailableError(NonRetryableCallError):
    """``messages.count_tokens`` does not exist behind this base URL (404 or 405): decide on the estimate."""


class PromptTooLongError(LLMCallError):
    """The request overflowed the context window or the output allowance; split the batch."""


class SpendLimitReachedError(LLMCallError):
    """The API reports the organisation's spend limit as reached; the run must stop."""


class CassetteMissingError(NonRetryableCallError):
    """Replay mode has no recorded answer for a request; record it first."""


class AnswerInvalidError(BudgetqError):
    """The model's answer could not be used as results."""


class EnqueueError(BudgetqError):
    """The broker could not be reached while a planned run's batches were being sent: the run was
    stopped with the reason instead of being left running with nobody to work on it."""


class LeaseLostError(BudgetqError):
    """The worker's lease on a batch expired or was taken over; its writes are refused."""


class IngestError(BudgetqError):
    """An issue file could not be loaded."""


class SelectorError(BudgetqError):
    """A selection of a set's issues is malformed (options combined, ids not numbers, unknown priority)."""


class NotFoundError(BudgetqError):
    """An issue set, run or batch does not exist."""


class NothingSelectedError(NotFoundError):
    """A selection matches no issue of the set; for --failed-only that is good news, not a mistake."""


class QueryFailedError(BudgetqError):
    """A read-only SQL query given on the command line failed (syntax, unknown column, a write)."""


class RunCancelledError(SpendCapExceededError):
    """The run was cancelled: no further attempt of its batches may be sent (refused at the spend gate)."""


class ExportError(BudgetqError):
    """Results could not be exported (nothing matched, an unwritable output path, a filter not available)."""
