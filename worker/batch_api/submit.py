"""Submit a run's batch-api batches as Message Batches (task ``SUBMIT_MESSAGE_BATCHES``).

Claim the run's queued batch-api batches under one lease token; apply the same guard as a
synchronous call (the estimate, the exact count near the limit, halving when over); build each
request from the synchronous call's params with the 1-hour cache TTL; group the requests under the
API's limits; reserve each request's worst case at the batch rate against the run's and the day's
spend caps, in the transaction that records its Message Batch as ``submitting`` with its requests and
each request's ``llm_calls`` row (``pending``); create it; and store its API id before the task
acknowledges. A worker that dies in between leaves a ``submitting`` row that the poller gives back once
its lease passes (its reservations and rows kept as unknown: the create may have gone through). A create
that fails is handled by ``worker.batch_api.refused``.

Requests the caps cannot take are refused as a synchronous call would be (``worker.batch_api.spend``):
while reservations of calls in flight (other requests, other calls) hold the room they wait, given back
unblamed for the next poll's submit; when they cannot fit even then, the run stops and they fail with
the reason.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from budgetq.adapters.llm.message_batches import BATCH_CACHE_TTL
from budgetq.adapters.store import api_modes, calls
from budgetq.adapters.store import batches as store
from budgetq.adapters.store import message_batches as mb
from budgetq.adapters.store import spend as spend_store
from budgetq.adapters.store.completion import finish_if_done
from budgetq.adapters.store.engine import transaction
from budgetq.domain.message_batches import BatchRequest, CreateStep, body_bytes, group, request_for
from budgetq.errors import ConfigurationError, LLMCallError, SpendCapExceededError
from worker.batch_api.context import BatchApiContext, give_back
from worker.batch_api.refused import create_failed
from worker.batch_api.spend import hold_back, worst_case, worth_claiming
from worker.guarding import calibration_for, exact_count, guard

log = logging.getLogger("budgetq.worker.batch_api")


@dataclass(frozen=True)
class _Admitted:
    """A claimed batch that passed the guard, with its Message Batch request and its worst-case cost."""

    claim: store.Claim
    request: BatchRequest
    estimated: int
    counted: int | None
    worst_case_usd: Decimal


@dataclass(frozen=True)
class _Created:
    """What became of a group of requests: how many went out in a Message Batch (None: the create
    failed), the two halves to send instead when it was too large as a whole, and, when the spend caps
    stopped short, their refusal and the requests left out."""

    sent: int | None
    refusal: SpendCapExceededError | None = None
    left: tuple[_Admitted, ...] = ()
    halves: tuple[tuple[_Admitted, ...], ...] = ()


class Submitter:
    """Turns queued batch-api batches into Message Batches."""

    def __init__(self, api: BatchApiContext) -> None:
        self.api = api
        self.settings = api.settings

    def submit(self, run_id: int | None = None) -> str:
        """Submit the queued batch-api batches of ``run_id`` (or of every waiting run)."""
        if run_id is None:
            with transaction(self.api.resources.sessions) as session:
                runs = api_modes.runs_waiting(session)
        else:
            runs = [run_id]
        requests = sum(self._submit_run(r) for r in runs)
        return f"submitted {requests} requests"

    def _submit_run(self, run_id: int) -> int:
        s = self.settings
        submitted = 0
        while True:  # halves of a batch over the guard come back queued, for the next round
            with transaction(self.api.resources.sessions) as session:
                claims = api_modes.claim_queued(
                    session, run_id, s.message_batch_submit_lease_s, worth_claiming(session, run_id, s)
                )
            if not claims:
                return submitted
            try:
                self.api.client(claims[0].mode, claims[0].model)
            except ConfigurationError as exc:
                # This run's mode has no Message Batches (record, replay): it can never be sent this way.
                self._fail(claims, str(exc))
                return submitted
            try:
                admitted = {a.claim.batch_id: a for a in self._admit(claims)}
            except LLMCallError as exc:
                # count_tokens is down: nothing is sent; every claim waits, unblamed, for the next poll.
                log.warning("run %s: count_tokens failed, submission postponed: %s", run_id, exc)
                with transaction(self.api.resources.sessions) as session:
                    give_back(session, claims, f"count_tokens failed: {exc}")
                return submitted
            groups = group(
                (a.request for a in admitted.values()),
                max_requests=s.message_batch_max_requests,
                max_bytes=s.message_batch_max_bytes,
            )
            pending = deque([admitted[r.batch_id] for r in requests] for requests in groups)
            while pending:
                current = pending.popleft()
                later = [a for rest in pending for a in rest]
                created = self._create(run_id, current, later)
                if created.refusal is not None:
                    with transaction(self.api.resources.sessions) as session:
                        hold_back(
                            session, run_id, [a.claim for a in (*created.left, *later)], created.refusal
                        )
                    return submitted + (created.sent or 0)
                if created.halves:
                    # Too large as a whole: its requests go out again, in two smaller Message Batches.
                    pending.extendleft(list(h) for h in reversed(created.halves))
                    continue
                if created.sent is None:
                    # The create failed: the rest wait for the next poll, unblamed, in other Message Batches.
                    with transaction(self.api.resources.sessions) as session:
                        give_back(
                            session,
                            [a.claim for a in later],
                            "an earlier Message Batch of this submission failed",
                        )
                    return submitted
                submitted += created.sent

    def _fail(self, claims: Sequence[store.Claim], reason: str) -> None:
        with transaction(self.api.resources.sessions) as session:
            for claim in claims:
                store.fail(session, claim, reason)
            finish_if_done(session, claims[0].run_id)

    def _admit(self, claims: Sequence[store.Claim]) -> Iterable[_Admitted]:
        """The claims that pass the window guard, as requests; the others are halved (or fail). The
        guard is the synchronous path's: the estimate at the calibration provenance backs, and the exact
        count when that is close to the limit or not yet confirmed. A failed count raises LLMCallError."""
        for claim in claims:
            calibration = calibration_for(self.api.resources.sessions, self.settings, claim)
            g = guard(claim, calibration, self.settings.count_tokens_margin, BATCH_CACHE_TTL)
            client = self.api.resources.client(claim.mode, claim.model)
            counted, uncountable = exact_count(client, g, claim.model)
            refusal = g.refusal(counted, uncountable=uncountable)
            if refusal is not None:
                self.api.split_apart(claim, refusal)
                continue
            reserve = worst_case(claim.model, g.most_input(counted), claim.max_tokens)
            request = request_for(claim.batch_id, g.request.params())
            yield _Admitted(claim, request, g.estimated, counted, reserve)

    def _create(
        self, run_id: int, admitted: Sequence[_Admitted], later: Sequence[_Admitted] = ()
    ) -> _Created:
        """Reserve the spend of as many requests as the caps take, in order, and create one Message
        Batch of them; how many it holds (None when the API refused it), and the caps' refusal.

        First the claims of this group and of the ``later`` ones are renewed, in the transaction that
        opens the Message Batch: a claim whose lease ran out (a slow guard or create; the reaper gave
        the batch back and another submission may have sent it) is left out, never sent twice."""
        with transaction(self.api.resources.sessions) as session:
            lease = self.settings.message_batch_submit_lease_s
            still = api_modes.renew_held(session, [a.claim for a in (*admitted, *later)], lease)
            lost = [a.claim.batch_id for a in admitted if a.claim.batch_id not in still]
            if lost:
                log.warning(
                    "run %s: the submission lost its lease on batches %s (raise "
                    "BUDGETQ_MESSAGE_BATCH_SUBMIT_LEASE_S); they are left to their new holder",
                    run_id,
                    lost[:20],
                )
                admitted = [a for a in admitted if a.claim.batch_id in still]
            held, refusal = spend_store.reserve_many(
                session,
                run_id,
                [(a.claim.batch_id, a.worst_case_usd) for a in admitted],
                self.settings.daily_spend_cap_usd,
            )
            fitting = admitted[: len(held)]
            tracked: mb.Tracked | None = None
            if fitting:
                # In the reservations' transaction: a request is never recorded without its spend held,
                # nor spend held for a request that is not recorded; and each has its llm_calls row,
                # pending at its worst case, before it can be sent (so a create that reaches the API
                # and never returns still leaves a row to mark unknown).
                rows = calls.open_requests(
                    session,
                    [
                        calls.PendingRequest(a.claim, r.id, r.amount, a.estimated, a.counted)
                        for a, r in zip(fitting, held, strict=True)
                    ],
                    self.api.resources.host,
                )
                members = [
                    mb.Member(a.claim.batch_id, a.claim.token, a.estimated, a.counted, reservation, row)
                    for a, reservation, row in zip(fitting, held, rows, strict=True)
                ]
                tracked = mb.open_submission(
                    session,
                    run_id,
                    members,
                    body_bytes([a.request for a in fitting]),
                    self.settings.message_batch_submit_lease_s,
                )
        left = tuple(admitted[len(held) :])
        if tracked is None:
            return _Created(0, refusal, left)
        return dataclasses.replace(self._send(run_id, tracked, fitting), refusal=refusal, left=left)

    def _send(self, run_id: int, tracked: mb.Tracked, admitted: Sequence[_Admitted]) -> _Created:
        """Create the recorded Message Batch; how many requests it holds (None when the create failed,
        with the two halves to send instead when it was too large as a whole)."""
        try:
            state = self.api.client(tracked.mode, tracked.model).create([a.request.entry for a in admitted])
        except LLMCallError as exc:
            # What the API answered decides, as for a synchronous call: a refusal is never sent again as
            # the same create; too large goes out again in halves; an outage waits for the next poll.
            step = create_failed(self.api, tracked, [a.claim for a in admitted], exc)
            if step is CreateStep.HALVE:
                middle = len(admitted) // 2
                return _Created(None, halves=(tuple(admitted[:middle]), tuple(admitted[middle:])))
            if step is CreateStep.SPLIT:
                return _Created(0)  # one request's own fault: the others of this submission go on
            return _Created(None)
        with transaction(self.api.resources.sessions) as session:
            confirmed = mb.confirm(session, tracked, state.api_id, state.processing_status, state.expires_at)
        if not confirmed:
            log.error(
                "run %s: Message Batch %s was created after its submission was given up (raise "
                "BUDGETQ_MESSAGE_BATCH_SUBMIT_LEASE_S); its results will not be ingested",
                run_id,
                state.api_id,
            )
            return _Created(0)
        log.info("run %s: submitted Message Batch %s (%s requests)", run_id, state.api_id, len(admitted))
        return _Created(len(admitted))
