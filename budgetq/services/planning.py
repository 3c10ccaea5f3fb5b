"""Plan a run: count tokens once per issue → pack by priority under the guard → persist → enqueue."""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store import api_modes, completion
from budgetq.adapters.store import issues as issue_store
from budgetq.adapters.store import runs as run_store
from budgetq.adapters.store.calibration import observed_ratios
from budgetq.adapters.store.engine import transaction
from budgetq.domain.catalog import get_model, prices_on
from budgetq.domain.deferral import CostedIssue, defer_to_cap
from budgetq.domain.forecast import Forecast, cache_write_premium, forecast, issue_cost
from budgetq.domain.message_batches import resolve_api_mode
from budgetq.domain.model_spec import ModelSpec, Prices
from budgetq.domain.packing import (
    PackItem,
    PackLimits,
    PackPlan,
    derive_limits,
    lower_bound,
    oversize_reason,
    pack,
)
from budgetq.domain.prompt import fixed_input_tokens, issue_input_tokens
from budgetq.domain.selector import Selector, SelectorKind
from budgetq.domain.statuses import ApiMode, RunKind
from budgetq.domain.tokens import CALIBRATION_VERSION, ENCODING_NAME, learn_calibration
from budgetq.errors import ConfigurationError
from budgetq.services.counting import CHUNK_TEXTS, count_chunks, processes_for
from budgetq.services.reusing import ReusePlan, plan_reuse, write_reuse
from budgetq.settings import Settings


@dataclass(frozen=True)
class PlannedRun:
    """A planned (and possibly written) run: its batches in queue order and what was left out."""

    run_id: int | None
    batch_ids: tuple[int, ...]
    plan: PackPlan
    limits: PackLimits
    lower_bound: int
    issues: int
    # Left out by the spend cap, with reasons; the expected cost and utilization of the batches.
    deferred: tuple[run_store.Deferred, ...] = ()
    forecast: Forecast | None = None
    # False when the run already existed (a nightly run planned earlier for the same night).
    created: bool = True
    # How its batches reach the model (sync or batch-api); its forecast is priced accordingly.
    api_mode: str = ApiMode.SYNC.value
    # Issues taken from earlier answers and duplicates sent once (services.reusing).
    reuse: ReusePlan | None = None


def count_tokens(sessions: sessionmaker[Session], set_id: int, processes: int | None = None) -> int:
    """Count the tokens of the set's issues that have no current count, in bulk on all cores, and store
    them (COPY into issue_tokens) with the encoding and calibration version; return how many were counted."""
    with transaction(sessions) as session:
        todo = issue_store.count_stale(session, set_id, ENCODING_NAME, CALIBRATION_VERSION)
        if todo == 0:
            return 0
        ids: deque[list[int]] = deque()

        def texts() -> Iterator[list[str]]:
            chunks = issue_store.stale_texts(session, set_id, ENCODING_NAME, CALIBRATION_VERSION, CHUNK_TEXTS)
            for chunk in chunks:
                ids.append([issue_id for issue_id, _ in chunk])
                yield [text for _, text in chunk]

        # Texts stream from a server-side cursor while earlier chunks are counted and written back.
        with issue_store.count_writer(session, set_id, ENCODING_NAME, CALIBRATION_VERSION) as write:
            for counts in count_chunks(texts(), processes_for(todo, processes)):
                write(zip(ids.popleft(), counts, strict=True))
    return todo


def context_window_for(spec: ModelSpec, settings: Settings) -> int:
    """The window a run plans for: the model's, or the smaller one the settings ask for."""
    if settings.context_window is None:
        return spec.context_window
    if settings.context_window > spec.context_window:
        raise ConfigurationError(
            f"BUDGETQ_CONTEXT_WINDOW={settings.context_window:,} is larger than {spec.name}'s window of "
            f"{spec.context_window:,} tokens; unset it or lower it"
        )
    return settings.context_window


