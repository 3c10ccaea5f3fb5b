"""``budgetq``: the command line (typer + rich); it plans through scheduler/ and starts workers by command."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Token-budgeted LLM batch pipeline: plan, run and account for data-quality batches.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def main() -> None:
    """Entry point of the ``budgetq`` command."""
    from budgetq.cli import db, demo, load, report, report_html, runs  # noqa: F401 - importing a command module registers it
    from budgetq.cli.environment import fail_line, outage_line

    try:
        app()
    except Exception as exc:
        # A database or broker that is down, unmigrated or misnamed is a setting to fix, not a bug: one line.
        line = outage_line(exc)
        if line is None:
            raise
        raise SystemExit(fail_line(line)) from exc
