"""Live progress of a run on the terminal, until every batch is terminal (shared by demo and run)."""

from __future__ import annotations

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store import runs as run_store
from budgetq.adapters.store.engine import transaction
from budgetq.cli.environment import console
from budgetq.domain.statuses import IssueStatus, RunStatus


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
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("issues", total=total, run=run_id, detail="")
        while True:
            with transaction(sessions) as session:
                p = run_store.progress(session, run_id)
            done = sum(p.issues.get(s.value, 0) for s in IssueStatus if s is not IssueStatus.PENDING)
            detail = (
                f"answered {p.issues.get('answered', 0)} · reused {p.issues.get('reused', 0)} · "
                f"failed {p.issues.get('failed', 0)} · "
                f"batches open {p.batches_open} · calls {p.calls} · {p.spend}"
            )
            bar.update(task, completed=done, detail=detail)
            if p.status != RunStatus.RUNNING.value or time.monotonic() > deadline:
                return p
            time.sleep(poll_s)
