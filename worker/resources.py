"""Process one batch: claim → guard → call → validate → record, as in design §6.

Every outcome leaves the batch in a state another worker or the reaper can pick up from:
succeeded (with a follow-up batch for unanswered ids), split in two, released for a later try,
or failed with a reason once it has failed ``batch_max_failures`` times.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.llm.client import Attempt, BudgetAwareLLMClient, LLMCallResult, ReplayMode
from budgetq.adapters.observability.metrics import observe_lease_expiry
from budgetq.adapters.queue.celery_app import PROCESS_BATCH
from budgetq.adapters.ratelimit.limiter import RedisRateLimiter
from budgetq.adapters.store import batches as store
from budgetq.adapters.store import recovery
from budgetq.adapters.store.engine import ProcessSessions, transaction
from budgetq.adapters.store.reaper import mark_sent
from budgetq.adapters.store.runs import finish_if_done
from budgetq.errors import (
    CassetteMissingError,
    LeaseLostError,
    LLMCallError,
    PromptTooLongError,
    RateLimitUnavailableError,
    RequestOverRateLimitError,
    RetryableCallError,
    SpendCapBusyError,
    SpendCapExceededError,
    SpendLimitReachedError,
)
from budgetq.settings import Settings
from worker import durable, settle
from worker.gates import AttemptGates, SpendGate
from worker.guarding import calibration_for, guard
from worker.telemetry import observe_attempt

log = logging.getLogger("budgetq.worker")


class Context:
    """Per-process resources of a worker (engine, SDK clients), built lazily after any fork."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings = settings
        self.app = app
        self.host = socket.gethostname()
        self._sessions = ProcessSessions(
            settings, settings.worker_concurrency + 2, process="a worker", missing_url=SystemExit
        )
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._clients: dict[tuple[str, str], BudgetAwareLLMClient] = {}
        self._spend_gates: dict[str, SpendGate] = {}

    @property
    def sessions(self) -> sessionmaker[Session]:
        """The session factory of this process."""
        return self._sessions.get()

    def client(self, mode: str, model: str) -> BudgetAwareLLMClient:
        """The SDK client for a run's mode and model, shared by this process's threads; every attempt
        passes the spend cap, then the distributed rate limit."""
        with self._lock:
            if self._pid != os.getpid():
                # The SDK clients' connection pools must not cross a fork either.
                self._clients, self._pid = {}, os.getpid()
            key = (mode, model)
            if key not in self._clients:
                gates = AttemptGates(
                    self._spend_gate_locked(model), RedisRateLimiter.from_settings(self.settings, model)
                )
                self._clients[key] = BudgetAwareLLMClient(
                    mode=ReplayMode(mode), model=model, settings=self.settings, gate=gates
                )
            return self._clients[key]

    def spend_gate(self, model: str) -> SpendGate:
        """The spend gate of a model's calls in this process."""
        with self._lock:
            return self._spend_gate_locked(model)

    def _spend_gate_locked(self, model: str) -> SpendGate:
        if model not in self._spend_gates:
            self._spend_gates[model] = SpendGate(
                lambda: self.sessions,
                model,
                self.settings.daily_spend_cap_usd,
                write_window_s=self.settings.result_write_retry_s,
            )
        return self._spend_gates[model]

    def enqueue(self, batch_ids: Sequence[int], countdown: float | None = None) -> None:
        """Send batch tasks by name, after the rows that describe them are committed; ``countdown``
        holds them back (the server's retry-after)."""
        for batch_id in batch_ids:
            self.app.send_task(PROCESS_BATCH, args=[batch_id], countdown=countdown)
        with transaction(self.sessions) as session:
            # The reaper resends a queued batch only once its message is overdue.
            mark_sent(session, batch_ids, countdown or 0.0)

    def process(self, batch_id: int) -> str:
        """Process batch ``batch_id`` if it can be claimed; return what happened, in a word."""
        with transaction(self.sessions) as session:
            claim = store.claim(session, batch_id, self.settings.lease_seconds)
        if claim is None:
            return "not-claimed"
        with self._keep_lease(claim):
            try:
                return self._process(claim)
            except LeaseLostError as exc:
                observe_lease_expiry("worker")
                log.warning("batch %s: %s", batch_id, exc)
                return "lease-lost"
            except Exception as exc:
                # A bug or an outage here must not strand the batch until its lease expires.
                log.exception("batch %s: unexpected error", batch_id)
                return self._release_or_fail(claim, f"internal error: {type(exc).__name__}: {exc}")

    @contextmanager
    def _keep_lease(self, claim: store.Claim) -> Iterator[None]:
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.settings.lease_seconds / 3):
                try:
                    with transaction(self.sessions) as session:
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

    def _process(self, claim: store.Claim) -> str:
        calibration = calibration_for(self.sessions, self.settings, claim)
        g = guard(claim, calibration, self.settings.count_tokens_margin)
        estimated, request = g.estimated, g.request
        client = self.client(claim.mode, claim.model)
        counted: int | None = None
        if g.needs_count:
            # The exact count is free, and rate-limited apart from calls.
            try:
                counted = client.count_tokens(request)
            except CassetteMissingError:
                # Replay of a run that trusted its estimate here: decide on the estimate, as it did.
                counted = None
            except LLMCallError as exc:
                return self._call_failed(claim, exc)
        refusal = g.refusal(counted)
        if refusal is not None:
            return self._split_or_fail(claim, refusal)

        def record(attempt: Attempt) -> None:
            self._record(claim, attempt, estimated, counted)
            observe_attempt(claim, attempt, estimated_input=estimated, counted_input=counted)

        try:
            with self.spend_gate(claim.model).call(claim.run_id, claim.batch_id, g.most_input(counted)):
                result = client.send(request, on_attempt=record)
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
        return self._settle(claim, result, estimated, counted)

    def _wait_for_cap(self, claim: store.Claim, reason: str) -> str:
        """The cap's room is held by calls in flight: back to the queue for a while, not counted as a
        failure (a cap limits spend, not how many calls run at once)."""
        with transaction(self.sessions) as session:
            store.release(session, claim, reason, count_failure=False)
        self.enqueue([claim.batch_id], self.settings.spend_cap_wait_s)
        return "waiting-for-cap"

    def _cap_reached(self, claim: store.Claim, reason: str) -> str:
        """A cap cannot cover the next attempt: stop the run; its unstarted batches and issues fail with
        the reason (calls already in flight finish and are recorded)."""
        with transaction(self.sessions) as session:
            store.fail(session, claim, reason)
            store.stop_run(session, claim.run_id, reason)
        log.error("run %s stopped: %s", claim.run_id, reason)
        return "run-stopped"

    def _not_sent(self, claim: store.Claim, reason: str) -> str:
        """Nothing was sent (the rate limiter's Redis is down): back to the queue, not counted as a
        failure; if the broker is down too, the reaper sends it again later."""
        with transaction(self.sessions) as session:
            store.release(session, claim, f"not sent: {reason}", count_failure=False)
        try:
            self.enqueue([claim.batch_id])
        except Exception:  # noqa: BLE001 - the batch row is queued; the reaper resends it
            log.warning("batch %s: could not be sent again now; the reaper will", claim.batch_id)
        return "not-sent"

    def _call_failed(self, claim: store.Claim, exc: LLMCallError) -> str:
        """What a failed call means for the batch: stop the run, split, queue again later, or fail."""
        if isinstance(exc, SpendLimitReachedError):
            with transaction(self.sessions) as session:
                store.stop_run(session, claim.run_id, str(exc))
                store.fail(session, claim, str(exc))
            log.error("run %s stopped: %s", claim.run_id, exc)
            return "run-stopped"
        if isinstance(exc, PromptTooLongError):
            return self._split_or_fail(claim, str(exc))
        if isinstance(exc, RetryableCallError):
            # Retries are used up (or the server asked for a longer wait than a thread should hold):
            # the batch goes back to the queue, not before the server's retry-after.
            return self._release_or_fail(claim, f"call failed: {exc}", countdown=exc.retry_after)
        # 400, 401, 403, 404 and the like: the same request would fail the same way, so it is not sent again.
        return self._fail(claim, f"call failed: {exc}")

    def _settle(
        self,
        claim: store.Claim,
        result: LLMCallResult,
        estimated: int,
        counted: int | None,
    ) -> str:
        attempt = result.attempts[-1]
        # The verdict and its writing are shared with the Message Batches path (worker.settle).
        verdict = settle.judge(result.tool_input, result.stop_reason, claim.issue_ids)
        max_failures = self.settings.batch_max_failures

        def write(session: Session) -> settle.Settled:
            # The paid call's provenance and what its answer means for the batch: one transaction.
            call_id = store.record_attempt(
                session, claim, attempt, estimated_input=estimated, counted_input=counted, host=self.host
            )
            return settle.apply(session, claim, verdict, call_id, max_failures)

        def written(session: Session) -> settle.Settled | None:
            if recovery.recorded_call_id(session, claim.batch_id, attempt) is None:
                return None
            return settle.recovered(claim.batch_id, *recovery.batch_outcome(session, claim.batch_id))

        try:
            settled = durable.write(self.sessions, self.settings, claim.batch_id, attempt, write, written)
        except LeaseLostError:
            # The call happened and was billed: its provenance is kept even though its answers are not.
            self._record(claim, attempt, estimated, counted)
            raise
        except Exception as exc:
            if not durable.unreachable(exc):
                raise
            return self._unrecorded(claim, attempt, exc)
        self.enqueue(settled.follow_ups)
        return settled.word

    def _record(self, claim: store.Claim, attempt: Attempt, estimated: int, counted: int | None) -> None:
        def write(session: Session) -> int:
            return store.record_attempt(
                session, claim, attempt, estimated_input=estimated, counted_input=counted, host=self.host
            )

        def written(session: Session) -> int | None:
            return recovery.recorded_call_id(session, claim.batch_id, attempt)

        durable.write(self.sessions, self.settings, claim.batch_id, attempt, write, written)

    def _unrecorded(self, claim: store.Claim, attempt: Attempt, exc: BaseException) -> str:
        """PostgreSQL stayed unreachable through the write window: the paid answer is dropped. The batch
        keeps its lease until it expires; then the reaper queues it again and it is called again."""
        window, why = self.settings.result_write_retry_s, durable.first_line(exc)
        log.error(
            f"batch {claim.batch_id}: PostgreSQL unreachable for {window:.0f}s after the answer of request "
            f"{attempt.request_id} ({attempt.cost_usd} USD) arrived ({why}); the answer is dropped and the "
            "batch will be called again once its lease expires. Raise BUDGETQ_RESULT_WRITE_RETRY_S to ride "
            "out longer outages"
        )
        return "unrecorded"

    def _split_or_fail(self, claim: store.Claim, reason: str, countdown: float | None = None) -> str:
        if len(claim.issues) > 1:
            with transaction(self.sessions) as session:
                halves = store.split(session, claim, reason)
            self.enqueue(halves, countdown)
            return "split"
        return self._fail(claim, reason)

    def _fail(self, claim: store.Claim, reason: str) -> str:
        with transaction(self.sessions) as session:
            store.fail(session, claim, reason)
            finish_if_done(session, claim.run_id)
        return "failed"

    def _release_or_fail(self, claim: store.Claim, reason: str, countdown: float | None = None) -> str:
        if claim.failures + 1 < self.settings.batch_max_failures:
            with transaction(self.sessions) as session:
                store.release(session, claim, reason)
            self.enqueue([claim.batch_id], countdown)
            return "released"
        return self._split_or_fail(claim, f"failed {claim.failures + 1} times; last: {reason}", countdown)
