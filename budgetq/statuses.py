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


class BatchStatus(StrEnum):
    """Where a batch stands; succeeded, failed and split are terminal."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SPLIT = "split"

    @property
    def terminal(self) -> bool:
        """True when no worker will touch the batch again."""
        return self in (BatchStatus.SUCCEEDED, BatchStatus.FAILED, BatchStatus.SPLIT)


class IssueStatus(StrEnum):
    """What became of one issue in one run."""

    PENDING = "pending"
    ANSWERED = "answered"
    FAILED = "failed"
    OVERSIZE = "oversize"
    DEFERRED = "deferred"


class CallOutcome(StrEnum):
    """How one HTTP attempt at the Messages API ended."""

    OK = "ok"
    RETRYABLE_ERROR = "retryable_error"
    ERROR = "error"
    PROMPT_TOO_LONG = "prompt_too_long"
    SPEND_LIMIT = "spend_limit"


class RunKind(StrEnum):
    """Why a run was started."""

    DEMO = "demo"
    MANUAL = "manual"
    NIGHTLY = "nightly"
    REPROCESS = "reprocess"
