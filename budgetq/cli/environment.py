"""The servers a command runs against: configured ones, or embedded PostgreSQL, Redis and the stand-in."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import typer
from rich.console import Console

from budgetq.embedded import ensure_servers
from budgetq.errors import BudgetqError
from budgetq.settings import Settings

console = Console(stderr=True)


@dataclass(frozen=True)
class Environment:
    """The servers a command runs against, and what keeps embedded ones alive."""

    settings: Settings
    database_url: str
    redis_url: str
    anthropic_base_url: str | None
    handles: tuple[Any, ...]


@contextlib.contextmanager
def environment(settings: Settings, *, need_api: bool) -> Iterator[Environment]:
    """Configured servers, or embedded ones (PostgreSQL, Redis, the stand-in) where none are configured."""
    servers = ensure_servers(settings.database_url, settings.redis_url, settings.data_dir)
    if settings.database_url is None or settings.redis_url is None:
        console.print(
            f"[dim]Using embedded servers under {settings.data_dir}/ (set BUDGETQ_DATABASE_URL and "
            "BUDGETQ_REDIS_URL to use your own).[/dim]"
        )
    handles: list[Any] = list(servers.handles)
    base_url = settings.anthropic_base_url
    standin = None
    if need_api and settings.resolved_mode() == "standin" and base_url is None:
        from budgetq.standin import StandIn, StandInConfig

        standin = StandIn(StandInConfig())
        base_url = standin.start()
        handles.append(standin)
        console.print(
            f"[yellow]No ANTHROPIC_API_KEY: calls go to the local Messages API stand-in at {base_url}, "
            "not to Anthropic. Costs shown are what the calls would cost at list price.[/yellow]"
        )
    assert servers.database_url is not None and servers.redis_url is not None
    try:
        yield Environment(settings, servers.database_url, servers.redis_url, base_url, tuple(handles))
    finally:
        if standin is not None:
            standin.stop()


def worker_env(env: Environment) -> dict[str, str]:
    out = {
        "BUDGETQ_DATABASE_URL": env.database_url,
        "BUDGETQ_REDIS_URL": env.redis_url,
        "BUDGETQ_MODE": env.settings.resolved_mode(),
        "BUDGETQ_MODEL": env.settings.model,
    }
    if env.anthropic_base_url:
        out["ANTHROPIC_BASE_URL"] = env.anthropic_base_url
    return out


def fail(exc: BudgetqError) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2)
