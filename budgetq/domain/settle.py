"""What becomes of a batch, as pure rules: the verdict on an answer, the rule after a failure, and the
one word (``Outcome``) a worker reports for every batch it touched.

Both call paths (synchronous and Message Batches) and the reaper decide with these functions; the
worker's ``settle`` module only writes what they decide (docs/architecture.md, "The call protocol").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from budgetq.domain.answers import Answer, validate

OVERFLOW_STOP_REASONS = frozenset({"max_tokens", "model_context_window_exceeded"})


class Outcome(StrEnum):
    """What one task did with its batch, in a word (the metric label and the task's return value)."""

    NOT_CLAIMED = "not-claimed"  # another worker holds it, or it is already terminal
    LEASE_LOST = "lease-lost"  # the lease expired under us; the reaper's requeue wins
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # answered in part; the unanswered ids went to a follow-up batch
    SPLIT = "split"
    RELEASED = "released"  # back to the queue, one more failure counted
    FAILED = "failed"
    RUN_STOPPED = "run-stopped"  # a spend cap or the API's spend limit stopped the run
    RUN_CANCELLED = "run-cancelled"  # `budgetq cancel` ended the run before this attempt; nothing sent
    WAITING_FOR_CAP = "waiting-for-cap"  # the cap's room is held by calls in flight
    NOT_SENT = "not-sent"  # the rate limiter was unreachable; nothing was sent
    UNRECORDED = "unrecorded"  # PostgreSQL stayed down past the write window after a paid answer


class Step(StrEnum):
    """What becomes of a batch after its call answered."""

    COMPLETE = "complete"  # write the valid answers; unanswered ids go to a follow-up batch
    SPLIT = "split"  # the answer overflowed or was refused: halve the batch
    RETRY = "retry"  # nothing usable came back: ask again (counted as a failure)


@dataclass(frozen=True)
class Verdict:
    """What an answer means for its batch."""

    step: Step
    reason: str = ""
    answers: tuple[Answer, ...] = ()
    missing: tuple[int, ...] = ()
    split_missing: bool = False
    invented: tuple[int, ...] = ()


def judge(tool_input: object | None, stop_reason: str | None, issue_ids: tuple[int, ...]) -> Verdict:
    """The verdict on an answer for a batch of ``issue_ids`` (validation per issue, answers.validate)."""
    overflow = stop_reason in OVERFLOW_STOP_REASONS
    if tool_input is None:
        if overflow or stop_reason == "refusal":
            # A refusal is about some issue's content: halving isolates it instead of asking again.
            return Verdict(Step.SPLIT, f"the answer hit stop_reason={stop_reason}")
        return Verdict(Step.RETRY, f"no tool answer (stop_reason={stop_reason})")
    validation = validate(tool_input, issue_ids)
    if not validation.answers:
        if overflow:
            return Verdict(Step.SPLIT, f"the answer hit stop_reason={stop_reason}")
        return Verdict(Step.RETRY, f"the answer had no valid entry: {'; '.join(validation.problems[:3])}")
    return Verdict(
        Step.COMPLETE,
        answers=tuple(validation.answers),
        missing=tuple(validation.missing),
        # After an overflow the entries that did arrive complete are kept (they are paid for);
        # the rest is split in two so each half fits the output allowance.
        split_missing=overflow,
        invented=tuple(validation.invented),
    )


class Next(StrEnum):
    """Where a batch goes after a failed try."""

    RELEASE = "release"  # queue it again, one failure more
    SPLIT = "split"  # halve it: a smaller request may succeed, and a bad issue is isolated
    FAIL = "fail"  # a single issue that cannot be answered: fail it with the reason


@dataclass(frozen=True)
class Decision:
    """The rule's answer: where the batch goes, and the reason recorded with it."""

    next: Next
    reason: str
    # The failures a half of more than one issue starts with (``half_failures``), when ``next`` is SPLIT.
    inherited: int = 0


def exhausted(failures_before: int, max_failures: int) -> bool:
    """True when this failure (one more than ``failures_before``) uses up the batch's tries."""
    return failures_before + 1 >= max_failures


def exhausted_reason(failures_before: int, reason: str) -> str:
    """The reason recorded when the tries are used up: how many, and the last one's reason."""
    return f"failed {failures_before + 1} times; last: {reason}"


def unanswerable(issues: int, reason: str, inherited: int = 0) -> Decision:
    """A batch that cannot be answered as it is: halve it (its halves starting at ``inherited``
    failures), or fail it when it is a single issue."""
    return Decision(Next.SPLIT if issues > 1 else Next.FAIL, reason, inherited)


def after_failure(failures_before: int, max_failures: int, issues: int, reason: str) -> Decision:
    """A try failed: queue the batch again until its tries are used up, then treat it as unanswerable.

    Halves of a batch that used up its tries keep all but one of them: each inner half is tried once
    and split again at its first failure, so an always-failing batch of N issues costs
    ``max_failures + (N - 2) + N * max_failures`` calls, not ``max_failures * (2N - 1)``."""
    if not exhausted(failures_before, max_failures):
        return Decision(Next.RELEASE, reason)
    return unanswerable(issues, exhausted_reason(failures_before, reason), max(0, max_failures - 1))


def half_failures(inherited: int, issues: int) -> int:
    """The failures a half of ``issues`` starts with: a single issue gets its own full tries (it may be
    the one bad issue, or the victim of a bad neighbour); a larger half inherits its parent's."""
    return 0 if issues == 1 else inherited
