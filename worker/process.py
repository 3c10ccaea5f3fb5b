"""Process one batch as the call protocol says: claim → guard → reserve → call → settle → record
(docs/architecture.md, "The call protocol").

Every outcome leaves the batch in a state another worker or the reaper can pick up from:
succeeded (with a follow-up batch for unanswered ids), split in two, released for a later try,
or failed with a reason once it has failed ``batch_max_failures`` times.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from budgetq.adapters.llm.client import Attempt, LLMCallResult
from budgetq.adapters.observability.metrics import observe_lease_expiry
from budgetq.adapters.store import batches as store
from budgetq.adapters.store import calls, lifecycle, outbox, recovery, run_issues
from budgetq.adapters.store import spend as spend_store
from budgetq.adapters.store.engine import transaction
from budgetq.domain.settle import Outcome, judge
from budgetq.errors import (
    LeaseLostError,
    LLMCallError,
    PromptTooLongError,
    RateLimitUnavailableError,
    RequestOverRateLimitError,
    RetryableCallError,
    RunCancelledError,
    SpendCapBusyError,
    SpendCapExceededError,
    SpendLimitReachedError,
)
from worker import durable, settle
from worker.guarding import exact_count, guard
from worker.ledger import CallLedger
from worker.resources import Resources
from worker.telemetry import observe_attempt

log = logging.getLogger("budgetq.worker")


class BatchProcessor:
    """The synchronous call path of one worker process, on its shared ``Resources``."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.settings = resources.settings

    def process(self, batch_id: int) -> Outcome:
        """Process batch ``batch_id`` if it can be claimed; return what happened."""
        with transaction(self.resources.sessions) as session:
            claim = store.claim(session, batch_id, self.settings.lease_seconds)
        if claim is None:
            return Outcome.NOT_CLAIMED
        with self._keep_lease(claim):
            try:
                return self._call(claim)
            except LeaseLostError as exc:
                observe_lease_expiry("worker")
                log.warning("batch %s: %s", batch_id, exc)
                return Outcome.LEASE_LOST
            except Exception as exc:
                # A bug or an outage here must not strand the batch until its lease expires, nor leave
                # an attempt pending that nobody will settle.
                log.exception("batch %s: unexpected error", batch_id)
                return self._release_or_fail(
                    claim, f"internal error: {type(exc).__name__}: {exc}", abandon_pending=True
                )

    @contextmanager
    def _keep_lease(self, claim: store.Claim) -> Iterator[None]:
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.settings.lease_seconds / 3):
                try:
                    with transaction(self.resources.sessions) as session:
                        store.renew(session, claim, self.settings.lease_seconds)
                except LeaseLostError:
                    return
                except Exception:  # noqa: BLE001 - a failed renewal is retried at the next tick
                    log.exception("batch %s: lease renewal failed", claim.batch_id)

        thread = threading.Thread(target=renew, name=f"lease-{claim.batch_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()

    def _call(self, claim: store.Claim) -> Outcome:
        # Guard: the window check on the claimed batch, with an exact count near the limit.
        calibration = self.resources.calibrations.get(self.resources.sessions, self.settings, claim)
        g = guard(claim, calibration, self.settings.count_tokens_margin)
        estimated, request = g.estimated, g.request
        client = self.resources.client(claim.mode, claim.model)
        try:
            counted, uncountable = exact_count(client, g, claim.model)
        except LLMCallError as exc:
            return self._call_failed(claim, exc)
        refusal = g.refusal(counted, uncountable=uncountable)
        if refusal is not None:
            return self._split_or_fail(claim, refusal)

        def observe(attempt: Attempt) -> None:
            # Its row was closed with its spend reservation (the ledger, inside the spend gate).
            observe_attempt(claim, attempt, estimated_input=estimated, counted_input=counted)

        # Reserve (the spend gate, which writes each attempt's row with its reservation) and call; the
        # rate limit is acquired per attempt inside the client.
        ledger = CallLedger(claim, estimated, counted, self.resources.host)
        gate = self.resources.spend_gate(claim.model)
        try:
            with gate.call(claim.run_id, claim.batch_id, g.most_input(counted), ledger):
                result = client.send(request, on_attempt=observe)
        except RunCancelledError as exc:
            return self._cancelled(claim, str(exc))
        except SpendCapBusyError as exc:
            return self._wait_for_cap(claim, str(exc))
        except SpendCapExceededError as exc:
            return self._cap_reached(claim, str(exc))
        except RequestOverRateLimitError as exc:
            return self._split_or_fail(claim, str(exc))
        except RateLimitUnavailableError as exc:
            return self._not_sent(claim, str(exc))
        except LLMCallError as exc:
            return self._call_failed(claim, exc)
        # Failed attempts were observed as they were recorded; the answered one is observed here, once.
        observe_attempt(claim, result.attempts[-1], estimated_input=estimated, counted_input=counted)
        return self._settle(claim, result, ledger)

    def _settle(self, claim: store.Claim, result: LLMCallResult, ledger: CallLedger) -> Outcome:
        """Settle and record the answered call in one transaction, riding out a short outage."""
        attempt = result.attempts[-1]
        verdict = judge(result.tool_input, result.stop_reason, claim.issue_ids)
        max_failures = self.settings.batch_max_failures

        def write(session: Session) -> settle.Settled:
            # Settled already with its reservation, unless that write failed: settling again is a no-op.
            call_id = ledger.settle(session, attempt)
            if call_id is None:
                raise AssertionError(f"batch {claim.batch_id}: an answered attempt without its row")
            return settle.apply(session, claim, verdict, call_id, max_failures, attempt.cost_usd)

        def written(session: Session) -> settle.Settled | None:
            if recovery.still_held(session, claim.batch_id, claim.token):
                return None
            return settle.recovered(claim.batch_id, *recovery.batch_outcome(session, claim.batch_id))

        sessions = self.resources.sessions
        try:
            settled = durable.write(sessions, self.settings, claim.batch_id, attempt, write, written)
        except LeaseLostError:
            # The call happened and was billed: its row was closed with its reservation, answers or not.
            raise
        except Exception as exc:
            if not durable.unreachable(exc):
                raise
            return self._unrecorded(claim, attempt, exc)
        self.resources.enqueue(settled.follow_ups)
        return settled.outcome

    def _cancelled(self, claim: store.Claim, reason: str) -> Outcome:
        """The run was cancelled before this attempt: nothing is sent; the batch ends cancelled (attempts
        already made were recorded as they happened)."""
        with transaction(self.resources.sessions) as session:
            lifecycle.end_cancelled(session, claim, reason)
        log.info("batch %s: %s", claim.batch_id, reason)
        return Outcome.RUN_CANCELLED

    def _wait_for_cap(self, claim: store.Claim, reason: str) -> Outcome:
        """The cap's room is held by calls in flight: back to the queue for a while, not counted as a
        failure (a cap limits spend, not how many calls run at once)."""
        with transaction(self.resources.sessions) as session:
            store.release(session, claim, reason, count_failure=False)
        self.resources.enqueue([claim.batch_id], self.settings.spend_cap_wait_s)
        return Outcome.WAITING_FOR_CAP

    def _cap_reached(self, claim: store.Claim, reason: str) -> Outcome:
        """A cap cannot cover the next attempt: stop the run; its unstarted batches and issues fail with
        the reason (calls already in flight finish and are recorded)."""
        with transaction(self.resources.sessions) as session:
            store.fail(session, claim, reason)
            outbox.record_cap_reached(session, claim.run_id, self.settings.daily_spend_cap_usd)
            run_issues.stop_run(session, claim.run_id, reason)
        log.error("run %s stopped: %s", claim.run_id, reason)
        return Outcome.RUN_STOPPED

    def _not_sent(self, claim: store.Claim, reason: str) -> Outcome:
        """Nothing was sent (the rate limiter's Redis is down): back to the queue, not counted as a
        failure; if the broker is down too, the reaper sends it again later."""
        with transaction(self.resources.sessions) as session:
            store.release(session, claim, f"not sent: {reason}", count_failure=False)
        try:
            self.resources.enqueue([claim.batch_id])
        except Exception:  # noqa: BLE001 - the batch row is queued; the reaper resends it
            log.warning("batch %s: could not be sent again now; the reaper will", claim.batch_id)
        return Outcome.NOT_SENT

    def _call_failed(self, claim: store.Claim, exc: LLMCallError) -> Outcome:
        """What a failed call means for the batch: stop the run, split, queue again later, or fail."""
        if isinstance(exc, SpendLimitReachedError):
            with transaction(self.resources.sessions) as session:
                run_issues.stop_run(session, claim.run_id, str(exc))
                store.fail(session, claim, str(exc))
            log.error("run %s stopped: %s", claim.run_id, exc)
            return Outcome.RUN_STOPPED
        if isinstance(exc, PromptTooLongError):
            return self._split_or_fail(claim, str(exc))
        if isinstance(exc, RetryableCallError):
            # Retries are used up (or the server asked for a longer wait than a thread should hold):
            # the batch goes back to the queue, not before the server's retry-after.
            return self._release_or_fail(claim, f"call failed: {exc}", countdown=exc.retry_after)
        # 400, 401, 403, 404 and the like: the same request would fail the same way, so it is not sent again.
        return self._settled(lambda s: settle.fail(s, claim, f"call failed: {exc}"))

    def _unrecorded(self, claim: store.Claim, attempt: Attempt, exc: BaseException) -> Outcome:
        """PostgreSQL stayed unreachable through the write window: the paid answer is dropped. The batch
        keeps its lease until it expires; then the reaper queues it again and it is called again."""
        window, why = self.settings.result_write_retry_s, durable.first_line(exc)
        log.error(
            f"batch {claim.batch_id}: PostgreSQL unreachable for {window:.0f}s after the answer of request "
            f"{attempt.request_id} ({attempt.cost_usd} USD) arrived ({why}); the answer is dropped and the "
            "batch will be called again once its lease expires. Raise BUDGETQ_RESULT_WRITE_RETRY_S to ride "
            "out longer outages"
        )
        return Outcome.UNRECORDED

    def _split_or_fail(self, claim: store.Claim, reason: str) -> Outcome:
        return self._settled(lambda s: settle.split_or_fail(s, claim, reason))

    def _release_or_fail(
        self,
        claim: store.Claim,
        reason: str,
        countdown: float | None = None,
        *,
        abandon_pending: bool = False,
    ) -> Outcome:
        max_failures = self.settings.batch_max_failures

        def write(session: Session) -> settle.Settled:
            if abandon_pending:
                # This worker holds the batch: nothing of it is in flight any more; what was not
                # settled may have been billed (the reaper's rule for a dead worker).
                calls.mark_unknown(session, [claim.batch_id])
                spend_store.abandon_held(session, [claim.batch_id])
            return settle.release_or_fail(session, claim, reason, max_failures)

        return self._settled(write, countdown)

    def _settled(self, write: Callable[[Session], settle.Settled], countdown: float | None = None) -> Outcome:
        """Write a settle decision in its own transaction, then send what it queued."""
        with transaction(self.resources.sessions) as session:
            settled = write(session)
        self.resources.enqueue(settled.follow_ups, countdown)
        return settled.outcome
