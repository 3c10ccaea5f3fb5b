"""Nightly planning: one run per nightly set and night, of the issues no run has answered yet.

A set is nightly when ``issue_sets.nightly`` is true (``budgetq load --nightly``). Each night's run
covers the set's issues that no earlier run answered and none is working on: new issues, and those
that failed, were deferred or were oversize before. Planning the same night again finds the run
already there (``runs_one_per_night``) and changes nothing, so a redelivered task is harmless.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store import issues as issue_store
from budgetq.adapters.store.engine import transaction
from budgetq.domain.selector import Selector, SelectorKind
from budgetq.domain.statuses import RunKind
from budgetq.errors import BudgetqError, ConfigurationError
from budgetq.services.planning import enqueue, plan_run
from budgetq.settings import Settings

log = logging.getLogger("budgetq.scheduler")


@dataclass(frozen=True)
class NightlyOutcome:
    """What nightly planning did for one set."""

    set_id: int
    set_name: str
    run_id: int | None
    created: bool
    batches: int
    error: str | None = None


def parse_night(value: str, today: dt.date) -> dt.date:
    """The night a PLAN_NIGHTLY task is for: ``today`` (the caller's UTC date) or an ISO date."""
    if value == "today":
        return today
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(f"night {value!r} is neither 'today' nor a date like 2026-11-29") from None


def plan_nightly(
    sessions: sessionmaker[Session], settings: Settings, app: Celery, night: dt.date
) -> list[NightlyOutcome]:
    """Plan and enqueue the run of every nightly set for ``night``; a set that fails to plan is logged
    and skipped, so one bad set never keeps the others from running."""
    with transaction(sessions) as session:
        sets = issue_store.nightly_sets(session)
    outcomes = []
    for set_id, name in sets:
        try:
            planned = plan_run(
                sessions,
                settings,
                set_id,
                kind=RunKind.NIGHTLY.value,
                selector=Selector(SelectorKind.UNANSWERED),
                nightly_date=night,
                spend_cap_usd=settings.run_spend_cap_usd,
            )
        except BudgetqError as exc:
            log.error("nightly planning of set %s (%s) for %s failed: %s", set_id, name, night, exc)
            outcomes.append(NightlyOutcome(set_id, name, None, False, 0, str(exc)))
            continue
        if planned.created:
            enqueue(app, sessions, planned.batch_ids)
            log.info(
                "nightly run %s of set %s for %s: %d batches",
                planned.run_id,
                name,
                night,
                len(planned.batch_ids),
            )
        else:
            log.info("set %s already has nightly run %s for %s", name, planned.run_id, night)
        outcomes.append(NightlyOutcome(set_id, name, planned.run_id, planned.created, len(planned.batch_ids)))
    return outcomes
