"""Celery task bodies of the scheduler; thin: they hand ids and dates to the nightly and on-demand runs."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from celery import Celery, Task

from budgetq.adapters.queue.celery_app import PLAN_NIGHTLY, REPROCESS
from budgetq.adapters.store.engine import ProcessSessions
from budgetq.domain.selector import Selector
from budgetq.services.nightly import parse_night, plan_nightly
from budgetq.services.ondemand import reprocess
from budgetq.settings import Settings


def register(app: Celery, settings: Settings) -> None:
    """Register PLAN_NIGHTLY and REPROCESS on ``app`` (the scheduler's)."""
    sessions = ProcessSessions(settings, process="the scheduler")

    @app.task(name=PLAN_NIGHTLY, ignore_result=True)  # type: ignore[untyped-decorator]
    def plan_nightly_task(night: str = "today") -> list[dict[str, object]]:
        """Plan every nightly set for ``night`` ("today" in UTC, or an ISO date); idempotent per night."""
        day = parse_night(night, dt.datetime.now(dt.UTC).date())
        return [o.__dict__ for o in plan_nightly(sessions.get(), settings, app, day)]

    @app.task(name=REPROCESS, ignore_result=True, bind=True)  # type: ignore[untyped-decorator]
    def reprocess_task(
        task: Task,
        set_id: int,
        selector: dict[str, object] | None = None,
        spend_cap_usd: str | None = None,
        api_mode: str | None = None,
        request_key: str | None = None,
        fresh: bool = False,
    ) -> int | None:
        """A new run of the set's selected issues (a ``Selector.to_json`` object; all when None), in
        ``api_mode`` (sync or batch-api) when given; once per ``request_key`` (default: the message id,
        so a redelivered message returns the run it already started); ``fresh``: reuse no answer."""
        key = request_key or f"reprocess:{task.request.id}"
        chosen = Selector.from_json(selector or {})
        cap = Decimal(spend_cap_usd) if spend_cap_usd is not None else settings.run_spend_cap_usd
        planned = reprocess(
            sessions.get(),
            settings,
            app,
            set_id,
            chosen,
            spend_cap_usd=cap,
            api_mode=api_mode,
            request_key=key,
            fresh=fresh,
        )
        return planned.run_id
