"""Answer reuse in planning: before packing, issues already answered are taken from earlier paid answers
and duplicates inside the run are sent once (``budgetq.domain.reuse`` says which issues are the same).

An issue whose key matches a paid answer of the same model and prompt version, bought within
``BUDGETQ_REUSE_MAX_AGE`` with at least ``BUDGETQ_REUSE_MIN_CONFIDENCE`` (and billed like this run: a
live run never takes a stand-in's answer), ends ``reused`` at no cost. Of the others, issues with equal
keys are packed once: the carrier (highest priority, then earliest) is sent, the copies take its answer
when it comes, or its fate (oversize, deferred, failed, cancelled). Keys are computed in one streamed
pass and looked up in chunks: O(issues) per run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy.orm import Session

from budgetq.adapters.store import reuse as reuse_store
from budgetq.domain.model_spec import ModelSpec
from budgetq.domain.packing import PackItem, PackPlan
from budgetq.domain.reuse import KeyedIssue, ReuseMode, carriers, reuse_key
from budgetq.domain.selector import Selector
from budgetq.domain.statuses import IssueStatus
from budgetq.settings import Settings


@dataclass(frozen=True)
class ReusePlan:
    """What planning takes from earlier answers and from duplicates, and what it still has to pack."""

    to_pack: tuple[PackItem, ...]
    keys: dict[int, str] = field(default_factory=dict)
    reused: tuple[reuse_store.ReusedIssue, ...] = ()
    copies: dict[int, int] = field(default_factory=dict)  # copy id -> carrier id
    all_items: dict[int, PackItem] = field(default_factory=dict)

    @property
    def saved_usd(self) -> Decimal:
        """What the reused issues cost when their answers were bought."""
        return sum((r.answer.cost_usd for r in self.reused), Decimal(0))

    @property
    def left_out(self) -> int:
        """Issues not packed: reused ones and in-run copies."""
        return len(self.reused) + len(self.copies)


def plan_reuse(
    session: Session,
    settings: Settings,
    spec: ModelSpec,
    set_id: int,
    selector: Selector | None,
    items: Sequence[PackItem],
    *,
    fresh: bool = False,
    now: dt.datetime | None = None,
) -> ReusePlan:
    """Key every issue of the plan; unless ``fresh`` (or the set's reuse_answers is off) take the matching
    earlier answers and set the in-run copies aside. Keys are kept either way: an answer bought now serves
    later runs."""
    by_id = {i.issue_id: i for i in items}
    if settings.reuse_mode == "off":
        return ReusePlan(tuple(items), all_items=by_id)
    mode = ReuseMode(settings.reuse_mode)
    keys: dict[int, str] = {}
    for chunk in reuse_store.key_material(session, set_id, selector):
        for issue_id, text, external_id in chunk:
            if issue_id in by_id:
                keys[issue_id] = reuse_key(text, mode, model_family=spec.name, external_id=external_id)
    if fresh or not reuse_store.set_reuses_answers(session, set_id):
        return ReusePlan(tuple(items), keys, all_items=by_id)
    since = (now or dt.datetime.now(dt.UTC)) - settings.reuse_max_age
    answers = reuse_store.paid_answers(
        session,
        sorted(set(keys.values())),
        since=since,
        min_confidence=settings.reuse_min_confidence,
        unbilled=settings.resolved_mode() in ("standin", "replay"),
    )
    reused = tuple(
        reuse_store.ReusedIssue(
            i.issue_id, i.priority, i.input_tokens, keys[i.issue_id], answers[keys[i.issue_id]]
        )
        for i in items
        if keys.get(i.issue_id) in answers
    )
    taken = {r.issue_id for r in reused}
    open_items = [i for i in items if i.issue_id not in taken]
    copies = carriers(
        [KeyedIssue(i.issue_id, i.priority, keys[i.issue_id]) for i in open_items if i.issue_id in keys]
    )
    to_pack = tuple(i for i in open_items if i.issue_id not in copies)
    return ReusePlan(to_pack, keys, reused, copies, by_id)


def write_reuse(
    session: Session,
    run_id: int,
    reuse: ReusePlan,
    plan: PackPlan,
    deferred: dict[int, str],
) -> None:
    """Write the run's reused issues (with their result rows) and its copies, each copy with its
    carrier's planned status: pending (it waits for the answer), oversize or deferred."""
    reuse_store.write_reused(session, run_id, reuse.reused)
    fate: dict[int, tuple[str, str | None]] = {
        o.issue_id: (IssueStatus.OVERSIZE.value, o.reason) for o in plan.oversize
    }
    fate.update({i: (IssueStatus.DEFERRED.value, reason) for i, reason in deferred.items()})
    copies = []
    for copy_id, carrier in reuse.copies.items():
        status, reason = fate.get(carrier, (IssueStatus.PENDING.value, None))
        item = reuse.all_items[copy_id]
        copies.append(
            reuse_store.Copy(
                copy_id,
                item.priority,
                item.input_tokens,
                reuse.keys[copy_id],
                carrier,
                status,
                None if reason is None else f"same question as issue {carrier}: {reason}",
            )
        )
    reuse_store.write_copies(session, run_id, copies)
