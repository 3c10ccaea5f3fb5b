"""A Message Batch whose create call failed: what becomes of its batches, by what the API answered.

The create call itself retries what the retry policy calls retryable (``MessageBatchesClient.create``);
what reaches here is final for that submission, and is treated as a synchronous call's failure of the
same kind (``worker.process``, ``_call_failed``; ``budgetq.domain.message_batches.after_create_failure``):
a refusal is never sent again as the same create, its batches fail with the API's answer; too large
is sent again in halves (a single request: its batch halved); the spend limit stops the run; a
retryable answer that outlasted the retries counts a failure against each batch and waits for the
next poll (after ``batch_max_failures`` the batch is halved, a single issue fails); an unanswered
create waits, unblamed, for the next poll.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.orm import Session

from budgetq.adapters.store import batches as store
from budgetq.adapters.store import message_batches as mb
from budgetq.adapters.store import run_issues
from budgetq.adapters.store.completion import finish_if_done
from budgetq.adapters.store.engine import transaction
from budgetq.domain.message_batches import CreateStep, after_create_failure
from budgetq.errors import LLMCallError
from worker import settle
from worker.batch_api.context import BatchApiContext, each_held, fail_claims, give_back
from worker.batch_api.spend import close_requests

log = logging.getLogger("budgetq.worker.batch_api")


def create_failed(
    api: BatchApiContext, tracked: mb.Tracked, claims: Sequence[store.Claim], error: LLMCallError
) -> CreateStep | None:
    """Abandon the submission whose create failed with ``error`` and do what that means for its
    batches; the step taken (None when the submission was given up meanwhile and is no longer ours).
    On ``HALVE`` the claims stay held, for the caller to send again in two halves."""
    step = after_create_failure(error, len(claims))
    reason = f"creating the Message Batch failed: {error}"
    follow_ups: list[int] = []
    with transaction(api.resources.sessions) as session:
        if not mb.abandon(session, tracked, reason):
            return None
        # Only an answer from the API says nothing was created; without one it may have been billed.
        close_requests(session, tracked.id, None if step is CreateStep.WAIT_UNSEEN else error)
        if step is CreateStep.WAIT_UNSEEN:
            give_back(session, claims, reason)
        elif step in (CreateStep.WAIT, CreateStep.SPLIT):
            # WAIT: the API answered, retryably, through every retry: a failure counted per batch, as a
            # synchronous call's would be, so an API that keeps failing ends the run (halved, then
            # failed) instead of keeping it running poll after poll.
            most = api.settings.batch_max_failures

            def decide(claim: store.Claim) -> settle.Settled:
                if step is CreateStep.WAIT:
                    return settle.release_or_fail(session, claim, reason, most)
                return settle.split_or_fail(session, claim, reason)

            follow_ups += [b for s in each_held(session, claims, reason, decide) for b in s.follow_ups]
        elif step is CreateStep.FAIL:
            _fail(session, claims, reason)
        elif step is CreateStep.STOP_RUN:
            _fail(session, claims, reason)
            run_issues.stop_run(session, tracked.run_id, reason)
    log.warning(
        "run %s: creating a Message Batch of %s requests failed (%s): %s",
        tracked.run_id,
        len(claims),
        step.value,
        error,
    )
    api.dispatch(follow_ups)
    return step


def _fail(session: Session, claims: Sequence[store.Claim], reason: str) -> None:
    """Fail the claimed batches for good, with ``reason``, and close their run if that was the last."""
    fail_claims(session, claims, reason)
    if claims:
        finish_if_done(session, claims[0].run_id)


def abandon_unconfirmed(
    api: BatchApiContext, tracked: mb.Tracked, claims: Sequence[store.Claim], reason: str
) -> None:
    """Give up a submission never confirmed (its submitter died mid-create): its batches go back to the
    queue unblamed, and since the create may have gone through unseen, what its requests reserved stays
    counted as unknown."""
    with transaction(api.resources.sessions) as session:
        if not mb.abandon(session, tracked, reason):
            return
        close_requests(session, tracked.id, None)
        give_back(session, claims, reason)
