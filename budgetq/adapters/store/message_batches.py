"""Message Batches in PostgreSQL: submissions, polls and ingestion leases.

A submission (its batches claimed by ``budgetq.adapters.store.api_modes.claim_queued``) inserts a
``message_batches`` row in state ``submitting`` with one ``message_batch_requests`` row per batch,
the lease token it is held under and its pending ``llm_calls`` row, all before the create call. The
API's id is stored as soon as the call returns (``confirm``), on the row and on its requests' calls,
before the task acknowledges. An
ended Message Batch is ingested under a lease on its row (``message_batch_ingest``); each result settles
its batch through the ordinary fenced transitions of ``budgetq.adapters.store.batches``, so a result
ingested twice finds its batch no longer held by that token and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from budgetq.adapters.store.message_batch_models import MessageBatch, MessageBatchRequest
from budgetq.adapters.store.models import Batch, LLMCall, Run, SpendReservation
from budgetq.adapters.store.spend import Reservation
from budgetq.domain.statuses import BatchStatus, MessageBatchStatus

# A batch in an accepted Message Batch stays held this long after that Message Batch expires (24 h),
# so a poller that was down for a while still finds it held.
HOLD_AFTER_EXPIRY = dt.timedelta(hours=6)


@dataclass(frozen=True)
class Member:
    """A batch sent as one request of a Message Batch, what the guard admitted it on, and the spend it
    reserved (None on rows written before reservations were made for requests)."""

    batch_id: int
    token: uuid.UUID
    estimated_input_tokens: int
    counted_input_tokens: int | None
    reservation: Reservation | None = None
    # Its llm_calls row, written pending before the create (None on rows older than migration 0017).
    llm_call_id: int | None = None


@dataclass(frozen=True)
class Tracked:
    """A Message Batch row as the poller sees it."""

    id: int
    run_id: int
    api_id: str | None
    status: str
    token: uuid.UUID
    model: str
    mode: str


def request_shape(session: Session, run_id: int) -> tuple[str, int]:
    """The model and ``max_tokens`` of a run's requests."""
    run = session.get_one(Run, run_id)
    return run.model, run.max_tokens


def open_submission(
    session: Session, run_id: int, members: Sequence[Member], body_bytes: int, lease_seconds: float
) -> Tracked:
    """Record a Message Batch about to be created, with its requests; state ``submitting``."""
    token = uuid.uuid4()
    row = session.execute(
        insert(MessageBatch)
        .values(
            run_id=run_id,
            status=MessageBatchStatus.SUBMITTING.value,
            request_count=len(members),
            body_bytes=body_bytes,
            lease_token=token,
            lease_until=func.now() + dt.timedelta(seconds=lease_seconds),
        )
        .returning(MessageBatch.id)
    ).one()
    session.execute(
        insert(MessageBatchRequest),
        [
            {
                "message_batch_id": row.id,
                "batch_id": m.batch_id,
                "lease_token": m.token,
                "estimated_input_tokens": m.estimated_input_tokens,
                "counted_input_tokens": m.counted_input_tokens,
                "spend_reservation_id": m.reservation.id if m.reservation is not None else None,
                "llm_call_id": m.llm_call_id,
            }
            for m in members
        ],
    )
    run = session.get_one(Run, run_id)
    return Tracked(row.id, run_id, None, MessageBatchStatus.SUBMITTING.value, token, run.model, run.mode)


def confirm(
    session: Session, tracked: Tracked, api_id: str, processing_status: str, expires_at: dt.datetime
) -> bool:
    """Store the API's id of a created Message Batch and hold its batches until after it expires."""
    if not fenced(
        session,
        tracked,
        MessageBatchStatus.SUBMITTING,
        api_id=api_id,
        status=MessageBatchStatus.IN_PROGRESS.value,
        processing_status=processing_status,
        submitted_at=func.now(),
        expires_at=expires_at,
        lease_until=None,
    ):
        return False
    members = (
        select(MessageBatchRequest.batch_id, MessageBatchRequest.lease_token)
        .where(MessageBatchRequest.message_batch_id == tracked.id)
        .subquery()
    )
    session.execute(
        update(Batch)
        .where(
            Batch.id == members.c.batch_id,
            Batch.lease_token == members.c.lease_token,
            Batch.status == BatchStatus.RUNNING.value,
        )
        .values(lease_until=expires_at + HOLD_AFTER_EXPIRY)
    )
    # Its requests' rows, pending since before the create, now name the Message Batch they are in.
    session.execute(
        update(LLMCall)
        .where(
            LLMCall.id.in_(
                select(MessageBatchRequest.llm_call_id).where(
                    MessageBatchRequest.message_batch_id == tracked.id
                )
            )
        )
        .values(message_batch_id=api_id)
    )
    return True


