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

from budgetq.answers import PromptIssue, validate
from budgetq.budget import guard_limit
from budgetq.errors import LeaseLostError, LLMCallError, PromptTooLongError, SpendLimitReachedError
from budgetq.llm import Attempt, BudgetAwareLLMClient, CallRequest, LLMCallResult, ReplayMode
from budgetq.prompt import build_prompt
from budgetq.queue import PROCESS_BATCH
from budgetq.settings import Settings
from budgetq.store import batches as store
from budgetq.store.db import make_engine, make_sessions, transaction
from budgetq.store.runs import finish_if_done

log = logging.getLogger("budgetq.worker")

OVERFLOW_STOP_REASONS = frozenset({"max_tokens", "model_context_window_exceeded"})


class Context:
    """Per-process resources of a worker (engine, SDK clients), built lazily after any fork."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings = settings
        self.app = app
        self.host = socket.gethostname()
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._clients: dict[tuple[str, str], BudgetAwareLLMClient] = {}

    @property
    def sessions(self) -> sessionmaker[Session]:
        """The session factory of this process."""
        with self._lock:
            if self._sessions is None or self._pid != os.getpid():
                if not self.settings.database_url:
                    raise SystemExit("set BUDGETQ_DATABASE_URL before starting a worker")
                engine = make_engine(
                    self.settings.database_url, pool_size=self.settings.worker_concurrency + 2
                )
                self._sessions, self._pid, self._clients = make_sessions(engine), os.getpid(), {}
            return self._sessions

    def client(self, mode: str, model: str) -> BudgetAwareLLMClient:
        """The SDK client for a run's mode and model, shared by this process's threads."""
        with self._lock:
            key = (mode, model)
            if key not in self._clients:
                self._clients[key] = BudgetAwareLLMClient(
                    mode=ReplayMode(mode), model=model, settings=self.settings
                )
            return self._clients[key]

    def enqueue(self, batch_ids: Sequence[int]) -> None:
        """Send batch tasks by name, after the rows that describe them are committed."""
        for batch_id in batch_ids:
            self.app.send_task(PROCESS_BATCH, args=[batch_id])

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
        issues = [PromptIssue(i.issue_id, i.priority, i.text) for i in claim.issues]
        prompt = build_prompt(issues, claim.calibration)
        limit = guard_limit(claim.context_window, claim.safe_utilization)
        estimated = prompt.estimated_input_tokens
        if estimated + claim.max_tokens > limit:
            return self._split_or_fail(
                claim,
                f"estimated input {estimated} + max_tokens {claim.max_tokens} exceeds the guard of {limit}",
            )
        client = self.client(claim.mode, claim.model)
        request = CallRequest(
            model=claim.model,
            system=prompt.system,
            user=prompt.user,
            max_tokens=claim.max_tokens,
            estimated_input_tokens=estimated,
            tools=(prompt.tool,),
            tool_choice=prompt.tool_choice,
        )
        counted: int | None = None
        if estimated + claim.max_tokens > self.settings.count_tokens_margin * limit:
            # Close to the guard an estimate is not good enough: ask the API for the exact count.
            counted = client.count_tokens(request)
            if counted + claim.max_tokens > limit:
                return self._split_or_fail(
                    claim,
                    f"counted input {counted} + max_tokens {claim.max_tokens} exceeds the guard of {limit}",
                )

        def record(attempt: Attempt) -> None:
            with transaction(self.sessions) as session:
                store.record_attempt(
                    session, claim, attempt, estimated_input=estimated, counted_input=counted, host=self.host
                )

        try:
            result = client.send(request, on_attempt=record)
        except SpendLimitReachedError as exc:
            with transaction(self.sessions) as session:
                store.stop_run(session, claim.run_id, str(exc))
                store.fail(session, claim, str(exc))
            log.error("run %s stopped: %s", claim.run_id, exc)
            return "run-stopped"
        except PromptTooLongError as exc:
            return self._split_or_fail(claim, str(exc))
        except LLMCallError as exc:
            return self._release_or_fail(claim, f"call failed: {exc}")
        return self._settle(claim, result, estimated, counted)

    def _settle(
        self,
        claim: store.Claim,
        result: LLMCallResult,
        estimated: int,
        counted: int | None,
    ) -> str:
        attempt = result.attempts[-1]
        overflow = result.stop_reason in OVERFLOW_STOP_REASONS
        if result.tool_input is None:
            self._record(claim, attempt, estimated, counted)
            if overflow or result.stop_reason == "refusal":
                # A refusal is about some issue's content: halving isolates it instead of asking again.
                return self._split_or_fail(claim, f"the answer hit stop_reason={result.stop_reason}")
            return self._release_or_fail(claim, f"no tool answer (stop_reason={result.stop_reason})")
        validation = validate(result.tool_input, claim.issue_ids)
        if validation.invented:
            log.warning(
                "batch %s: ignored invented issue ids %s", claim.batch_id, list(validation.invented)[:20]
            )
        if not validation.answers:
            self._record(claim, attempt, estimated, counted)
            if overflow:
                return self._split_or_fail(claim, f"the answer hit stop_reason={result.stop_reason}")
            problems = "; ".join(validation.problems[:3])
            return self._release_or_fail(claim, f"the answer had no valid entry: {problems}")
        try:
            with transaction(self.sessions) as session:
                call_id = store.record_attempt(
                    session, claim, attempt, estimated_input=estimated, counted_input=counted, host=self.host
                )
                # After an overflow the entries that did arrive complete are kept (they are paid for);
                # the rest is split in two so each half fits the output allowance.
                follow_ups = store.complete(
                    session, claim, call_id, validation.answers, validation.missing, split_missing=overflow
                )
                finish_if_done(session, claim.run_id)
        except LeaseLostError:
            # The call happened and was billed: its provenance is kept even though its answers are not.
            self._record(claim, attempt, estimated, counted)
            raise
        self.enqueue(follow_ups)
        return "succeeded" if not follow_ups else "partial"

    def _record(self, claim: store.Claim, attempt: Attempt, estimated: int, counted: int | None) -> None:
        with transaction(self.sessions) as session:
            store.record_attempt(
                session, claim, attempt, estimated_input=estimated, counted_input=counted, host=self.host
            )

    def _split_or_fail(self, claim: store.Claim, reason: str) -> str:
        if len(claim.issues) > 1:
            with transaction(self.sessions) as session:
                halves = store.split(session, claim, reason)
            self.enqueue(halves)
            return "split"
        with transaction(self.sessions) as session:
            store.fail(session, claim, reason)
            finish_if_done(session, claim.run_id)
        return "failed"

    def _release_or_fail(self, claim: store.Claim, reason: str) -> str:
        if claim.failures + 1 < self.settings.batch_max_failures:
            with transaction(self.sessions) as session:
                store.release(session, claim, reason)
            self.enqueue([claim.batch_id])
            return "released"
        return self._split_or_fail(claim, f"failed {claim.failures + 1} times; last: {reason}")
