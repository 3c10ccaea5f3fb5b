"""Nothing in without a key: compose secrets required, Flower and metrics local (issue 17, 12-14)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from budgetq.adapters.observability import metrics
from budgetq.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
RAW = (ROOT / "docker-compose.yml").read_text()
_REFERENCE = re.compile(r"\$\{(\w+)(:?[-?+]?)([^}]*)\}")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    """The compose file's services (YAML merge keys resolved; ${VAR...} left as text)."""
    loaded: dict[str, Any] = yaml.safe_load(RAW)
    return loaded["services"]


@pytest.mark.parametrize("variable", ["POSTGRES_PASSWORD", "REDIS_PASSWORD", "FLOWER_BASIC_AUTH"])
def test_every_secret_is_required_and_has_no_default(variable: str) -> None:
    # Given every place the compose file reads the secret
    uses = [(op, rest) for name, op, rest in _REFERENCE.findall(RAW) if name == variable]

    # Then it is read, and each use is ${VAR:?message}: compose refuses to start without it, never a default
    assert uses, variable
    assert all(op == ":?" and rest.strip() for op, rest in uses), uses


def test_postgres_takes_its_password_from_the_required_variable(services: dict[str, Any]) -> None:
    # Given the PostgreSQL service and the URL budgetq connects with
    postgres = services["postgres"]["environment"]
    url = services["worker"]["environment"]["BUDGETQ_DATABASE_URL"]

    # Then both use POSTGRES_PASSWORD, and "budgetq" is no password anywhere
    assert postgres["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert url.startswith("postgresql://budgetq:${POSTGRES_PASSWORD:?")
    assert "budgetq:budgetq@" not in RAW


def test_redis_requires_a_password_and_every_client_sends_it(services: dict[str, Any]) -> None:
    # Given the Redis service
    redis = services["redis"]
    command = redis["command"]

    # Then it starts with --requirepass, its health check authenticates, and budgetq's URL carries it
    assert command[command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
    assert "REDISCLI_AUTH" in redis["environment"]
    assert services["worker"]["environment"]["BUDGETQ_REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?")
    assert "redis://redis:" not in RAW


def test_flower_is_off_by_default_local_only_and_behind_basic_auth(services: dict[str, Any]) -> None:
    # Given the Flower service
    flower = services["flower"]

    # Then it runs only on request, publishes its port on localhost only, and asks for a password
    assert flower["profiles"] == ["flower"]
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert any(part.startswith("--basic_auth=${FLOWER_BASIC_AUTH:?") for part in flower["command"])
    assert any(part.startswith("--broker=redis://:${REDIS_PASSWORD:?") for part in flower["command"])


def test_metrics_listen_on_localhost_unless_compose_opts_in(services: dict[str, Any]) -> None:
    # Given the default settings and compose's environment
    # Then a process serves its metrics on the loopback interface; compose opts its private network in
    assert Settings().metrics_host == "127.0.0.1"
    assert services["worker"]["environment"]["BUDGETQ_METRICS_HOST"] == "0.0.0.0"
    assert "ports" not in services["worker"] and "ports" not in services["scheduler"]


def test_the_metrics_server_binds_the_configured_host(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the metrics server's start recorded
    bound: list[tuple[int, str]] = []
    monkeypatch.setattr(metrics, "start_http_server", lambda port, addr="0.0.0.0": bound.append((port, addr)))
    monkeypatch.setattr(metrics, "_served", set())

    # When a process serves its metrics with the default host
    metrics.serve(9911, host=Settings().metrics_host)

    # Then it listened on localhost only
    assert bound == [(9911, "127.0.0.1")]
