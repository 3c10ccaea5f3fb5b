"""Message Batches as data: one request per packed batch, grouped under the API's limits.

A packed batch becomes one request of a Message Batch whose ``custom_id`` is ``"b<batch id>"``;
its params are exactly the synchronous call's (``CallRequest.params()``). A Message Batch holds at
most 100,000 requests and 256 MB (docs "Batch processing", "Batch limitations"), so the requests
of a run are grouped in order, starting a new Message Batch when the next request would break
either limit. Reading a result back starts here too: which batch a ``custom_id`` names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from budgetq.domain.statuses import ApiMode
from budgetq.errors import (
    ConfigurationError,
    LLMCallError,
    PromptTooLongError,
    RetryableCallError,
    SpendLimitReachedError,
)

MAX_REQUESTS = 100_000
# "256 MB" read as the smaller 10^6 megabyte, so a Message Batch is never refused for its size.
MAX_BYTES = 256_000_000
# The create body is {"requests": [entry, entry, ...]}: the wrapper plus one comma per entry.
_ENVELOPE_BYTES = len(b'{"requests": []}')
_CUSTOM_ID = re.compile(r"^b([1-9][0-9]{0,17})$")


class ResultKind(StrEnum):
    """How one request of a Message Batch ended (the result's ``type``)."""

    SUCCEEDED = "succeeded"
    ERRORED = "errored"
    EXPIRED = "expired"
    CANCELED = "canceled"


class RetryPath(StrEnum):
    """Where an errored, expired or canceled request goes next."""

    RESUBMIT = "resubmit"  # into the run's next Message Batch
    SYNC = "sync"  # to the synchronous Messages API, through the ordinary batch task


class CreateStep(StrEnum):
    """What becomes of the requests of a Message Batch whose create call failed."""

    # The API failed (a retryable status whose retries the call used up): nothing was created; they
    # wait, unblamed, for the next poll's submit.
    WAIT = "wait"
    # No answer at all: it may exist without its id. They wait for the next poll's submit; what they
    # reserved stays counted as unknown.
    WAIT_UNSEEN = "wait-unseen"
    # Too large as a whole: the same requests go out again as two Message Batches of half as many.
    HALVE = "halve"
    # One request too large: its batch is halved (a single issue fails), as after a synchronous 413.
    SPLIT = "split"
    # The organisation's spend limit: the run stops, as after a synchronous call that met it.
    STOP_RUN = "stop-run"
    # Refused (400, 401, 403, 404, 422, ...): the same create would be refused again, so it is never
    # sent again; its batches fail with the API's answer.
    FAIL = "fail"


def after_create_failure(error: LLMCallError, requests: int) -> CreateStep:
    """What a failed create of ``requests`` requests means, by the retry policy's classification of its
    error (``budgetq.adapters.llm.retries.classify``), as a synchronous call's failure would."""
    if error.status is None and not isinstance(error, RetryableCallError | SpendLimitReachedError):
        return CreateStep.WAIT_UNSEEN
    if isinstance(error, SpendLimitReachedError):
        return CreateStep.STOP_RUN
    if isinstance(error, PromptTooLongError):
        return CreateStep.HALVE if requests > 1 else CreateStep.SPLIT
    if isinstance(error, RetryableCallError):
        return CreateStep.WAIT
    return CreateStep.FAIL


def custom_id(batch_id: int) -> str:
    """The ``custom_id`` of batch ``batch_id``'s request: ``b123``."""
    if batch_id < 1:
        raise ValueError(f"batch ids are positive, got {batch_id}")
    return f"b{batch_id}"


def batch_id_of(value: str) -> int | None:
    """The batch id a ``custom_id`` names, or None when it is not one of ours."""
    match = _CUSTOM_ID.match(value)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class BatchRequest:
    """One request of a Message Batch: the entry sent and its size in the create body."""

    batch_id: int
    entry: Mapping[str, Any]
    size_bytes: int


def request_for(batch_id: int, params: Mapping[str, Any]) -> BatchRequest:
    """The Message Batch request for a batch, from ``CallRequest.params()`` (keyword arguments of
    ``messages.create``): ``extra_body`` is merged into the params, as the SDK would send them."""
    body = {k: v for k, v in params.items() if k not in ("extra_body", "stream")}
    body.update(params.get("extra_body") or {})
    entry = {"custom_id": custom_id(batch_id), "params": body}
    return BatchRequest(batch_id, entry, len(json.dumps(entry).encode()) + len(b", "))


def group(
    requests: Iterable[BatchRequest], *, max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES
) -> list[tuple[BatchRequest, ...]]:
    """Requests grouped in order into Message Batches of at most ``max_requests`` and ``max_bytes``."""
    if not 1 <= max_requests <= MAX_REQUESTS or not 1 <= max_bytes <= MAX_BYTES:
        raise ConfigurationError(
            f"Message Batch limits must be 1..{MAX_REQUESTS} requests and 1..{MAX_BYTES} bytes, "
            f"got {max_requests} and {max_bytes}"
        )
    groups: list[tuple[BatchRequest, ...]] = []
    current: list[BatchRequest] = []
    size = _ENVELOPE_BYTES
    for request in requests:
        if request.size_bytes + _ENVELOPE_BYTES > max_bytes:
            raise ConfigurationError(
                f"batch {request.batch_id}'s request is {request.size_bytes} bytes, more than a Message "
                f"Batch may hold ({max_bytes}); raise BUDGETQ_MESSAGE_BATCH_MAX_BYTES (at most {MAX_BYTES})"
            )
        if current and (len(current) == max_requests or size + request.size_bytes > max_bytes):
            groups.append(tuple(current))
            current, size = [], _ENVELOPE_BYTES
        current.append(request)
        size += request.size_bytes
    if current:
        groups.append(tuple(current))
    return groups


def body_bytes(requests: Sequence[BatchRequest]) -> int:
    """An upper bound on the create body's size for ``requests``."""
    return _ENVELOPE_BYTES + sum(r.size_bytes for r in requests)


def resolve_api_mode(
    explicit: str | None, set_mode: str | None, *, nightly: bool, nightly_default: str
) -> ApiMode:
    """A run's API mode: the one asked for, else its issue set's, else the nightly default for
    nightly runs and ``sync`` for the rest."""
    for choice in (explicit, set_mode):
        if choice:
            return ApiMode(choice)
    return ApiMode(nightly_default) if nightly else ApiMode.SYNC
