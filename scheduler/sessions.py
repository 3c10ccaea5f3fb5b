"""The scheduler's database sessions, built lazily in each process (pooled connections never cross a fork)."""

from __future__ import annotations

import os
import threading

from sqlalchemy.orm import Session, sessionmaker

from budgetq.errors import ConfigurationError
from budgetq.settings import Settings
from budgetq.store.db import make_engine, make_sessions


class ProcessSessions:
    """A session factory per process, made on first use from the settings' database URL."""

    def __init__(self, settings: Settings, pool_size: int = 2) -> None:
        self.settings = settings
        self.pool_size = pool_size
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._sessions: sessionmaker[Session] | None = None

    def get(self) -> sessionmaker[Session]:
        """The session factory of the current process."""
        with self._lock:
            if self._sessions is None or self._pid != os.getpid():
                if not self.settings.database_url:
                    raise ConfigurationError("set BUDGETQ_DATABASE_URL before starting the scheduler")
                engine = make_engine(self.settings.database_url, pool_size=self.pool_size)
                self._sessions, self._pid = make_sessions(engine), os.getpid()
            return self._sessions