def planning_calibration(session: Session, spec: ModelSpec, settings: Settings) -> float:
    """The calibration a run is planned with: the setting if given, else the one learned from the
    model's provenance once enough calls back it, else the catalog's conservative default."""
    if settings.calibration is not None:
        return settings.calibration
    return learn_calibration(
        observed_ratios(session, spec.name),
        default=spec.calibration,
        quantile=settings.calibration_quantile,
        min_samples=settings.calibration_min_samples,
    )


def limits_for(spec: ModelSpec, settings: Settings, calibration: float | None = None) -> PackLimits:
    """The per-call packing limits for a model under the settings' guard (at the catalog's
    calibration unless ``calibration`` is given)."""
    return derive_limits(
        context_window=context_window_for(spec, settings),
        safe_utilization=settings.safe_utilization,
        model_max_output=spec.max_output_tokens,
        max_tokens=settings.max_tokens_per_call,
        fixed_input_tokens=fixed_input_tokens(spec.calibration if calibration is None else calibration),
        max_items=settings.max_issues_per_call,
    )


def plan_run(
    sessions: sessionmaker[Session],
    settings: Settings,
    set_id: int,
    *,
    kind: str,
    issue_ids: Sequence[int] | None = None,
    selector: Selector | None = None,
    nightly_date: dt.date | None = None,
    spend_cap_usd: Decimal | None = None,
    dry_run: bool = False,
    api_mode: str | None = None,
    request_key: str | None = None,
    fresh: bool = False,
) -> PlannedRun:
    """Pack the set (the ``selector``'s or ``issue_ids``' issues of it) and, unless ``dry_run``, write the
    run and its batches. With ``spend_cap_usd`` the lowest priorities that do not fit are deferred. A
    nightly run already planned for ``nightly_date``, or a run already started under ``request_key``, is
    returned as it is (``created`` False). ``api_mode``
    (sync or batch-api) defaults to the issue set's, else to ``BUDGETQ_NIGHTLY_API_MODE`` for nightly runs
    and sync for the others. Unless ``fresh`` (or the set turns it off), issues already answered are
    reused and duplicates sent once (services.reusing)."""
    if issue_ids is not None:
        selector = Selector(SelectorKind.ISSUES, tuple(issue_ids))
    spec = get_model(settings.model)
    with transaction(sessions) as session:
        calibration = planning_calibration(session, spec, settings)
        existing = _existing_run(session, set_id, nightly_date, request_key) if not dry_run else None
    limits = limits_for(spec, settings, calibration)
    if existing is not None:
        return PlannedRun(existing, (), PackPlan((), ()), limits, 0, 0, created=False)
    count_tokens(sessions, set_id)
    fixed = fixed_input_tokens(calibration)
    window = context_window_for(spec, settings)
    prices = prices_on(spec, dt.datetime.now(dt.UTC).date())
    with transaction(sessions) as session:
        mode = resolve_api_mode(
            api_mode,
            api_modes.set_api_mode(session, set_id),
            nightly=kind == RunKind.NIGHTLY.value,
            nightly_default=settings.nightly_api_mode,
        )
        batch = mode is ApiMode.BATCH_API  # priced at the Message Batches rate
        rows = issue_store.planning_rows(session, set_id, selector)
        items = [
            PackItem(
                r.id,
                r.priority,
                issue_input_tokens(r.raw_tokens, r.chars, calibration),
                settings.output_tokens_per_issue,
            )
            for r in rows
        ]
        reuse = plan_reuse(session, settings, spec, set_id, selector, items, fresh=fresh)
        items = list(reuse.to_pack)
        deferred: tuple[run_store.Deferred, ...] = ()
        if spend_cap_usd is not None:
            items, deferred = _fit_to_cap(items, limits, fixed, window, prices, spend_cap_usd, batch=batch)
        plan = pack(items, limits)
        bound = lower_bound(items, limits)
        expected = forecast(
            plan.batches,
            fixed_input_tokens=fixed,
            max_tokens=limits.output_limit,
            context_window=window,
            prices=prices,
            batch=batch,
        )
        total = len(items) + len(deferred) + reuse.left_out
        planned = PlannedRun(
            None, (), plan, limits, bound, total, deferred, expected, api_mode=mode.value, reuse=reuse
        )
        if dry_run:
            return planned
        run_id = run_store.create_run(
            session,
            run_store.RunSpec(
                set_id=set_id,
                kind=kind,
                mode=settings.resolved_mode(),
                model=spec.name,
                max_tokens=limits.output_limit,
                safe_utilization=settings.safe_utilization,
                context_window=window,
                calibration=calibration,
                spend_cap_usd=spend_cap_usd,
                nightly_date=nightly_date,
                selector=selector.to_json() if selector is not None else None,
                api_mode=mode.value,
                request_key=request_key,
            ),
        )
        if run_id is None:
            # Another planner wrote this night's (or this request's) run between our check and our
            # insert: that one stands.
            found = _existing_run(session, set_id, nightly_date, request_key)
            return PlannedRun(found, (), PackPlan((), ()), limits, 0, 0, created=False)
        batch_ids = run_store.write_plan(
            session,
            run_id,
            plan.batches,
            plan.oversize,
            deferred,
            {i.issue_id: i.input_tokens for i in items},
            {i.issue_id: i.priority for i in items},
            limits.output_limit,
            api_mode=mode.value,
            reuse_keys=reuse.keys,
        )
        write_reuse(session, run_id, reuse, plan, {d.issue_id: d.reason for d in deferred})
        if not batch_ids:
            completion.finish_if_done(session, run_id)
    return replace(planned, run_id=run_id, batch_ids=tuple(batch_ids))


