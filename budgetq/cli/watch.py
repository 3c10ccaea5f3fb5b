"""Live progress of a run on the terminal, until every batch is terminal (shared by demo and run)."""

from __future__ import annotations

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store import runs as run_store
from budgetq.adapters.store.engine import transaction
from budgetq.cli.environment import console
from budgetq.domain.statuses import IssueStatus, RunStatus

# Above this many issues the live bar stops counting every issue by status on each poll (a scan of
# all the run's rows, 114-248 ms at 1M): it counts the members of the open batches instead, and the
# breakdown by status is read once, at the end.
DETAILED_UP_TO = 100_000


def watch(
    sessions: sessionmaker[Session], run_id: int, total: int, timeout_s: float, poll_s: float = 0.5
) -> run_store.Progress:
    """Show a run's progress bar until it leaves 'running' (or ``timeout_s`` passes); return its progress."""
    columns = (
        TextColumn("[bold]run {task.fields[run]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + timeout_s
    detailed = total <= DETAILED_UP_TO
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("issues", total=total, run=run_id, detail="")
        while True:
            with transaction(sessions) as session:
                p = run_store.progress(session, run_id, by_issue=detailed)
            ended = p.status != RunStatus.RUNNING.value or time.monotonic() > deadline
            if ended and not detailed:
                with transaction(sessions) as session:
                    p = run_store.progress(session, run_id)
            bar.update(task, completed=_done(p, total), detail=_detail(p))
            if ended:
                return p
            time.sleep(poll_s)


def _done(p: run_store.Progress, total: int) -> int:
    """Issues no longer waiting for an answer: every counted status but pending (the cheap poll
    counts only pending ones, so the rest of ``total`` is done)."""
    if set(p.issues) == {IssueStatus.PENDING.value}:
        return max(total - p.issues[IssueStatus.PENDING.value], 0)
    return sum(p.issues.get(s.value, 0) for s in IssueStatus if s is not IssueStatus.PENDING)


def _detail(p: run_store.Progress) -> str:
    """The bar's text: answered, reused and failed when they were read; then batches, calls, spend."""
    counts = ""
    if set(p.issues) != {IssueStatus.PENDING.value}:
        counts = (
            f"answered {p.issues.get('answered', 0)} · reused {p.issues.get('reused', 0)} · "
            f"failed {p.issues.get('failed', 0)} · "
        )
    return f"{counts}batches open {p.batches_open} · calls {p.calls} · {p.spend}"
