"""The servers a command runs against: configured ones, or embedded PostgreSQL, Redis and the stand-in."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.queue.broker_url import check_broker_url
from budgetq.adapters.store.engine import (
    DatabaseTimeouts,
    ensure_migrated,
    make_engine,
    make_sessions,
    ping,
    sqlalchemy_url,
    upgrade,
)
from budgetq.errors import BudgetqError, ConfigurationError
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
def environment(settings: Settings, *, need_api: bool, need_broker: bool = True) -> Iterator[Environment]:
    """Configured servers, or embedded ones (PostgreSQL, Redis, the stand-in) where none are configured.

    A command that only reads or migrates the database passes ``need_broker=False``: no Redis is started.
    """
    if need_api and settings.resolved_mode() == "live" and settings.anthropic_api_key is None:
        raise ConfigurationError(
            "live mode needs ANTHROPIC_API_KEY; set it, or unset BUDGETQ_MODE to use the local stand-in"
        )
    if need_api:
        from budgetq.adapters.llm.endpoint import check_base_url

        check_base_url(
            settings.anthropic_base_url,
            sends_key=settings.anthropic_api_key is not None,
            allow_plain_http=settings.allow_plain_http_base_url,
        )
    # A malformed URL is reported before anything is started.
    if settings.database_url is not None:
        sqlalchemy_url(settings.database_url)
    if need_broker and settings.redis_url is not None:
        check_broker_url(settings.redis_url)
    redis_url = settings.redis_url if need_broker else (settings.redis_url or "")
    database_url = settings.database_url
    handles: list[Any] = []
    embedded: tuple[Any, ...] = ()
    if database_url is None or redis_url is None:
        # Only a machine with nothing configured needs the devtools; a deployment may leave them out.
        from budgetq.devtools.embedded import ensure_servers

        servers = ensure_servers(database_url, redis_url, settings.data_dir)
        database_url, redis_url, handles = servers.database_url, servers.redis_url, list(servers.handles)
        embedded = tuple(servers.handles)
        variables = "BUDGETQ_DATABASE_URL and BUDGETQ_REDIS_URL" if need_broker else "BUDGETQ_DATABASE_URL"
        note = f"Using embedded servers under {settings.data_dir}/ (set {variables} to use your own)."
        console.print(f"[dim]{note}[/dim]", soft_wrap=True)
    base_url = settings.anthropic_base_url
    standin = None
    if need_api and settings.resolved_mode() == "standin" and base_url is None:
        from budgetq.devtools.standin.server import StandIn, StandInConfig

        standin = StandIn(StandInConfig())
        base_url = standin.start()
        handles.append(standin)
        console.print(
            f"[yellow]No ANTHROPIC_API_KEY: calls go to the local Messages API stand-in at {base_url}, "
            "not to Anthropic. Costs shown are what the calls would cost at list price.[/yellow]",
            soft_wrap=True,
        )
    assert database_url is not None and redis_url is not None
    try:
        yield Environment(settings, database_url, redis_url, base_url, tuple(handles))
    finally:
        # Also on Ctrl-C, SIGTERM (main turns it into SystemExit) and errors: nothing started is left.
        if standin is not None:
            standin.stop()
        if embedded:
            from budgetq.devtools.embedded import stop_servers

            stop_servers(embedded)


@contextlib.contextmanager
def database(
    settings: Settings, *, need_api: bool = False, need_broker: bool = False
) -> Iterator[tuple[Environment, sessionmaker[Session]]]:
    """The environment and sessions on its database: an embedded database is migrated on the spot
    (as the demo does), a configured one must already be at this code's revision."""
    with environment(settings, need_api=need_api, need_broker=need_broker) as env:
        if settings.database_url is None:
            upgrade(env.database_url, connect_timeout_s=settings.db_connect_timeout_s)
        engine = make_engine(env.database_url, timeouts=DatabaseTimeouts.of(settings))
        try:
            ping(engine)
            ensure_migrated(engine)
            yield env, make_sessions(engine)
        finally:
            engine.dispose()


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


def fail_line(message: str) -> int:
    """Print ``message`` as one error line (never wrapped) and return the exit code, 2."""
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    return 2


def fail(exc: BudgetqError) -> typer.Exit:
    """Print ``exc`` as one line (never wrapped, never a traceback) and return the exit to raise."""
    return typer.Exit(fail_line(str(exc)))


def outage_line(exc: BaseException) -> str | None:
    """One line for an error of the environment (bad or unreachable database or broker, schema not
    migrated, a budgetq error); None for anything else, which is a bug and keeps its traceback."""
    from kombu.exceptions import OperationalError as BrokerError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from sqlalchemy.exc import OperationalError, ProgrammingError

    if isinstance(exc, BudgetqError):
        return str(exc)
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__]
    first = lines[0].rstrip(".")
    if isinstance(exc, ProgrammingError) and getattr(exc.orig, "sqlstate", None) == "42P01":
        return f"the database has no budgetq schema ({first}): run `budgetq db upgrade`"
    if isinstance(exc, OperationalError):
        return f"cannot reach PostgreSQL: {first}; check BUDGETQ_DATABASE_URL"
    if isinstance(exc, BrokerError | RedisConnectionError):
        return f"cannot reach the broker: {first}; check BUDGETQ_REDIS_URL"
    return None


def usage_line(exc: Exception) -> str:
    """One line for a command-line usage error (a bad option value, a missing argument), naming --help."""
    message = " ".join(str(getattr(exc, "format_message", lambda: str(exc))()).split())
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "budgetq"
    return f"{message} (see `{path} --help`)"


def settings_line(exc: Any) -> str:
    """One line for settings pydantic refused: each variable, its value and why."""
    from budgetq.settings import Settings

    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        alias = Settings.model_fields[field].validation_alias if field in Settings.model_fields else None
        variable = "ANTHROPIC_" + field[len("anthropic_") :].upper() if alias else f"BUDGETQ_{field.upper()}"
        value = error.get("input")
        shown = (
            "" if field in ("anthropic_api_key", "notify_urls") or isinstance(value, dict) else f"={value!r}"
        )
        parts.append(f"{variable}{shown}: {error['msg']}")
    return "bad setting " + "; ".join(parts)
