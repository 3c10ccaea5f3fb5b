"""A bad value, on the command line or in a BUDGETQ_* variable, is one `error:` line and exit 2, never a
traceback (issue 17, point 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer.main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from budgetq.cli import app
from tests.integration.conftest import Budgetq

UNREACHABLE = "postgresql://budgetq:s3cret-pw@127.0.0.1:1/budgetq"
NO_BROKER = "redis://127.0.0.1:1/0"
SERVERS = {"BUDGETQ_DATABASE_URL": UNREACHABLE, "BUDGETQ_REDIS_URL": NO_BROKER}


@pytest.fixture
def budgetq(run_budgetq: Budgetq, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Budgetq:
    """`budgetq ARGS` with an empty data folder and servers that do not answer (nothing is started)."""
    monkeypatch.setenv("BUDGETQ_DATA_DIR", str(tmp_path))
    return run_budgetq


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("plan", "s", "--spend-cap", "-5"), ("--spend-cap", "-5")),
        (("run", "s", "--spend-cap", "nan"), ("--spend-cap",)),
        (("run", "s", "--spend-cap", "inf"), ("--spend-cap",)),
        (("plan", "s", "--spend-cap", "١٠"), ("--spend-cap",)),
        (("run", "s", "--spend-cap", "1e400"), ("--spend-cap", "at most")),
        (("report", "cost", "--since", "99999999999d"), ("--since",)),
        (("report", "cost", "--since", "٧d"), ("--since",)),
        (("report", "cost", "--since", "last tuesday"), ("--since", "YYYY-MM-DD")),
        (("run", "s", "--timeout", "-1"), ("--timeout",)),
        (("run", "s", "--timeout", "nan"), ("--timeout", "finite")),
        (("run", "s", "--timeout", "inf"), ("--timeout", "finite")),
        (("reprocess", "s", "--timeout", "1e400"), ("--timeout", "finite")),
        (("results", "s", "--since", "99999999999d"), ("--since",)),
        (("results", "s", "--since", "٧d"), ("--since",)),
        (("db", "upgrade", ""), ("revision",)),
        (("runs", "--limit", "99999999999999999999"), ("--limit",)),
        (("cancel", "99999999999999999999"), ("'run'",)),
        (("cancel", "0"), ("'run'",)),
        (("run", "s", "--workers", "-3"), ("--workers",)),
        (("load", "nope.csv", "--set", "x", "--show", "-1"), ("--show",)),
        (("report", "cost", "--by", "planet"), ("--by",)),
        (("plan",), ("Missing argument", "SET")),
    ],
)
def test_a_bad_option_is_one_error_line_and_exit_2(
    budgetq: Budgetq, args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    # When a command is given a value it cannot use
    outcome = budgetq(*args, **SERVERS)

    # Then one `error:` line names the option, exit 2
    outcome.one_error_line(*words)
    assert outcome.code == 2, outcome


@pytest.mark.parametrize(
    "args",
    [
        ("--timeout", "nan"),
        ("--timeout", "inf"),
        ("--timeout", "-1"),
        ("--concurrency", "0"),
        ("--concurrency", "-2"),
    ],
)
def test_a_bad_demo_option_is_refused_before_anything_starts(budgetq: Budgetq, args: tuple[str, ...]) -> None:
    # When the demo is given a value it cannot use
    outcome = budgetq("demo", *args, **SERVERS)

    # Then one line names the option, exit 2, and nothing was started first (no stand-in, no server)
    outcome.one_error_line(args[0])
    assert outcome.code == 2
    assert "stand-in" not in outcome.stderr and "PostgreSQL" not in outcome.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BUDGETQ_SAFE_UTILIZATION", "2"),
        ("BUDGETQ_MAX_TOKENS_PER_CALL", "abc"),
        ("BUDGETQ_RUN_SPEND_CAP_USD", "-1"),
        ("BUDGETQ_RUN_SPEND_CAP_USD", "١٠"),
        ("BUDGETQ_LOG_FORMAT", "xml"),
        ("BUDGETQ_DB_CONNECT_TIMEOUT_S", "0"),
        ("BUDGETQ_DB_CONNECT_TIMEOUT_S", "inf"),
        ("BUDGETQ_LEASE_SECONDS", "1e400"),
        ("BUDGETQ_CALL_TIMEOUT_S", "Infinity"),
        ("BUDGETQ_RUN_SPEND_CAP_USD", "1e400"),
        ("BUDGETQ_MODE", "garbage"),
        ("BUDGETQ_LOG_LEVEL", "loud"),
        ("BUDGETQ_DATABASE_URL", "postgresql://db.example:abc/budgetq"),
    ],
)
def test_a_bad_setting_is_one_error_line_naming_the_variable(
    budgetq: Budgetq, variable: str, value: str
) -> None:
    # When a BUDGETQ_ variable holds a value the setting refuses
    outcome = budgetq("report", "cost", **{**SERVERS, variable: value})

    # Then one line names the variable, exit 2
    outcome.one_error_line(variable)
    assert outcome.code == 2, outcome


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:abc/0", "redis://127.0.0.1:6379/abc", "redis://127.0.0.1:99999/0", "redis+socket://"],
)
def test_a_malformed_broker_url_is_refused_before_a_run_is_planned(budgetq: Budgetq, url: str) -> None:
    # When a run is asked for with a broker URL that cannot name a Redis database
    outcome = budgetq("run", "s", BUDGETQ_DATABASE_URL=UNREACHABLE, BUDGETQ_REDIS_URL=url)

    # Then one line names the variable, before PostgreSQL is asked (a run used to be written, then stopped)
    outcome.one_error_line("BUDGETQ_REDIS_URL")
    assert outcome.code == 2 and "PostgreSQL" not in outcome.stderr


def test_an_unwritable_rejected_csv_is_refused_before_anything_is_loaded(
    budgetq: Budgetq, tmp_path: Path
) -> None:
    # Given a file with a rejected row and a --rejected-csv path in a folder that does not exist
    source = tmp_path / "issues.csv"
    source.write_text("external_id,priority,text\na,15,good\nb,7,bad priority\n")
    target = tmp_path / "no-such-folder" / "rejected.csv"

    # When it is loaded
    outcome = budgetq("load", str(source), "--set", "x", "--rejected-csv", str(target), **SERVERS)

    # Then one line names the path, before any server is asked (so nothing was committed and hidden)
    outcome.one_error_line("rejected.csv")
    assert outcome.code == 2
    assert "PostgreSQL" not in outcome.stderr


def _options() -> list[tuple[list[str], str, bool]]:  # noqa: C901 - one walk
    """Every command path, each of its options and whether it takes a value."""
    from budgetq.cli import db, demo, load, report, runs  # noqa: F401 - registers the commands

    found: list[tuple[list[str], str, bool]] = []

    def walk(command: Any, path: list[str]) -> None:
        # typer's own click classes: told apart by what they hold, not by click's types.
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
            return
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                found.append((path, param.opts[0], not getattr(param, "is_flag", False)))
            elif param.param_type_name == "argument":
                found.append((path, "", True))

    walk(typer.main.get_command(app), [])
    assert len(found) > 20, found
    return found


OPTIONS = _options()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(choice=st.sampled_from(OPTIONS), value=st.text(max_size=24))
def test_any_string_for_any_option_is_never_a_traceback(
    budgetq: Budgetq, choice: tuple[list[str], str, bool], value: str
) -> None:
    # Given any command, any of its options, any string as its value
    path, option, takes_value = choice
    if "\x00" in value:
        return  # argv cannot hold NUL
    args = [*path, *([option] if option else []), *([value] if takes_value else [])]
    if path[:1] in (["plan"], ["run"], ["reprocess"]) and option:
        args.insert(1, "some-set")
    if path[:1] == ["load"] and option:
        args[1:1] = ["nope.csv", "--set", "x"] if option != "--set" else ["nope.csv"]
    # When it runs (servers that do not answer: nothing is started or written; the demo, given valid
    # options, starts its stand-in and stops at the database)
    outcome = budgetq(*args, **SERVERS)

    # Then it ends with a documented code and no traceback; a failure is one `error:` line, last
    assert outcome.code in (0, 1, 2), outcome
    assert "Traceback" not in outcome.stderr
    if outcome.code == 2:
        outcome.one_error_line()


def _variables() -> list[str]:
    """Every BUDGETQ_* variable the settings read (the API key and URL go by their ANTHROPIC_ names too)."""
    from budgetq.settings import Settings

    return [f"BUDGETQ_{name.upper()}" for name in Settings.model_fields]


# Random text, and random text after the starts that reach the parsers' deeper branches.
SETTING_VALUES = st.one_of(
    st.text(max_size=24),
    st.builds(
        str.__add__,
        st.sampled_from(["postgresql://h:", "redis://h:", "redis+socket://", "1e", "-", "0x", "inf", "٣"]),
        st.text(max_size=12),
    ),
)


def _run_with(budgetq: Budgetq, variable: str, value: str) -> None:
    # A run reads the settings, the broker URL and the database URL, in that order; servers do not answer.
    outcome = budgetq("run", "some-set", "--no-wait", **{**SERVERS, variable: value})

    # It ends with a documented code and no traceback; a failure is one `error:` line, last
    assert outcome.code in (0, 1, 2), outcome
    assert "Traceback" not in outcome.stderr
    if outcome.code == 2:
        outcome.one_error_line()


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400", "-1", "٣", "abc"])
def test_every_setting_refuses_the_values_that_broke_one_in_one_line(budgetq: Budgetq, value: str) -> None:
    # Given each BUDGETQ_ variable in turn holding a value that once became a traceback
    # (BUDGETQ_DB_CONNECT_TIMEOUT_S=inf reached math.ceil), Then none is
    for variable in _variables():
        _run_with(budgetq, variable, value)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(variable=st.sampled_from(_variables()), value=SETTING_VALUES)
def test_any_string_in_any_setting_is_never_a_traceback(budgetq: Budgetq, variable: str, value: str) -> None:
    # Given any BUDGETQ_ variable holding any string (the environment cannot hold NUL)
    if "\x00" not in value:
        # When a run is asked for, Then no traceback
        _run_with(budgetq, variable, value)


READ_ONLY = {("report", "cost"), ("report", "run"), ("results",), ("runs",), ("sets",), ("plan",)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    choice=st.sampled_from([o for o in OPTIONS if tuple(o[0]) in READ_ONLY]),
    value=st.one_of(st.text(max_size=24), st.sampled_from(["99999999999999999999", "-1", "0", "1e400", "٣"])),
)
def test_any_string_for_a_read_only_command_on_a_real_database_is_never_a_traceback(
    budgetq: Budgetq, database_url: str, choice: tuple[list[str], str, bool], value: str
) -> None:
    # Given a migrated database, a command that only reads it, any of its options, any string as its value
    path, option, takes_value = choice
    if "\x00" in value:
        return  # argv cannot hold NUL
    args = [*path, *([option] if option else []), *([value] if takes_value else [])]
    if path[:1] in (["plan"], ["results"]) and option:
        args.insert(1, "some-set")
    if path == ["report", "run"] and option:
        args.insert(2, "1")
    # When it runs: values reach the queries, not only the option parsers
    outcome = budgetq(*args, BUDGETQ_DATABASE_URL=database_url, BUDGETQ_REDIS_URL=NO_BROKER)

    # Then it ends with a documented code and no traceback; a failure is one `error:` line, last
    assert outcome.code in (0, 1, 2), outcome
    assert "Traceback" not in outcome.stderr
    if outcome.code == 2:
        outcome.one_error_line()
