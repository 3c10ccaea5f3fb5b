"""docker-compose.yml and the Dockerfile, checked without a Docker engine: structure, health checks,
start order, and that every command names an entry point that exists."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from budgetq.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BUDGETQ_SERVICES = ("migrate", "worker", "scheduler")
_DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as Compose reads it (YAML merge keys resolved; ${VAR:-default} left as text)."""
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def _interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with nothing set: the default."""
    return _DEFAULT.sub(lambda m: m.group(2), value)


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    assert isinstance(command, list), "commands are exec lists, so no shell mangles them"
    return [_interpolate(str(part)) for part in command]


def test_the_stack_has_its_services_and_flower_is_optional(compose: dict[str, Any]) -> None:
    # Given the compose file
    services = compose["services"]

    # Then it runs the databases, the migration, workers and the scheduler; Flower only on request
    assert {"postgres", "redis", "migrate", "worker", "scheduler", "flower"} <= set(services)
    assert services["flower"]["profiles"] == ["flower"]
    assert all("profiles" not in services[name] for name in ("postgres", "redis", *BUDGETQ_SERVICES))


def test_postgres_and_redis_have_health_checks_and_named_volumes(compose: dict[str, Any]) -> None:
    # Given the two servers
    services = compose["services"]

    for name, tool in (("postgres", "pg_isready"), ("redis", "redis-cli")):
        service = services[name]
        # Then each is probed by its own readiness tool
        assert tool in " ".join(service["healthcheck"]["test"]), name
        # And keeps its data in a named volume the file declares
        volume = service["volumes"][0].split(":")[0]
        assert volume in compose["volumes"], name


def test_budgetq_services_start_only_after_their_dependencies_are_ready(compose: dict[str, Any]) -> None:
    # Given the services that run budgetq code
    services = compose["services"]

    # Then the migration waits for a healthy PostgreSQL and runs once
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    # And workers and the scheduler wait for healthy servers and a finished migration
    for name in ("worker", "scheduler"):
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert services[name]["healthcheck"]["test"], name


def test_the_worker_can_be_scaled(compose: dict[str, Any]) -> None:
    # Given the worker service
    worker = compose["services"]["worker"]

    # Then nothing in it pins one container: no fixed name, no host port
    assert "container_name" not in worker
    assert "ports" not in worker
    # And it runs the threads pool on the llm queue at the configured concurrency
    command = _command(worker)
    assert command[command.index("-P") + 1] == "threads"
    assert command[command.index("-Q") + 1] == "llm"
    assert command[command.index("-c") + 1] == str(Settings.model_fields["worker_concurrency"].default)


def test_budgetq_services_share_one_image_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    # Given the services that run budgetq code
    services = compose["services"]
    images = {services[name]["image"] for name in (*BUDGETQ_SERVICES, "standin")}
    builds = [services[name]["build"] for name in BUDGETQ_SERVICES]

    # Then they run one image, built from the Dockerfile at the root of the repository
    assert len(images) == 1
    assert all(b == {"context": ".", "dockerfile": "Dockerfile"} for b in builds)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "uv sync --locked" in dockerfile
    # And everything the Dockerfile copies exists
    for line in dockerfile.splitlines():
        if line.startswith("COPY") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def test_every_budgetq_setting_in_the_compose_environment_exists(compose: dict[str, Any]) -> None:
    # Given the environment every budgetq service gets
    environment = compose["services"]["worker"]["environment"]

    # Then each BUDGETQ_ variable is a setting budgetq reads (a typo would be silently ignored)
    fields = set(Settings.model_fields)
    unknown = [
        k for k in environment if k.startswith("BUDGETQ_") and k[len("BUDGETQ_") :].lower() not in fields
    ]
    assert unknown == []
    # And the URLs point at the compose services, not at localhost
    assert "@postgres:5432/" in environment["BUDGETQ_DATABASE_URL"]
    assert "@redis:6379/" in environment["BUDGETQ_REDIS_URL"]  # with the password (issue 17, point 14)


def test_every_command_names_an_entry_point_that_exists(compose: dict[str, Any]) -> None:
    # Given the commands of the budgetq services
    services = compose["services"]
    celery_apps = {
        name: (cmd[cmd.index("-A") + 1], cmd[cmd.index("-Q") + 1])
        for name in ("worker", "scheduler")
        for cmd in [_command(services[name])]
    }
    budgetq_commands = [_command(services["migrate"])]
    modules = [_command(services["standin"])[2]]

    # When, in one fresh process with the settings compose gives, each Celery app module is imported and
    # the console script's function is asked for each budgetq command's --help
    probe = (
        "import contextlib, importlib, io, json, sys\n"
        "apps, modules, commands = (json.loads(a) for a in sys.argv[1:4])\n"
        "out = {'queues': {}, 'help': []}\n"
        "for module, queue in apps:\n"
        "    app = importlib.import_module(module).app\n"
        "    out['queues'][module] = [q.name for q in app.conf.task_queues]\n"
        "for module in modules:\n"
        "    importlib.import_module(module)\n"
        "from budgetq.cli import main\n"
        "for command in commands:\n"
        "    sys.argv = ['budgetq', *command[1:], '--help']\n"
        "    try:\n"
        "        with contextlib.redirect_stdout(io.StringIO()):\n"
        "            main()\n"
        "    except SystemExit as exc:\n"
        "        out['help'].append(exc.code or 0)\n"
        "print(json.dumps(out))\n"
    )
    env = {
        "PATH": str(Path(sys.executable).parent),
        "BUDGETQ_DATABASE_URL": "postgresql://budgetq:budgetq@postgres:5432/budgetq",
        "BUDGETQ_REDIS_URL": "redis://redis:6379/0",
    }
    args = (list(celery_apps.values()), modules, budgetq_commands)
    done = subprocess.run(
        [sys.executable, "-c", probe, *(json.dumps(a) for a in args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # Then each module has a Celery app that declares the queue its service consumes
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    for module, queue in celery_apps.values():
        assert queue in found["queues"][module], (module, queue)
    # And each budgetq command is a subcommand of the `budgetq` console script (its help exits 0)
    assert all(command[0] == "budgetq" for command in budgetq_commands)
    assert found["help"] == [0] * len(budgetq_commands)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["budgetq"] == "budgetq.cli:main"
