"""Settle an answered call for its batch: validate → complete, split or retry, as in design §6.

Shared by the synchronous path (``worker.process``) and the Message Batches path
(``worker.batch_api``) so both validate, split and record alike. ``judge`` is pure: what the
answer means for the batch. ``apply`` and the two fallbacks write it inside the caller's
transaction, fenced by the claim's lease token (a lost lease raises LeaseLostError).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.orm import Session

from budgetq.answers import Answer, validate
from budgetq.statuses import BatchStatus
from budgetq.store import batches as store
from budgetq.store.runs import finish_if_done

log = logging.getLogger("budgetq.worker")

OVERFLOW_STOP_REASONS = frozenset({"max_tokens", "model_context_window_exceeded"})


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


@dataclass(frozen=True)
class Settled:
    """How a batch was settled, in a word, and the batches now queued because of it."""

    word: str
    follow_ups: tuple[int, ...] = ()


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


def apply(
    session: Session, claim: store.Claim, verdict: Verdict, llm_call_id: int, max_failures: int
) -> Settled:
    """Write ``verdict`` for the claimed batch whose answering call is ``llm_call_id``."""
    if verdict.invented:
        log.warning("batch %s: ignored invented issue ids %s", claim.batch_id, list(verdict.invented)[:20])
    if verdict.step is Step.SPLIT:
        return split_or_fail(session, claim, verdict.reason)
    if verdict.step is Step.RETRY:
        return release_or_fail(session, claim, verdict.reason, max_failures)
    follow_ups = store.complete(
        session, claim, llm_call_id, verdict.answers, verdict.missing, split_missing=verdict.split_missing
    )
    finish_if_done(session, claim.run_id)
    return Settled("partial" if follow_ups else "succeeded", tuple(follow_ups))


def split_or_fail(session: Session, claim: store.Claim, reason: str) -> Settled:
    """Halve the batch; a single issue that cannot be answered fails with ``reason``."""
    if len(claim.issues) > 1:
        return Settled("split", tuple(store.split(session, claim, reason)))
    store.fail(session, claim, reason)
    finish_if_done(session, claim.run_id)
    return Settled("failed")


def release_or_fail(session: Session, claim: store.Claim, reason: str, max_failures: int) -> Settled:
    """Queue the batch again, counting a failure; after ``max_failures`` split it (or fail one issue)."""
    if claim.failures + 1 < max_failures:
        store.release(session, claim, reason)
        return Settled("released", (claim.batch_id,))
    return split_or_fail(session, claim, f"failed {claim.failures + 1} times; last: {reason}")


def recovered(batch_id: int, status: str, queued_children: tuple[int, ...]) -> Settled:
    """How ``apply`` had settled the batch, read back after its COMMIT went unanswered (the status
    it left, and the halves or follow-ups still to send)."""
    if status == BatchStatus.SUCCEEDED.value:
        return Settled("partial" if queued_children else "succeeded", queued_children)
    if status == BatchStatus.SPLIT.value:
        return Settled("split", queued_children)
    if status == BatchStatus.FAILED.value:
        return Settled("failed")
    return Settled("released", (batch_id,) if status == BatchStatus.QUEUED.value else ())