def abandon(session: Session, tracked: Tracked, reason: str) -> bool:
    """Mark a submission abandoned (its create failed or was never confirmed); False if it moved on."""
    return fenced(
        session,
        tracked,
        MessageBatchStatus.SUBMITTING,
        status=MessageBatchStatus.ABANDONED.value,
        last_error=reason[:2000],
        lease_until=None,
    )


def fenced(session: Session, tracked: Tracked, state: MessageBatchStatus, **values: object) -> bool:
    """Apply ``values`` if the row is still in ``state`` under this holder's lease token; False if not."""
    row = session.execute(
        update(MessageBatch)
        .where(
            MessageBatch.id == tracked.id,
            MessageBatch.lease_token == tracked.token,
            MessageBatch.status == state.value,
        )
        .values(**values)
        .returning(MessageBatch.id)
    ).one_or_none()
    return row is not None


def _tracked(session: Session, *conditions: object) -> list[Tracked]:
    rows = session.execute(
        select(MessageBatch, Run.model, Run.mode)
        .join(Run, Run.id == MessageBatch.run_id)
        .where(*conditions)  # type: ignore[arg-type]
        .order_by(MessageBatch.id)
    ).all()
    return [
        Tracked(m.id, m.run_id, m.api_id, m.status, m.lease_token, model, mode) for m, model, mode in rows
    ]


def stale_submissions(session: Session) -> list[Tracked]:
    """Submissions whose create call was never confirmed within their lease (the submitter died)."""
    return _tracked(
        session,
        MessageBatch.status == MessageBatchStatus.SUBMITTING.value,
        MessageBatch.lease_until < func.now(),
    )


def to_poll(session: Session) -> list[Tracked]:
    """Message Batches the API holds, and ingestions whose lease expired (their ingester died)."""
    in_progress = MessageBatch.status == MessageBatchStatus.IN_PROGRESS.value
    stuck = (MessageBatch.status == MessageBatchStatus.INGESTING.value) & (
        MessageBatch.lease_until < func.now()
    )
    return _tracked(session, in_progress | stuck)


def note_poll(
    session: Session, tracked: Tracked, processing_status: str, counts: Mapping[str, int], ended_at: object
) -> None:
    """Keep the latest status and request tallies the API reported."""
    session.execute(
        update(MessageBatch)
        .where(MessageBatch.id == tracked.id)
        .values(
            processing_status=processing_status,
            succeeded=counts.get("succeeded", 0),
            errored=counts.get("errored", 0),
            expired=counts.get("expired", 0),
            canceled=counts.get("canceled", 0),
            ended_at=ended_at,
            polled_at=func.now(),
        )
    )


def give_up(session: Session, tracked: Tracked, reason: str) -> bool:
    """Abandon a Message Batch the API no longer has (or whose results are gone); False if it moved on."""
    row = session.execute(
        update(MessageBatch)
        .where(
            MessageBatch.id == tracked.id,
            MessageBatch.status.in_(
                [MessageBatchStatus.IN_PROGRESS.value, MessageBatchStatus.INGESTING.value]
            ),
        )
        .values(status=MessageBatchStatus.ABANDONED.value, last_error=reason[:2000], lease_until=None)
        .returning(MessageBatch.id)
    ).one_or_none()
    return row is not None


def members(session: Session, message_batch_id: int) -> dict[int, Member]:
    """The batches of a Message Batch by batch id, with the spend each reserved."""
    rows = session.execute(
        select(MessageBatchRequest, SpendReservation)
        .outerjoin(SpendReservation, SpendReservation.id == MessageBatchRequest.spend_reservation_id)
        .where(MessageBatchRequest.message_batch_id == message_batch_id)
    ).all()
    return {
        r.batch_id: Member(
            r.batch_id,
            r.lease_token,
            r.estimated_input_tokens,
            r.counted_input_tokens,
            Reservation(s.id, s.run_id, s.day, s.amount_usd) if s is not None else None,
            r.llm_call_id,
        )
        for r, s in rows
    }


def call_recorded(session: Session, api_id: str, batch_id: int) -> bool:
    """Whether the request of ``batch_id`` in Message Batch ``api_id`` already has its llm_calls row
    (a row of a request older than migration 0017, written when its result was ingested)."""
    found = session.scalar(
        select(LLMCall.id).where(LLMCall.message_batch_id == api_id, LLMCall.batch_id == batch_id)
    )
    return found is not None


def tag_call(session: Session, llm_call_id: int, api_id: str) -> None:
    """Mark an llm_calls row as a request of Message Batch ``api_id`` (unique per batch)."""
    session.execute(update(LLMCall).where(LLMCall.id == llm_call_id).values(message_batch_id=api_id))
