"""Runs started now, by the command line or a task: a whole set, or a reprocess of some of its issues."""

from __future__ import annotations

from decimal import Decimal

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store import issues as issue_store
from budgetq.adapters.store import selection
from budgetq.adapters.store.engine import transaction
from budgetq.domain.selector import Selector
from budgetq.domain.statuses import RunKind
from budgetq.errors import NothingSelectedError
from budgetq.services.planning import PlannedRun, enqueue, plan_run
from budgetq.settings import Settings


def start_run(
    sessions: sessionmaker[Session],
    settings: Settings,
    app: Celery,
    set_id: int,
    *,
    kind: str = RunKind.MANUAL.value,
    selector: Selector | None = None,
    spend_cap_usd: Decimal | None = None,
    api_mode: str | None = None,
    request_key: str | None = None,
    fresh: bool = False,
) -> PlannedRun:
    """Plan a run of the set (of the selector's issues) and enqueue its batches, highest priority first;
    ``api_mode`` (sync or batch-api) overrides the set's and the settings' choice for this run. A request
    key already used returns its run, not a new one (``created`` False); ``fresh``: reuse no answer."""
    planned = plan_run(
        sessions,
        settings,
        set_id,
        kind=kind,
        selector=selector,
        spend_cap_usd=spend_cap_usd,
        api_mode=api_mode,
        request_key=request_key,
        fresh=fresh,
    )
    if planned.created and planned.batch_ids:
        enqueue(app, sessions, planned.batch_ids)
    return planned


def check_selection(sessions: sessionmaker[Session], set_id: int, selector: Selector) -> int:
    """How many issues the selector picks in the set; NotFoundError when listed ids are not in the set
    or nothing matches (a reprocess of nothing is a mistake worth saying)."""
    with transaction(sessions) as session:
        name = issue_store.set_name(session, set_id)
        selection.require_known(session, set_id, name, selector)
        count = selection.count_selected(session, set_id, selector)
    if count == 0:
        raise NothingSelectedError(
            f"no issue of set {name!r} is among {selector.describe()}: nothing to reprocess"
        )
    return count


def reprocess(
    sessions: sessionmaker[Session],
    settings: Settings,
    app: Celery,
    set_id: int,
    selector: Selector,
    *,
    spend_cap_usd: Decimal | None = None,
    api_mode: str | None = None,
    request_key: str | None = None,
    fresh: bool = False,
) -> PlannedRun:
    """A new run of only the selected issues of the set, enqueued now (``api_mode`` and ``request_key``
    as in start_run)."""
    check_selection(sessions, set_id, selector)
    return start_run(
        sessions,
        settings,
        app,
        set_id,
        kind=RunKind.REPROCESS.value,
        selector=selector,
        spend_cap_usd=spend_cap_usd,
        api_mode=api_mode,
        request_key=request_key,
        fresh=fresh,
    )
