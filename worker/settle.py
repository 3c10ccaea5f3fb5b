"""Write what the settle rules decide for a claimed batch (docs/architecture.md, "The call protocol").

Shared by the synchronous path (``worker.process``) and the Message Batches path
(``worker.batch_api``), so both validate, split and record alike. The decisions are pure and live in
``budgetq.domain.settle``; every function here writes inside the caller's transaction, fenced by the
claim's lease token (a lost lease raises LeaseLostError).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.orm import Session

from budgetq.adapters.store import batches as store
from budgetq.adapters.store.completion import finish_if_done
from budgetq.domain.settle import Decision, Next, Outcome, Step, Verdict, after_failure, unanswerable
from budgetq.domain.statuses import BatchStatus

log = logging.getLogger("budgetq.worker")


@dataclass(frozen=True)
class Settled:
    """How a batch was settled, and the batches now queued because of it."""

    outcome: Outcome
    follow_ups: tuple[int, ...] = ()


def apply(
    session: Session,
    claim: store.Claim,
    verdict: Verdict,
    llm_call_id: int,
    max_failures: int,
    cost_usd: Decimal | None = None,
) -> Settled:
    """Write ``verdict`` for the claimed batch whose answering call is ``llm_call_id`` (which cost
    ``cost_usd``: read from its row when not given)."""
    if verdict.invented:
        log.warning("batch %s: ignored invented issue ids %s", claim.batch_id, list(verdict.invented)[:20])
    if verdict.step is Step.SPLIT:
        return split_or_fail(session, claim, verdict.reason)
    if verdict.step is Step.RETRY:
        return release_or_fail(session, claim, verdict.reason, max_failures)
    follow_ups = store.complete(
        session,
        claim,
        llm_call_id,
        verdict.answers,
        verdict.missing,
        split_missing=verdict.split_missing,
        cost_usd=cost_usd,
    )
    finish_if_done(session, claim.run_id)
    return Settled(Outcome.PARTIAL if follow_ups else Outcome.SUCCEEDED, tuple(follow_ups))


def split_or_fail(session: Session, claim: store.Claim, reason: str) -> Settled:
    """Halve the batch; a single issue that cannot be answered fails with ``reason``."""
    return _write(session, claim, unanswerable(len(claim.issues), reason))


def release_or_fail(session: Session, claim: store.Claim, reason: str, max_failures: int) -> Settled:
    """Queue the batch again, counting a failure; after ``max_failures`` split it (or fail one issue)."""
    return _write(session, claim, after_failure(claim.failures, max_failures, len(claim.issues), reason))


def fail(session: Session, claim: store.Claim, reason: str) -> Settled:
    """Fail the batch for good (the same request would fail the same way) and close its run if done."""
    store.fail(session, claim, reason)
    finish_if_done(session, claim.run_id)
    return Settled(Outcome.FAILED)


def _write(session: Session, claim: store.Claim, decision: Decision) -> Settled:
    if decision.next is Next.RELEASE:
        store.release(session, claim, decision.reason)
        return Settled(Outcome.RELEASED, (claim.batch_id,))
    if decision.next is Next.SPLIT:
        return Settled(Outcome.SPLIT, tuple(store.split(session, claim, decision.reason, decision.inherited)))
    return fail(session, claim, decision.reason)


def recovered(batch_id: int, status: str, queued_children: tuple[int, ...]) -> Settled:
    """How ``apply`` had settled the batch, read back after its COMMIT went unanswered (the status
    it left, and the halves or follow-ups still to send)."""
    if status == BatchStatus.SUCCEEDED.value:
        return Settled(Outcome.PARTIAL if queued_children else Outcome.SUCCEEDED, queued_children)
    if status == BatchStatus.SPLIT.value:
        return Settled(Outcome.SPLIT, queued_children)
    if status == BatchStatus.FAILED.value:
        return Settled(Outcome.FAILED)
    return Settled(Outcome.RELEASED, (batch_id,) if status == BatchStatus.QUEUED.value else ())
