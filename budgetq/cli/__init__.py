"""``budgetq``: the command line (typer + rich); it plans through scheduler/ and starts workers by command."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Token-budgeted LLM batch pipeline: plan, run and account for data-quality batches.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def main() -> None:
    """Entry point of the ``budgetq`` command."""
    from budgetq.cli import db, demo  # noqa: F401 - importing a command module registers its commands

    app()