def _existing_run(
    session: Session, set_id: int, night: dt.date | None, request_key: str | None
) -> int | None:
    if request_key is not None:
        found = run_store.requested_run_id(session, request_key)
        if found is not None:
            return found
    return run_store.nightly_run_id(session, set_id, night) if night is not None else None


def _fit_to_cap(
    items: list[PackItem],
    limits: PackLimits,
    fixed: int,
    window: int,
    prices: Prices,
    cap: Decimal,
    *,
    batch: bool,
) -> tuple[list[PackItem], tuple[run_store.Deferred, ...]]:
    """The items a run keeps under its spend cap, and the deferred ones (oversize items cost nothing:
    they are never sent, and stay in to be reported as oversize); ``batch``: at the batch rate."""
    packable = [i for i in items if oversize_reason(i, limits) is None]
    costed = [
        CostedIssue(i.issue_id, i.priority, issue_cost(i, limits, fixed, prices, batch=batch))
        for i in packable
    ]
    overhead = cache_write_premium(fixed, prices, batch=batch)
    by_id = {i.issue_id: i for i in items}
    for _ in range(4):
        deferral = defer_to_cap(costed, cap, overhead)
        left_out = {d.issue_id for d in deferral.deferred}
        kept = [i for i in items if i.issue_id not in left_out]
        if not left_out:
            return kept, ()
        # The per-issue shares of the fixed prompt only approximate the calls packing makes: when the
        # packed plan still costs more than the cap, the excess is set aside and the cut made again.
        batches = pack(kept, limits).batches
        cost = forecast(
            batches,
            fixed_input_tokens=fixed,
            max_tokens=limits.output_limit,
            context_window=window,
            prices=prices,
            batch=batch,
        ).cost_usd
        if cost <= cap or not deferral.kept:
            break
        overhead += cost - cap
    deferred = tuple(
        run_store.Deferred(d.issue_id, d.priority, by_id[d.issue_id].input_tokens, d.reason)
        for d in deferral.deferred
    )
    return kept, deferred


from budgetq.services.sending import enqueue as enqueue  # noqa: E402 - kept importable from here
