"""Fixtures of the integration tests: the `budgetq` command run in this process, as a user runs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from budgetq.cli import main


@dataclass(frozen=True)
class Outcome:
    """What one `budgetq` invocation printed and how it exited."""

    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        """The non-empty lines on stderr (notices such as "using embedded servers" may precede an error)."""
        return [line for line in self.stderr.splitlines() if line.strip()]

    def one_error_line(self, *words: str) -> str:
        """The single `error:` line, last on stderr, holding ``words``; fails the test otherwise."""
        lines = self.error_lines
        errors = [line for line in lines if line.startswith("error: ")]
        assert self.code != 0 and len(errors) == 1 and errors[0] == lines[-1], self
        assert "Traceback" not in self.stderr
        assert all(word in errors[0] for word in words), errors[0]
        return errors[0]


Budgetq = Callable[..., Outcome]


@pytest.fixture
def run_budgetq(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Budgetq:
    """Run `budgetq ARGS` in this process through ``main`` (as the console script does), with ``env``
    set for the call; no API key, API URL or mode comes from the environment the tests run in."""
    for name in ("ANTHROPIC_API_KEY", "BUDGETQ_ANTHROPIC_API_KEY", "BUDGETQ_MODE", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)

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

    return run
