"""Closing a run once its last batch is terminal, without locking the run's row per batch.

Each transaction that ends a batch checks, in its own snapshot, whether any batch of the run is still
open (``queued`` or ``running``, the partial index ``batches_open_idx``); the run's row is
written once, by the UPDATE that closes it. Two workers finishing the last two batches at once would
each see the other's batch still open in their own transaction, so a check that saw an open batch is
repeated after the COMMIT, in a new transaction: whichever of the two commits last starts its re-check
after both commits and closes the run. A worker killed between its COMMIT and its re-check leaves the
run to the reaper, which runs the same check.
"""

from __future__ import annotations

import logging

from sqlalchemy import and_, bindparam, case, event, func, select, text, update
from sqlalchemy.orm import Session

from budgetq.adapters.store import outbox
from budgetq.adapters.store.models import Batch, Run, RunIssue
from budgetq.domain.statuses import BatchStatus, IssueStatus, RunStatus

OPEN = tuple(s.value for s in BatchStatus if not s.terminal)
# Spelled out, not bound: a prepared statement's generic plan could not match a bound IN list to the
# partial index batches_open_idx, whose predicate this is.
OPEN_BATCH = text("batches.status IN ({})".format(", ".join(f"'{s}'" for s in OPEN)))
_RECHECK = "budgetq.runs_to_recheck"

log = logging.getLogger("budgetq.store")


def finish_if_done(session: Session, run_id: int) -> str | None:
    """Close the run once every batch is terminal; return its final status, or None while work remains
    (then the check is repeated once this session's transaction has committed)."""
    final = close_if_done(session, run_id)
    if final is None:
        pending: set[int] | None = session.info.get(_RECHECK)
        if pending is None:
            pending = session.info[_RECHECK] = set()
            event.listen(session, "after_commit", _recheck, once=True)
        pending.add(run_id)
    return final


# Built once: the check runs for every batch that ends.
_OPEN_BATCHES = select(Batch.id).where(Batch.run_id == bindparam("run_id"), OPEN_BATCH).exists()
_FAILED = (
    select(RunIssue.issue_id)
    .where(RunIssue.run_id == bindparam("run_id"), RunIssue.status == IssueStatus.FAILED.value)
    .exists()
)
_CLOSE_IF_DONE = (
    update(Run)
    .where(and_(Run.id == bindparam("run_id"), Run.status == RunStatus.RUNNING.value, ~_OPEN_BATCHES))
    .values(
        status=case((_FAILED, RunStatus.FAILED.value), else_=RunStatus.SUCCEEDED.value),
        finished_at=func.now(),
    )
    .returning(Run.status)
)


def close_if_done(session: Session, run_id: int) -> str | None:
    """One check in the current transaction: close the run if no batch of it is open."""
    final: str | None = session.connection().execute(_CLOSE_IF_DONE, {"run_id": run_id}).scalar()
    if final is not None:
        outbox.record_run_end(
            session, run_id
        )  # in this transaction: the end and its notification, or neither
    return final


def _recheck(session: Session) -> None:
    run_ids = session.info.pop(_RECHECK, set())
    try:
        with Session(session.get_bind()) as fresh, fresh.begin():
            for run_id in sorted(run_ids):
                close_if_done(fresh, run_id)
    except Exception:  # noqa: BLE001 - the batch is committed; the reaper closes the run instead
        log.exception("re-checking whether runs %s are done failed; the reaper will close them", run_ids)
