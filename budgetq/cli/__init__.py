"""``budgetq``: the command line (typer + rich); it plans through scheduler/ and starts workers by command."""

from __future__ import annotations

import signal
from types import FrameType

import typer

app = typer.Typer(
    help="Token-budgeted LLM batch pipeline: plan, run and account for data-quality batches.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def main() -> None:
    """Entry point of the ``budgetq`` command."""
    from pydantic import ValidationError
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
    from typer.exceptions import Abort

    from budgetq.cli import (  # noqa: F401 - registers
        db,
        demo,
        lifecycle,
        load,
        notifications,
        report,
        report_html,
        results,
        runs,
    )
    from budgetq.cli.environment import fail_line, outage_line, settings_line, usage_line

    # SIGTERM ends the command as Ctrl-C does: through every `finally`, so embedded servers, the stand-in
    # and workers it started are stopped, not orphaned.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        # Not standalone: a usage error becomes our one `error:` line instead of typer's framed panel.
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:
        print(exc.ctx.get_help() if exc.ctx is not None else "")
        raise SystemExit(2) from exc
    except ClickException as exc:
        raise SystemExit(fail_line(usage_line(exc))) from exc
    except (Abort, KeyboardInterrupt) as exc:
        fail_line("interrupted; what this command started was stopped")
        raise SystemExit(130) from exc
    except ValidationError as exc:
        raise SystemExit(fail_line(settings_line(exc))) from exc
    except Exception as exc:
        # A database or broker that is down, unmigrated or misnamed is a setting to fix, not a bug: one line.
        line = outage_line(exc)
        if line is None:
            raise
        raise SystemExit(fail_line(line)) from exc
    raise SystemExit(code if isinstance(code, int) else 0)


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
