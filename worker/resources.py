"""A worker process's resources: its engine, SDK clients and spend gates, built lazily after any fork
and shared by its threads; and sending batch tasks by name."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Sequence

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.llm.client import BudgetAwareLLMClient, ReplayMode
from budgetq.adapters.queue.celery_app import PROCESS_BATCH
from budgetq.adapters.ratelimit.limiter import RedisRateLimiter
from budgetq.adapters.store.engine import ProcessSessions, transaction
from budgetq.adapters.store.reaper import mark_sent
from budgetq.settings import Settings
from worker.gates import AttemptGates, SpendGate
from worker.guarding import CalibrationCache


class Resources:
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
        self.calibrations = CalibrationCache()  # the guard's checked calibration, per run

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
        if not batch_ids:
            return
        for batch_id in batch_ids:
            self.app.send_task(PROCESS_BATCH, args=[batch_id], countdown=countdown)
        with transaction(self.sessions) as session:
            # The reaper resends a queued batch only once its message is overdue.
            mark_sent(session, batch_ids, countdown or 0.0)
