"""What provenance says about a model's tokenizer: billed input tokens per cl100k token, per call.

Each ``llm_calls`` row keeps the estimate the worker made at its run's calibration and the input the
API billed, so the raw cl100k count behind the estimate, and with it the ratio that
``tokens.learn_calibration`` expects, can be recovered without storing anything more
(``prompt.observed_ratio``).

Only billed calls count (live or record mode, ``would_have_cost`` false): the stand-in bills whatever
ratio it is configured with and a replay repeats an old one.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from budgetq.adapters.store.models import LLMCall, ModelCalibration, Run
from budgetq.domain.prompt import observed_ratio
from budgetq.domain.statuses import CallOutcome

# Enough calls to see a high quantile, few enough to follow a tokenizer or prompt change quickly.
RECENT_CALLS = 500
# How old a model's stored ratios may be when a worker guards a batch with them: one recount a minute
# per model, instead of a scan of llm_calls joined to runs per batch.
FRESH_FOR = dt.timedelta(seconds=60)


def observed_ratios(
    session: Session, model: str, limit: int = RECENT_CALLS, max_age: dt.timedelta | None = None
) -> list[float]:
    """Billed input ÷ raw cl100k count of the model's most recent answered, billed (live or record)
    calls, newest first; stand-in and replayed calls are left out. ``max_age``: the model's stored
    ratios may be that old (else they are recounted now and stored)."""
    if max_age is not None:
        stored = session.execute(
            select(ModelCalibration.ratios).where(
                ModelCalibration.model == model, ModelCalibration.computed_at > func.now() - max_age
            )
        ).one_or_none()
        if stored is not None and limit <= RECENT_CALLS:
            return list(stored.ratios)[:limit]
    ratios = _recount(session, model, max(limit, RECENT_CALLS))
    # Another worker may store its recount at the same moment: either one is as good.
    session.execute(
        pg_insert(ModelCalibration)
        .values(model=model, ratios=ratios, computed_at=func.now())
        .on_conflict_do_update(index_elements=["model"], set_={"ratios": ratios, "computed_at": func.now()})
    )
    return ratios[:limit]


def _recount(session: Session, model: str, limit: int) -> list[float]:
    # The partial index llm_calls_billed_model_idx holds exactly these calls, newest last.
    rows = session.execute(
        select(LLMCall.billed_input_tokens, LLMCall.estimated_input_tokens, Run.calibration)
        .join(Run, Run.id == LLMCall.run_id)
        .where(
            LLMCall.model == model,
            LLMCall.status == CallOutcome.OK.value,
            LLMCall.billed_input_tokens.is_not(None),
            # Only calls somebody billed: a stand-in's or a replay's ratio says nothing of the model's
            # tokenizer, and a database that ran demos must not hand live runs that ratio.
            LLMCall.would_have_cost.is_(False),
        )
        .order_by(LLMCall.id.desc())
        .limit(limit)
    ).all()
    ratios = (
        observed_ratio(billed, estimated, calibration)
        for billed, estimated, calibration in rows
        if billed is not None
    )
    return [r for r in ratios if r is not None]
