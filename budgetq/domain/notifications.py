"""Notifications as facts: the events budgetq tells people about, the spend thresholds they cross, the
text a person reads, and when a failed delivery is tried again. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

# Percentages of a cap at which an alert goes out, each once per run or per day.
THRESHOLDS: tuple[int, ...] = (50, 80, 95, 100)
TOP = 5  # categories and datasets named in a run's summary


class EventKind(StrEnum):
    """What a notification says happened."""

    RUN_ENDED = "run_ended"  # succeeded or cancelled
    RUN_FAILED = "run_failed"  # ended with failed issues
    RUN_STOPPED = "run_stopped"  # stopped before its end (spend cap, spend limit, left behind)
    SPEND_THRESHOLD = "spend_threshold"
    NIGHTLY_MISSED = "nightly_missed"


class DeliveryStatus(StrEnum):
    """Where one notification stands for one target; sent, failed and expired are terminal."""

    PENDING = "pending"  # due at next_attempt_at
    SENDING = "sending"  # claimed under a lease by one delivery task
    SENT = "sent"
    FAILED = "failed"  # refused for good (4xx) or out of attempts
    EXPIRED = "expired"  # older than the age limit when first seen: not worth telling any more


class TargetKind(StrEnum):
    """The shape of message a target takes."""

    SLACK = "slack"  # an incoming webhook: {"text": …}
    JSON = "json"  # any webhook: the event as a JSON object


def event_kind_of_end(status: str) -> EventKind:
    """The event of a run that reached ``status`` (a RunStatus value)."""
    if status == "failed":
        return EventKind.RUN_FAILED
    if status == "stopped":
        return EventKind.RUN_STOPPED
    return EventKind.RUN_ENDED


def crossed(spent: Decimal, cap: Decimal | None) -> tuple[int, ...]:
    """The thresholds of ``cap`` that ``spent`` has reached (none without a positive cap)."""
    if cap is None or cap <= 0:
        return ()
    return tuple(t for t in THRESHOLDS if spent * 100 >= cap * t)


def dedupe_key(kind: EventKind, *parts: object) -> str:
    """The key that makes an event happen once: its kind and what it is about."""
    return ":".join([kind.value, *(str(p) for p in parts)])


@dataclass(frozen=True)
class RunSummary:
    """What a run-end notification tells: counts by issue status, cost, where the answers fell."""

    run_id: int
    set_name: str
    status: str
    reason: str | None
    counts: Mapping[str, int]
    cost_usd: Decimal
    top_categories: Sequence[tuple[str, int]]
    top_datasets: Sequence[tuple[str, int]]

    @property
    def results_command(self) -> str:
        """The command that shows the run's answers."""
        return f"budgetq results --run {self.run_id}"

    def to_json(self) -> dict[str, object]:
        """The summary as the JSON payload stored in the outbox."""
        return {
            "run_id": self.run_id,
            "set": self.set_name,
            "status": self.status,
            "reason": self.reason,
            "counts": dict(self.counts),
            "cost_usd": str(self.cost_usd),
            "top_categories": [list(c) for c in self.top_categories],
            "top_datasets": [list(d) for d in self.top_datasets],
            "results_command": self.results_command,
        }


def _pairs(value: object) -> str:
    items = value if isinstance(value, list) else []
    return ", ".join(f"{name} ({n})" for name, n in items) or "none"


def text_of(kind: str, payload: Mapping[str, object]) -> str:
    """The message a person reads, from the event's kind and stored payload."""
    if kind in (EventKind.RUN_ENDED, EventKind.RUN_FAILED, EventKind.RUN_STOPPED):
        counts = payload.get("counts")
        tally = (
            ", ".join(f"{n} {s}" for s, n in sorted(dict(counts).items())) if isinstance(counts, dict) else ""
        )
        lines = [f"budgetq: run {payload['run_id']} of set {payload['set']} {payload['status']}"]
        if payload.get("reason"):
            lines[0] += f": {payload['reason']}"
        lines.append(f"issues: {tally or 'none'}; cost ${payload['cost_usd']}")
        lines.append(f"top categories: {_pairs(payload.get('top_categories'))}")
        lines.append(f"top datasets: {_pairs(payload.get('top_datasets'))}")
        lines.append(f"results: {payload['results_command']}")
        return "\n".join(lines)
    if kind == EventKind.SPEND_THRESHOLD:
        line = (
            f"budgetq: spend of {payload['scope']} reached {payload['threshold']}% of its cap: "
            f"${payload['spent_usd']} of ${payload['cap_usd']}"
        )
        return f"{line} ({payload['reason']})" if payload.get("reason") else line
    if kind == EventKind.NIGHTLY_MISSED:
        return (
            f"budgetq: nightly set {payload['set']} has no run for {payload['night']}: the schedule fired at "
            f"{payload['due_at']} and no run started within {payload['window_s']} s; "
            f"check the scheduler and its beat, or start it with: budgetq run {payload['set']}"
        )
    return f"budgetq: {kind}: {dict(payload)}"


def body_for(
    target: TargetKind, notification_id: int, kind: str, payload: Mapping[str, object]
) -> dict[str, object]:
    """The JSON body sent to a target: Slack's {"text"} or the whole event."""
    text = text_of(kind, payload)
    if target is TargetKind.SLACK:
        return {"text": text}
    return {"id": notification_id, "event": kind, "text": text, **payload}


def retry_delay(attempts: int, base_s: float, max_s: float, jitter: float) -> float:
    """Seconds before the next try after ``attempts`` failed ones: exponential, full jitter
    (``jitter`` in [0, 1) from the caller's random source), at most ``max_s``."""
    ceiling = min(max_s, base_s * 2.0 ** max(0, attempts - 1))
    return max(base_s / 2, ceiling * jitter)


def retryable(http_status: int | None) -> bool:
    """Whether a failed delivery is worth trying again: no answer (timeout, connection), 408, 429, 5xx."""
    return http_status is None or http_status in (408, 425, 429) or http_status >= 500
