"""`budgetq load`, `plan`, `run` and `reprocess` as a user runs them: output, exit codes, clear errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from budgetq.cli import main
from budgetq.store.db import transaction
from budgetq.store.models import Batch, Issue, IssueSet, Run

GOOD = "external_id,priority,text\n" + "".join(
    f"c-{i},{(15, 10, 5, 1)[i % 4]},table t{i} has {i} null keys after the nightly load\n" for i in range(60)
)


@dataclass(frozen=True)
class Outcome:
    """What one `budgetq` invocation printed and how it exited."""

    code: int
    stdout: str
    stderr: str

    def one_error_line(self, *words: str) -> str:
        """The single `error:` line, last on stderr, holding ``words``; fails the test otherwise."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error: ")]
        assert self.code != 0 and len(errors) == 1 and errors[0] == lines[-1], self
        assert "Traceback" not in self.stderr
        assert all(word in errors[0] for word in words), errors[0]
        return errors[0]


Budgetq = Callable[..., Outcome]


@pytest.fixture
def budgetq(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    database_url: str,
    broker_url: str,
    tmp_path: Path,
) -> Iterator[Budgetq]:
    """Run `budgetq ARGS` in this process through ``main`` (as the console script does), on test servers."""
    for name in ("ANTHROPIC_API_KEY", "BUDGETQ_ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BUDGETQ_DATABASE_URL", database_url)
    monkeypatch.setenv("BUDGETQ_REDIS_URL", broker_url)
    monkeypatch.setenv("BUDGETQ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BUDGETQ_MODE", "standin")

    def run(*args: str, **env: str) -> Outcome:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr("sys.argv", ["budgetq", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main()
        out = capsys.readouterr()
        code = exited.value.code
        return Outcome(code if isinstance(code, int) else 1, out.out, out.err)

    yield run


@pytest.fixture
def loaded_set(budgetq: Budgetq, tmp_path: Path) -> str:
    """The name of a set of 60 issues loaded through `budgetq load`."""
    path = tmp_path / "good.csv"
    path.write_text(GOOD, encoding="utf-8")
    name = f"cli-{uuid.uuid4().hex[:8]}"
    outcome = budgetq("load", str(path), "--set", name)
    assert outcome.code == 0 and f"loaded 60 issues into '{name}' (new set" in outcome.stdout, outcome
    return name


def test_plan_dry_run_shows_batches_bound_utilization_and_cost_and_writes_no_run(
    budgetq: Budgetq, loaded_set: str, sessions: sessionmaker[Session]
) -> None:
    # When the loaded set is planned as a dry run, in words and as JSON
    words = budgetq("plan", loaded_set, "--dry-run")
    as_json = budgetq("plan", loaded_set, "--dry-run", "--json", "--spend-cap", "0.05")

    # Then the plan is described: batches against the lower bound, utilization, expected cost
    assert words.code == 0, words
    assert "60 issues → 1 batches (lower bound 1); 0 oversize, 0 deferred" in words.stdout
    assert "utilization of the window per call" in words.stdout and "min " in words.stdout
    assert "estimated cost $" in words.stdout
    summary = json.loads(as_json.stdout)
    assert summary["issues"] == 60 and summary["batches"] + summary["deferred"] > 0
    assert summary["deferred"] > 0 and float(summary["estimated_cost_usd"]) <= 0.05
    # And no run was written
    with transaction(sessions) as session:
        runs = session.scalar(
            select(func.count()).select_from(Run).join(IssueSet).where(IssueSet.name == loaded_set)
        )
    assert runs == 0


def test_a_file_with_bad_rows_loads_the_good_ones_lists_the_bad_and_exits_1(
    budgetq: Budgetq, tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    # Given a file with two bad rows among good ones
    path = tmp_path / "mixed.csv"
    path.write_text("priority,text\n10,fine\n11,bad priority\n5,also fine\n1,\n", encoding="utf-8")
    name = f"mixed-{uuid.uuid4().hex[:8]}"

    # When it is loaded, then loaded strictly into another set
    outcome = budgetq("load", str(path), "--set", name)
    strict = budgetq("load", str(path), "--set", name + "-strict", "--strict")

    # Then the table names each bad line and why, the good rows load, and both exit 1
    assert outcome.code == 1
    assert "2 rejected rows" in outcome.stdout
    assert (
        "priority 11 is not allowed" in outcome.stdout
        and "text is empty or whitespace only" in outcome.stdout
    )
    assert f"loaded 2 issues into '{name}'" in outcome.stdout
    strict.one_error_line("--strict: 2 rows rejected, so nothing was loaded")
    assert strict.code == 1
    with transaction(sessions) as session:
        assert session.scalar(select(func.count()).where(IssueSet.name == name + "-strict")) == 0
        assert (
            session.scalar(
                select(func.count()).select_from(Issue).join(IssueSet).where(IssueSet.name == name)
            )
            == 2
        )


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("id,body\n1,x\n", ("lacks the column(s) priority, text",)),
        (None, ("cannot read", "No such file")),
    ],
)
def test_a_file_that_cannot_be_loaded_is_one_clear_line_and_exit_2(
    budgetq: Budgetq, tmp_path: Path, content: str | None, words: tuple[str, ...]
) -> None:
    path = tmp_path / "issues.csv"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    outcome = budgetq("load", str(path), "--set", "never")
    outcome.one_error_line(*words)
    assert outcome.code == 2


@pytest.mark.parametrize(
    "args",
    [
        ("plan", "no-such-set", "--dry-run"),
        ("run", "no-such-set", "--no-wait"),
        ("reprocess", "no-such-set", "--failed-only", "--no-wait"),
    ],
)
def test_an_unknown_set_is_one_clear_line(budgetq: Budgetq, args: tuple[str, ...]) -> None:
    budgetq(*args).one_error_line("no issue set named 'no-such-set'", "known sets")


def test_reprocess_with_two_selectors_is_one_clear_line(budgetq: Budgetq, loaded_set: str) -> None:
    outcome = budgetq("reprocess", loaded_set, "--failed-only", "--priority", "5", "--no-wait")
    outcome.one_error_line("choose one of --failed-only, --issues and --priority")


def test_run_without_waiting_plans_and_enqueues_the_set(
    budgetq: Budgetq, loaded_set: str, sessions: sessionmaker[Session], broker_url: str
) -> None:
    # When the set is run without waiting, against a broker of its own
    outcome = budgetq("run", loaded_set, "--no-wait")

    # Then a run was planned and its batch is in the llm queue
    assert outcome.code == 0, outcome
    assert "60 issues in 1 batches (lower bound 1)" in outcome.stdout
    with transaction(sessions) as session:
        run = session.scalars(select(Run).join(IssueSet).where(IssueSet.name == loaded_set)).one()
        unsent = session.scalar(
            select(func.count()).where(Batch.run_id == run.id, Batch.enqueued_at.is_(None))
        )
    assert run.kind == "manual" and unsent == 0
    assert redis.Redis.from_url(broker_url.replace("redis+socket://", "unix://")).llen("llm") == 1


def test_run_exits_1_when_the_run_ends_with_failures(
    budgetq: Budgetq, loaded_set: str, tmp_path: Path
) -> None:
    # Given calls that can only fail: replay mode with no recorded answers, one failure per batch allowed
    env = {
        "BUDGETQ_MODE": "replay",
        "BUDGETQ_CASSETTE_DIR": str(tmp_path / "no-cassettes"),
        "BUDGETQ_BATCH_MAX_FAILURES": "1",
        "BUDGETQ_MAX_ISSUES_PER_CALL": "30",
    }

    # When the set is run with a local worker, waiting for the end
    outcome = budgetq("run", loaded_set, "--workers", "2", "--timeout", "90", **env)

    # Then the run ends failed, and the command says so and exits 1
    assert outcome.code == 1, outcome
    assert "failed 60" in outcome.stdout and " failed:" in outcome.stdout
