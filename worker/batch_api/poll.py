"""Poll Message Batches and ingest those that ended (beat task ``POLL_MESSAGE_BATCHES``, stateless).

One pass: give back submissions never confirmed, ask the API about every Message Batch it holds, and
ingest each one that ended under a lease on its row. Each result is recorded (its request's
``llm_calls`` row, written pending before the create, settled batch-priced and tagged with its Message
Batch) and settled exactly as a synchronous answer
(``worker.settle``) in one transaction fenced by its batch's lease token: ingesting the same results
twice finds the batches no longer held and changes nothing. The spend each request reserved when it
was submitted settles in that same transaction: to the result's cost, or released for an errored,
expired or canceled request (not billed); a result read again finds it settled and moves nothing.
Errored, expired and canceled requests go down the retry path. The pass ends by submitting whatever
batch-api batches wait.
"""

from __future__ import annotations

import dataclasses
import logging
from decimal import Decimal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from budgetq.adapters.llm.message_batches import MessageBatchesClient, MessageBatchState, RequestOutcome
from budgetq.adapters.store import api_modes, calls
from budgetq.adapters.store import batches as store
from budgetq.adapters.store import message_batch_ingest as ingest
from budgetq.adapters.store import message_batches as mb
from budgetq.adapters.store.completion import finish_if_done
from budgetq.adapters.store.engine import transaction
from budgetq.domain.message_batches import ResultKind, batch_id_of
from budgetq.domain.settle import Step, judge
from budgetq.domain.statuses import CallOutcome
from budgetq.errors import LeaseLostError, LLMCallError, NonRetryableCallError
from worker import settle
from worker.batch_api.context import BatchApiContext, give_back
from worker.batch_api.refused import abandon_unconfirmed
from worker.batch_api.spend import close_requests, settle_request
from worker.batch_api.submit import Submitter
from worker.telemetry import observe_attempt

log = logging.getLogger("budgetq.worker.batch_api")

RENEW_EVERY = 200  # results ingested between two renewals of the ingestion lease


