"""Plan a run: count tokens once per issue → pack by priority under the guard → persist → enqueue."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from budgetq.catalog import ModelSpec, get_model
from budgetq.packing import PackItem, PackLimits, PackPlan, derive_limits, lower_bound, pack
from budgetq.prompt import fixed_input_tokens, issue_input_tokens
from budgetq.queue import PROCESS_BATCH
from budgetq.settings import Settings
from budgetq.store import issues as issue_store
from budgetq.store import runs as run_store
from budgetq.store.db import transaction
from budgetq.tokens import CALIBRATION_VERSION, ENCODING_NAME, raw_counts


@dataclass(frozen=True)
class PlannedRun:
    """A planned (and possibly written) run: its batches in queue order and what was left out."""

    run_id: int | None
    batch_ids: tuple[int, ...]
    plan: PackPlan
    limits: PackLimits
    lower_bound: int
    issues: int


def count_tokens(sessions: sessionmaker[Session], set_id: int) -> int:
    """Count and store the tokens of the set's issues that have no count yet; return how many."""
    with transaction(sessions) as session:
        todo = issue_store.uncounted(session, set_id, ENCODING_NAME)
        counts = raw_counts([text for _, text in todo])
        issue_store.save_counts(
            session,
            [(i, n) for (i, _), n in zip(todo, counts, strict=True)],
            ENCODING_NAME,
            CALIBRATION_VERSION,
        )
    return len(todo)


def limits_for(spec: ModelSpec, settings: Settings) -> PackLimits:
    """The per-call packing limits for a model under the settings' guard."""
    return derive_limits(
        context_window=spec.context_window,
        safe_utilization=settings.safe_utilization,
        model_max_output=spec.max_output_tokens,
        max_tokens=settings.max_tokens_per_call,
        fixed_input_tokens=fixed_input_tokens(spec.calibration),
        max_items=settings.max_issues_per_call,
    )


def plan_run(
    sessions: sessionmaker[Session],
    settings: Settings,
    set_id: int,
    *,
    kind: str,
    issue_ids: Sequence[int] | None = None,
    nightly_date: dt.date | None = None,
    spend_cap_usd: Decimal | None = None,
    dry_run: bool = False,
) -> PlannedRun:
    """Pack the set (or ``issue_ids`` of it) and, unless ``dry_run``, write the run and its batches."""
    spec = get_model(settings.model)
    count_tokens(sessions, set_id)
    limits = limits_for(spec, settings)
    with transaction(sessions) as session:
        rows = issue_store.planning_rows(session, set_id, issue_ids)
        items = [
            PackItem(
                r.id,
                r.priority,
                issue_input_tokens(r.raw_tokens, r.chars, spec.calibration),
                settings.output_tokens_per_issue,
            )
            for r in rows
        ]
        plan = pack(items, limits)
        bound = lower_bound(items, limits)
        if dry_run:
            return PlannedRun(None, (), plan, limits, bound, len(items))
        run_id = run_store.create_run(
            session,
            run_store.RunSpec(
                set_id=set_id,
                kind=kind,
                mode=settings.resolved_mode(),
                model=spec.name,
                max_tokens=limits.output_limit,
                safe_utilization=settings.safe_utilization,
                context_window=spec.context_window,
                calibration=spec.calibration,
                spend_cap_usd=spend_cap_usd,
                nightly_date=nightly_date,
            ),
        )
        if run_id is None:
            return PlannedRun(None, (), plan, limits, bound, len(items))
        batch_ids = run_store.write_plan(
            session,
            run_id,
            plan.batches,
            plan.oversize,
            (),
            {i.issue_id: i.input_tokens for i in items},
            {i.issue_id: i.priority for i in items},
            limits.output_limit,
        )
        if not batch_ids:
            run_store.finish_if_done(session, run_id)
    return PlannedRun(run_id, tuple(batch_ids), plan, limits, bound, len(items))


def enqueue(app: Celery, sessions: sessionmaker[Session], batch_ids: Sequence[int]) -> None:
    """Send one task per batch, by name, in queue order (highest priority first)."""
    for batch_id in batch_ids:
        app.send_task(PROCESS_BATCH, args=[batch_id])
    with transaction(sessions) as session:
        run_store.mark_enqueued(session, batch_ids)
