"""The spend caps on the batch-api path: what a request reserves, how many batches a submit takes on,
what becomes of requests the caps refuse, and how a request's reservation closes.

A request reserves its worst case at the batch rate when its Message Batch is recorded (the
submitter, through ``budgetq.adapters.store.spend.reserve_many``); its result settles that reservation to its
cost, or releases it when it was not billed; a Message Batch given up keeps its requests' reservations
(and ``llm_calls`` rows) as unknown when they may have been billed. Refusals are treated as the
synchronous path treats them (``worker.process``): wait while calls in flight hold the room, else stop
the run.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy.orm import Session

from budgetq.adapters.llm.message_batches import RequestOutcome
from budgetq.adapters.llm.replies import outcome_of
from budgetq.adapters.store import batches as store
from budgetq.adapters.store import calls, outbox, run_issues, spend_caps
from budgetq.adapters.store import message_batches as mb
from budgetq.adapters.store import spend as spend_store
from budgetq.domain.catalog import get_model, prices_on
from budgetq.domain.spend import Settlement, overrun, reservation_for, settlement_of_result, worth_trying
from budgetq.errors import LLMCallError, SpendCapBusyError, SpendCapExceededError
from budgetq.settings import Settings
from worker.batch_api.context import fail_claims, give_back

log = logging.getLogger("budgetq.worker.batch_api")


def worst_case(model: str, input_tokens: int, max_tokens: int) -> Decimal:
    """What a request of ``input_tokens`` and ``max_tokens`` reserves: its worst case at the batch rate."""
    prices = prices_on(get_model(model), dt.datetime.now(dt.UTC).date())
    return reservation_for(input_tokens, max_tokens, prices, batch=True)


def worth_claiming(session: Session, run_id: int, settings: Settings) -> int:
    """How many batches a submit claims: no more than the caps' room could take at best (all of
    ``max_tokens`` billed, no input), so a run waiting for room is not claimed whole at every poll."""
    most = settings.message_batch_max_requests
    room = spend_caps.room(session, run_id, settings.daily_spend_cap_usd)
    if room is None:
        return most
    model, max_tokens = mb.request_shape(session, run_id)
    return worth_trying(room, worst_case(model, 0, max_tokens), most)


def hold_back(
    session: Session, run_id: int, claims: Sequence[store.Claim], refusal: SpendCapExceededError
) -> None:
    """Claims the caps refused: while calls in flight hold the room they wait, back in the queue
    unblamed, for the next poll's submit; else the run stops and they fail with the reason (its queued
    batches too; the requests already submitted are still ingested)."""
    reason = str(refusal)
    if isinstance(refusal, SpendCapBusyError):
        give_back(session, claims, reason)
        log.info("run %s: %s batches wait for spend cap room: %s", run_id, len(claims), reason)
        return
    fail_claims(session, claims, reason)
    outbox.record_cap_reached(session, run_id, None)  # None: the day's cap as last recorded
    run_issues.stop_run(session, run_id, reason)
    log.error("run %s stopped: %s", run_id, reason)


def settle_request(session: Session, member: mb.Member, outcome: RequestOutcome) -> None:
    """Settle a request's reservation to what its result cost (released when not billed), once: also
    when the reaper gave it up as unknown meanwhile, since the result now says what happened."""
    reservation = member.reservation
    if reservation is None:
        return
    attempt = outcome.attempt
    if settlement_of_result(attempt.usage is not None) is Settlement.RELEASE:
        spend_store.release(session, reservation, from_unknown=True)
        return
    spend_store.settle(session, reservation, attempt.cost_usd, from_unknown=True)
    excess = overrun(reservation.amount, attempt.cost_usd)
    if excess:
        log.warning(
            "spend reservation %s: the request cost %s, %s more than reserved (estimate too low)",
            reservation.id,
            attempt.cost_usd,
            excess,
        )


def close_requests(session: Session, message_batch_id: int, refused: LLMCallError | None) -> int:
    """Close what a given-up Message Batch's requests still hold, reservation and ``llm_calls`` row
    together. ``refused``: the API's answer to a create that made nothing; their reservations are
    released and their rows closed with it. None: they may have been billed (a create unanswered, a
    submitter dead mid-create, a Message Batch the API lost); both are kept as unknown (still counted,
    no longer waited for; the row's worst case in ``unknown_usd``). How many reservations closed."""
    closed = 0
    members = mb.members(session, message_batch_id).values()
    for member in members:
        if member.reservation is None:
            continue
        if refused is None:
            closed += spend_store.keep(session, member.reservation)
        else:
            closed += spend_store.release(session, member.reservation)
    rows = [m.llm_call_id for m in members if m.llm_call_id is not None]
    if refused is None:
        calls.mark_unknown_calls(session, rows)
    else:
        calls.close_refused(
            session,
            rows,
            outcome_of(refused),
            http_status=refused.status,
            error_type=refused.error_type,
            error_message=str(refused),
            request_id=refused.request_id,
        )
    return closed