class Poller:
    """Polls the Message Batches the API holds and ingests their results."""

    def __init__(self, api: BatchApiContext, submitter: Submitter) -> None:
        self.api = api
        self.settings = api.settings
        self.submitter = submitter

    def poll(self) -> str:
        """One stateless pass: recover dead submissions, poll, ingest what ended, submit what waits."""
        self._recover_stale()
        with transaction(self.api.resources.sessions) as session:
            tracked = mb.to_poll(session)
        ingested = 0
        for one in tracked:
            try:
                ingested += self._poll_one(one)
            except LLMCallError as exc:
                # The API or the network failed this time; the next poll asks again.
                log.warning("Message Batch %s: poll failed: %s", one.api_id, exc)
            except Exception:  # noqa: BLE001 - one broken Message Batch must not stop the others' polls
                log.exception("Message Batch %s: poll failed", one.api_id)
        submitted = self.submitter.submit(None)
        return f"polled {len(tracked)}, ingested {ingested} results, {submitted}"

    def _recover_stale(self) -> None:
        with transaction(self.api.resources.sessions) as session:
            stale = mb.stale_submissions(session)
        for tracked in stale:
            with transaction(self.api.resources.sessions) as session:
                members = mb.members(session, tracked.id)
                claims = api_modes.held(session, {m.batch_id: m.token for m in members.values()})
            reason = "the submission of its Message Batch was never confirmed (the worker died mid-submit)"
            log.warning("Message Batch row %s: %s", tracked.id, reason)
            # The create call may have gone through unseen: what its requests reserved stays counted.
            abandon_unconfirmed(self.api, tracked, claims, reason)

    def _poll_one(self, tracked: mb.Tracked) -> int:
        if tracked.api_id is None:
            return 0
        client = self.api.client(tracked.mode, tracked.model)
        try:
            state = client.retrieve(tracked.api_id)
        except NonRetryableCallError as exc:
            if exc.status == 404:
                self._lost(tracked, f"the API no longer knows Message Batch {tracked.api_id}: {exc}")
            raise
        with transaction(self.api.resources.sessions) as session:
            mb.note_poll(session, tracked, state.processing_status, state.counts, state.ended_at)
        if not state.ended:
            return 0
        with transaction(self.api.resources.sessions) as session:
            mine = ingest.claim_ingest(session, tracked, self.settings.lease_seconds)
        if mine is None:
            return 0
        try:
            return self._ingest(mine, state, client)
        except Exception as exc:
            # The next poll ingests again at once; what was settled stays settled (idempotent).
            with transaction(self.api.resources.sessions) as session:
                ingest.release_ingest(session, mine)
            if isinstance(exc, NonRetryableCallError) and exc.status == 404:
                self._lost(mine, f"the results of Message Batch {tracked.api_id} are gone: {exc}")
            raise

    def _lost(self, tracked: mb.Tracked, reason: str) -> None:
        """Give up a Message Batch the API lost: its unsettled batches are submitted again, unblamed."""
        with transaction(self.api.resources.sessions) as session:
            if not mb.give_up(session, tracked, reason):
                return
            # Whatever ran of it may have been billed: the unsettled reservations and rows stay counted.
            close_requests(session, tracked.id, None)
            members = mb.members(session, tracked.id)
            claims = api_modes.held(session, {m.batch_id: m.token for m in members.values()})
            give_back(session, claims, reason)
        log.error("Message Batch %s: %s; %s batches go into a new one", tracked.api_id, reason, len(claims))

    def _ingest(self, tracked: mb.Tracked, state: MessageBatchState, client: MessageBatchesClient) -> int:
        with transaction(self.api.resources.sessions) as session:
            members = mb.members(session, tracked.id)
        count = 0
        for outcome in client.results(state):
            batch_id = batch_id_of(outcome.custom_id)
            member = members.get(batch_id) if batch_id is not None else None
            if member is None:
                log.warning(
                    "Message Batch %s: ignored a result for unknown custom_id %r",
                    state.api_id,
                    outcome.custom_id,
                )
                continue
            self.api.dispatch(self._settle_result(state.api_id, member, outcome))
            count += 1
            if count % RENEW_EVERY == 0:
                with transaction(self.api.resources.sessions) as session:
                    if not ingest.renew_ingest(session, tracked, self.settings.lease_seconds):
                        log.warning(
                            "Message Batch %s: ingestion lease lost; another poller goes on", state.api_id
                        )
                        return count
        with transaction(self.api.resources.sessions) as session:
            ingest.finish_ingest(session, tracked, count)
            finish_if_done(session, tracked.run_id)
        log.info("Message Batch %s: ingested %s results", state.api_id, count)
        return count

    def _settle_result(self, api_id: str, member: mb.Member, outcome: RequestOutcome) -> list[int]:
        """Record one result and settle its batch in one transaction; the batch ids to dispatch."""
        try:
            with transaction(self.api.resources.sessions) as session:
                claims = api_modes.held(session, {member.batch_id: member.token})
                if not claims:
                    self._record_unheld(session, api_id, member, outcome)
                    return []
                (claim,) = claims
                call_id = self._record(session, claim, api_id, member, outcome)
                if call_id is None:
                    raise LeaseLostError(f"the result for batch {member.batch_id} was recorded already")
                settle_request(session, member, outcome)
                follow_ups = list(self._settle(session, claim, call_id, outcome).follow_ups)
        except (LeaseLostError, IntegrityError) as exc:
            # Another poller settled (or is settling) this result at the same moment: nothing to add.
            log.info("Message Batch %s: the result for batch %s was taken: %s", api_id, member.batch_id, exc)
            return []
        observe_attempt(
            claim,
            outcome.attempt,
            estimated_input=member.estimated_input_tokens,
            counted_input=member.counted_input_tokens,
        )
        return follow_ups

    def _settle(
        self, session: Session, claim: store.Claim, call_id: int, outcome: RequestOutcome
    ) -> settle.Settled:
        if outcome.kind is ResultKind.SUCCEEDED:
            verdict = judge(outcome.tool_input, outcome.stop_reason, claim.issue_ids)
            if verdict.step is Step.RETRY:
                return self.api.retry(session, claim, verdict.reason)
            return settle.apply(session, claim, verdict, call_id, self.settings.batch_max_failures)
        reason = outcome.attempt.error_message or f"the request was {outcome.kind.value}"
        if outcome.attempt.outcome is CallOutcome.PROMPT_TOO_LONG:
            return settle.split_or_fail(session, claim, reason)
        return self.api.retry(session, claim, reason)

    def _record(
        self, session: Session, claim: store.Claim, api_id: str, member: mb.Member, outcome: RequestOutcome
    ) -> int | None:
        """Settle the request's ``llm_calls`` row with its result: the row written pending before its
        create (or, for a request older than migration 0017, a new one), tagged with its Message Batch
        (unique per batch); its id, None when that row was settled before (the result was ingested)."""
        # Every request of a Message Batch is at the batch tier, an errored one too.
        attempt = dataclasses.replace(outcome.attempt, service_tier=outcome.attempt.service_tier or "batch")
        if member.llm_call_id is None:
            if mb.call_recorded(session, api_id, member.batch_id):
                return None
            call_id = calls.record_attempt(
                session,
                claim,
                attempt,
                estimated_input=member.estimated_input_tokens,
                counted_input=member.counted_input_tokens,
                host=self.api.resources.host,
            )
        elif calls.close_attempt(session, member.llm_call_id, claim, attempt, Decimal(0)):
            call_id = member.llm_call_id
        else:
            return None
        mb.tag_call(session, call_id, api_id)
        return call_id

    def _record_unheld(
        self, session: Session, api_id: str, member: mb.Member, outcome: RequestOutcome
    ) -> None:
        """A result whose batch this Message Batch no longer holds: ingested before (nothing to do), or
        its batch was taken back meanwhile (the request was billed all the same: record it once)."""
        (claim,) = api_modes.held(session, {member.batch_id: member.token}, only_held=False)
        if self._record(session, claim, api_id, member, outcome) is not None:
            settle_request(session, member, outcome)
