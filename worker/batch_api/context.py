"""What the batch-api submit and poll sides share: the worker's resources, Message Batches clients, and
where a batch goes after its request failed (the configured retry path)."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy.orm import Session

from budgetq.adapters.llm.message_batches import MessageBatchesClient
from budgetq.adapters.store import api_modes
from budgetq.adapters.store import batches as store
from budgetq.adapters.store.engine import transaction
from budgetq.domain.message_batches import RetryPath
from budgetq.domain.settle import Outcome
from budgetq.domain.statuses import ApiMode
from budgetq.errors import LeaseLostError
from worker import settle
from worker.resources import Resources

log = logging.getLogger("budgetq.worker.batch_api")

T = TypeVar("T")


class BatchApiContext:
    """One worker process's batch-api resources, on top of its ``Resources`` (engine, SDK clients)."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.settings = resources.settings
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], MessageBatchesClient] = {}

    def client(self, mode: str, model: str) -> MessageBatchesClient:
        """The Message Batches client for a run's mode and model, shared by this process's threads."""
        with self._lock:
            key = (mode, model)
            if key not in self._clients:
                self._clients[key] = MessageBatchesClient(self.resources.client(mode, model))
            return self._clients[key]

    def retry(self, session: Session, claim: store.Claim, reason: str) -> settle.Settled:
        """Send a batch whose request failed down the configured path, counting a failure (after
        ``batch_max_failures`` it is halved, and a single issue fails with ``reason``)."""
        sync = self.settings.message_batch_retry_path == RetryPath.SYNC.value
        path = ApiMode.SYNC if sync else ApiMode.BATCH_API
        rerouted = dataclasses.replace(claim, api_mode=path.value)  # its halves take the same path
        settled = settle.release_or_fail(session, rerouted, reason, self.settings.batch_max_failures)
        if settled.outcome is Outcome.RELEASED:
            api_modes.set_batch_api_mode(session, [claim.batch_id], path.value)
        return settled

    def split_apart(self, claim: store.Claim, reason: str) -> None:
        """Halve a claimed batch that will not be sent (over the guard), or fail it when it is a single
        issue, in its own transaction; dispatch what follows."""
        try:
            with transaction(self.resources.sessions) as session:
                settled = settle.split_or_fail(session, claim, reason)
        except LeaseLostError as exc:
            log.warning("batch %s: %s", claim.batch_id, exc)
            return
        self.dispatch(settled.follow_ups)

    def dispatch(self, batch_ids: Sequence[int]) -> None:
        """Send the synchronous ones of ``batch_ids`` to the batch task; batch-api ones wait for the next
        submit (the end of this poll, or the submit loop that split them)."""
        if not batch_ids:
            return
        with transaction(self.resources.sessions) as session:
            sync, _ = api_modes.route(session, batch_ids)
        self.resources.enqueue(sync)


def each_held(
    session: Session, claims: Sequence[store.Claim], reason: str, write: Callable[[store.Claim], T]
) -> list[T]:
    """``write`` for each claim, each in a savepoint of its own; a batch the reaper already took back is
    left to its new holder (logged with ``reason``). What the writes returned, for the claims still held."""
    written: list[T] = []
    for claim in claims:
        try:
            with session.begin_nested():
                written.append(write(claim))
        except LeaseLostError:
            log.info("batch %s: already taken back (%s)", claim.batch_id, reason)
    return written


def give_back(session: Session, claims: Sequence[store.Claim], reason: str) -> None:
    """Queue claimed batches again without counting a failure (their Message Batch failed as a whole:
    an outage, a lost submitter, or results the API no longer has)."""
    each_held(session, claims, reason, lambda c: store.release(session, c, reason, count_failure=False))


def fail_claims(session: Session, claims: Sequence[store.Claim], reason: str) -> None:
    """Fail claimed batches for good, with ``reason`` (their issues fail with it); a batch the reaper
    already took back is left to its new holder."""
    each_held(session, claims, reason, lambda c: store.fail(session, c, reason))
