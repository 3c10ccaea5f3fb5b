"""The life cycles of runs, batches, issues-in-a-run and call attempts, as string enums."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """Where a run stands."""

    PLANNED = "planned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"
    CANCELLED = "cancelled"  # by `budgetq cancel`: its queued batches will never be called


class BatchStatus(StrEnum):
    """Where a batch stands; succeeded, failed and split are terminal."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SPLIT = "split"
    CANCELLED = "cancelled"  # its run was cancelled while it waited in the queue: never called

    @property
    def terminal(self) -> bool:
        """True when no worker will touch the batch again."""
        return self in (BatchStatus.SUCCEEDED, BatchStatus.FAILED, BatchStatus.SPLIT, BatchStatus.CANCELLED)


class IssueStatus(StrEnum):
    """What became of one issue in one run."""

    PENDING = "pending"
    ANSWERED = "answered"
    FAILED = "failed"
    OVERSIZE = "oversize"
    DEFERRED = "deferred"
    CANCELLED = "cancelled"  # its run was cancelled before its batch was called; reprocess takes it
    REUSED = "reused"  # answered at no cost: an earlier paid answer to the same question (domain.reuse)


class CallOutcome(StrEnum):
    """How one HTTP attempt at the Messages API ended."""

    OK = "ok"
    RETRYABLE_ERROR = "retryable_error"
    ERROR = "error"
    PROMPT_TOO_LONG = "prompt_too_long"
    SPEND_LIMIT = "spend_limit"
    PENDING = "pending"  # written before the request is sent; settled after it
    UNKNOWN = "unknown"  # its worker died while pending: it may have been billed (the reaper's mark)


class RunKind(StrEnum):
    """Why a run was started."""

    DEMO = "demo"
    MANUAL = "manual"
    NIGHTLY = "nightly"
    REPROCESS = "reprocess"


class ReservationStatus(StrEnum):
    """Where a spend reservation stands; a held or unknown one still counts against its caps."""

    HELD = "held"
    SETTLED = "settled"
    RELEASED = "released"
    UNKNOWN = "unknown"


class ApiMode(StrEnum):
    """How a run's batches reach the model: one synchronous call each, or the Message Batches API."""

    SYNC = "sync"
    BATCH_API = "batch-api"


class MessageBatchStatus(StrEnum):
    """Where one of our Message Batches stands; ingested and abandoned are terminal."""

    SUBMITTING = "submitting"  # its batches are claimed; the create call has not been confirmed
    IN_PROGRESS = "in_progress"  # the API holds it (its id is stored)
    INGESTING = "ingesting"  # it ended; a poller is writing its results under a lease
    INGESTED = "ingested"
    ABANDONED = "abandoned"  # the create call failed or was never confirmed; its batches went back


class IssueState(StrEnum):
    """Whether an issue of a set still stands: a snapshot load resolves the checks no longer failing."""

    OPEN = "open"
    RESOLVED = "resolved"
