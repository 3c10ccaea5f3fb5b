"""The stand-in's fault plan, its rate limiter and its deterministic answers (no HTTP here).

Kept apart from ``budgetq.standin`` (the HTTP adapter) so each stays small:

- ``FaultPlan``: what to break and how often (JSON-able), drawn per request with a seeded RNG.
- ``RateLimits`` and ``SlidingWindowLimiter``: requests, input and output tokens per minute.
- ``issues_in`` / ``choose_tool`` / ``diagnose`` / ``tool_answer``: the answers themselves.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

JSONDict = dict[str, Any]
TransportFault = Literal["drop", "overloaded", "rate_limited", "server_error"]
AnswerFault = Literal["refusal", "malformed", "truncated", "context_exceeded"]

_T = TypeVar("_T", bound=str)
_TRANSPORT: tuple[TransportFault, ...] = ("drop", "overloaded", "rate_limited", "server_error")
_ANSWER: tuple[AnswerFault, ...] = ("refusal", "malformed", "truncated", "context_exceeded")


def _coerce(value: object, like: object) -> object:
    """Convert a JSON value to the type of a field's default (``like``)."""
    if isinstance(like, bool):
        if not isinstance(value, bool):
            raise ValueError(f"expected a boolean, got {value!r}")
        return value
    if isinstance(like, tuple):
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise ValueError(f"expected a pair, got {value!r}")
        return (int(value[0]), int(value[1]))
    if isinstance(like, int) and not isinstance(value, bool) and isinstance(value, int | float):
        return int(value)
    if isinstance(like, float) and not isinstance(value, bool) and isinstance(value, int | float):
        return float(value)
    if like is None and (value is None or isinstance(value, int | float)):
        return value if value is None else int(value)
    raise ValueError(f"unexpected value {value!r}")


def _from_mapping(cls: Any, data: Mapping[str, object]) -> Any:
    defaults = cls()
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs = {name: _coerce(value, getattr(defaults, name)) for name, value in data.items()}
    return cls(**kwargs)


@dataclass(frozen=True)
class FaultDraw:
    """The faults chosen for one request (every request draws the same number of values)."""

    transport: TransportFault | None = None
    slow: bool = False
    answer: AnswerFault | None = None
    duplicate_ids: bool = False
    invented_ids: bool = False
    missing_ids: bool = False
    stream_overloaded: bool = False
    retry_after: int = 1
    variant: int = 0

    def names(self) -> list[str]:
        flags = ("slow", "duplicate_ids", "invented_ids", "missing_ids", "stream_overloaded")
        out = [n for n in (self.transport, self.answer) if n is not None]
        return out + [n for n in flags if getattr(self, n)]


@dataclass
class FaultPlan:
    """What the stand-in breaks. Transport faults (drop, 529, 429, 500) exclude each other, as do
    answer faults (refusal, malformed, truncated, context_exceeded); their sums must be <= 1."""

    p_overloaded: float = 0.0
    p_rate_limited: float = 0.0
    p_server_error: float = 0.0
    p_drop: float = 0.0
    p_slow: float = 0.0
    slow_seconds: float = 2.0
    p_malformed: float = 0.0
    p_truncated: float = 0.0
    p_refusal: float = 0.0
    p_context_exceeded: float = 0.0
    p_duplicate_ids: float = 0.0
    p_invented_ids: float = 0.0
    p_missing_ids: float = 0.0
    p_stream_overloaded: float = 0.0
    retry_after_range: tuple[int, int] = (1, 3)
    spend_limit: bool = False
    fail_first_n: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{f.name} must be within 0..1, got {value}")
        for group in (_TRANSPORT, _ANSWER):
            if sum(self._p(name) for name in group) > 1.0 + 1e-9:
                raise ValueError(f"probabilities of {group} add up to more than 1")
        low, high = self.retry_after_range
        if not 0 <= low <= high:
            raise ValueError(f"retry_after_range must be 0 <= low <= high, got {self.retry_after_range}")
        if self.slow_seconds < 0 or self.fail_first_n < 0:
            raise ValueError("slow_seconds and fail_first_n must not be negative")

    def _p(self, name: str) -> float:
        value: float = getattr(self, "p_" + name)
        return value

    def to_dict(self) -> JSONDict:
        data = asdict(self)
        data["retry_after_range"] = list(self.retry_after_range)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> FaultPlan:
        plan: FaultPlan = _from_mapping(cls, data)
        return plan

    def draw(self, rng: random.Random) -> FaultDraw:
        """Choose this request's faults; always consumes the same number of random values."""
        u_transport, u_slow, u_answer, u_dup, u_inv, u_miss, u_stream = (rng.random() for _ in range(7))
        retry_after = rng.randint(*self.retry_after_range)
        variant = rng.randrange(3)
        return FaultDraw(
            transport=self._pick(_TRANSPORT, u_transport),
            slow=u_slow < self.p_slow,
            answer=self._pick(_ANSWER, u_answer),
            duplicate_ids=u_dup < self.p_duplicate_ids,
            invented_ids=u_inv < self.p_invented_ids,
            missing_ids=u_miss < self.p_missing_ids,
            stream_overloaded=u_stream < self.p_stream_overloaded,
            retry_after=retry_after,
            variant=variant,
        )

    def _pick(self, names: tuple[_T, ...], u: float) -> _T | None:
        edge = 0.0
        for name in names:
            edge += self._p(name)
            if u < edge:
                return name
        return None


# --- rate limits ----------------------------------------------------------------------------


@dataclass
class RateLimits:
    """Per-minute limits like the API's (None: unlimited), over a sliding window of ``window_s``."""

    rpm_limit: int | None = None
    input_tpm_limit: int | None = None
    output_tpm_limit: int | None = None
    window_s: float = 60.0

    @property
    def enabled(self) -> bool:
        return any(v is not None for v in (self.rpm_limit, self.input_tpm_limit, self.output_tpm_limit))

    def to_dict(self) -> JSONDict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RateLimits:
        limits: RateLimits = _from_mapping(cls, data)
        return limits


@dataclass
class _Usage:
    at: float
    requests: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Admission:
    admitted: bool
    ticket: _Usage | None = None
    retry_after: int = 0
    exceeded: str | None = None  # "requests", "input_tokens" or "output_tokens"


_DIMENSIONS = (
    ("requests", "rpm_limit"),
    ("input_tokens", "input_tpm_limit"),
    ("output_tokens", "output_tpm_limit"),
)


@dataclass
class SlidingWindowLimiter:
    """Admits a request when, over the last ``window_s`` seconds, requests, input tokens (uncached
    input plus cache writes) and output tokens (reserved at ``max_tokens``, settled to the actual
    count) stay within their limits."""

    limits: RateLimits
    clock: Callable[[], float] = time.monotonic
    _events: list[_Usage] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _prune(self, now: float) -> None:
        self._events = [e for e in self._events if e.at > now - self.limits.window_s]

    def try_admit(self, input_tokens: int, output_reserve: int) -> Admission:
        with self._lock:
            now = self.clock()
            self._prune(now)
            want = _Usage(now, 1, input_tokens, output_reserve)
            waits: list[tuple[float, str]] = []
            for dim, limit_name in _DIMENSIONS:
                limit: int | None = getattr(self.limits, limit_name)
                wait = None if limit is None else self._wait(dim, getattr(want, dim), limit, now)
                if wait is not None:
                    waits.append((wait, dim))
            if waits:
                wait, dim = max(waits)
                return Admission(False, retry_after=max(1, math.ceil(wait)), exceeded=dim)
            self._events.append(want)
            return Admission(True, ticket=want)

    def _wait(self, dim: str, cost: int, limit: int, now: float) -> float | None:
        """Seconds until ``cost`` fits under ``limit``, or None if it fits now."""
        used = sum(getattr(e, dim) for e in self._events)
        if used + cost <= limit:
            return None
        if cost > limit:
            return self.limits.window_s
        freed = 0
        for event in self._events:  # oldest first
            freed += getattr(event, dim)
            if used - freed + cost <= limit:
                return event.at + self.limits.window_s - now
        return self.limits.window_s

    def settle(self, ticket: _Usage | None, output_tokens: int) -> None:
        with self._lock:
            if ticket is not None:
                ticket.output_tokens = output_tokens

    def reset(self) -> None:
        with self._lock:
            self._events.clear()

    def headers(self) -> dict[str, str]:
        """The ``anthropic-ratelimit-*`` headers (only for the limits that are set)."""
        if not self.limits.enabled:
            return {}
        with self._lock:
            now = self.clock()
            self._prune(now)
            newest = max((e.at for e in self._events), default=now - self.limits.window_s)
            reset_in = max(0.0, newest + self.limits.window_s - now)
            reset = datetime.fromtimestamp(time.time() + reset_in, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            out: dict[str, str] = {}
            for dim, limit_name in _DIMENSIONS:
                limit = getattr(self.limits, limit_name)
                if limit is None:
                    continue
                used = sum(getattr(e, dim) for e in self._events)
                name = "anthropic-ratelimit-" + dim.replace("_", "-")
                out |= {f"{name}-limit": str(limit), f"{name}-remaining": str(max(0, limit - used))}
                out[f"{name}-reset"] = reset
            return out


# --- deterministic answers ------------------------------------------------------------------

DEFAULT_CATEGORIES = (  # the enum of budgetq.answers; a request's own tool schema overrides it
    "null_values",
    "duplicates",
    "schema_drift",
    "referential_integrity",
    "format_violation",
    "out_of_range",
    "freshness",
    "volume_anomaly",
    "inconsistency",
    "other",
)

# Words in an issue's text that point at a category (a category matches when it contains the key).
_HINTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("null", ("null", "missing value", "empty", "blank")),
    ("dup", ("duplicate", "twice", "repeated", "double")),
    ("schema", ("schema", "renamed", "new column", "column type", "dropped column")),
    ("refer", ("orphan", "foreign key", "no matching", "unknown customer")),
    ("fresh", ("late", "stale", "delay", "not refreshed", "freshness")),
    ("format", ("format", "encoding", "parse", "malformed", "iso")),
    ("range", ("negative", "out of range", "outlier", "impossible", "exceeds")),
    ("volume", ("row count", "volume", "spike", "fewer rows", "more rows")),
    ("inconsist", ("mismatch", "disagree", "inconsistent", "does not match", "differs")),
)

_FINDINGS: tuple[tuple[str, str, str], ...] = (
    (
        "null",
        "{obj} arrives with NULLs in a required column after the {stage} step",
        "add a NOT NULL check in {stage} and backfill {obj} from the source extract",
    ),
    (
        "dup",
        "{obj} holds repeated business keys because the {stage} load is not idempotent",
        "deduplicate {obj} on its natural key and make the {stage} load a MERGE",
    ),
    (
        "schema",
        "an upstream change renamed or retyped a column that {obj} depends on",
        "pin the upstream contract and add a schema test on {obj} before {stage}",
    ),
    (
        "refer",
        "{obj} references parent rows that the {stage} step has not loaded yet",
        "load dimensions before facts and quarantine orphaned rows of {obj}",
    ),
    (
        "fresh",
        "{obj} is stale: the {stage} job finished but the source partition was late",
        "add a freshness SLA on {obj} and make {stage} wait for the partition sensor",
    ),
    (
        "format",
        "{obj} mixes formats (dates, decimals or encodings) that {stage} parses loosely",
        "normalise formats at ingestion and reject unparseable rows of {obj} in {stage}",
    ),
    (
        "range",
        "{obj} holds values outside their plausible bounds after {stage}",
        "add a range check on {obj} and quarantine violating rows before {stage} publishes",
    ),
    (
        "volume",
        "{obj} received far more or fewer rows than usual in the last {stage} run",
        "add a row-count anomaly check on {obj} and fail {stage} when it trips",
    ),
    (
        "inconsist",
        "{obj} disagrees with the same fact held by another system after {stage}",
        "reconcile {obj} against its system of record and add a cross-check to {stage}",
    ),
    (
        "",
        "{obj} disagrees with its source after the {stage} step",
        "reconcile {obj} against the source and add a row-count check to {stage}",
    ),
)
_OBJECTS = (
    "orders.customer_id",
    "payments.amount",
    "dim_customer",
    "fct_sessions",
    "events.ts",
    "inventory.sku",
    "invoices.currency",
    "users.email",
)
_STAGES = ("nightly ETL", "staging", "CDC replication", "dbt", "ingestion", "warehouse export")
_ISSUE_BLOCK = re.compile(r'<issue id="(-?\d+)"[^>]*>\n(.*?)\n</issue>', re.DOTALL)
_IDENTIFIER = re.compile(r"\b[a-z][a-z0-9]*(?:[._][a-z0-9]+)+\b")


def _digest(issue_id: int, text: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{issue_id}\x00{text}".encode()).digest()[:8], "big")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _category(text: str, categories: tuple[str, ...], h: int) -> str:
    lowered = text.lower()
    for key, words in _HINTS:
        if any(w in lowered for w in words):
            hinted = [c for c in categories if key in c.lower()]
            if hinted:
                return hinted[0]
    return categories[h % len(categories)] if categories else "other"


def diagnose(issue_id: int, text: str, categories: tuple[str, ...] = DEFAULT_CATEGORIES) -> JSONDict:
    """One deterministic, plausible diagnosis for an issue (same id and text: same answer)."""
    h = _digest(issue_id, text)
    category = _category(text, categories, h)
    finding = next(f for f in _FINDINGS if f[0] in category.lower())
    named = _IDENTIFIER.findall(text)
    obj = named[(h >> 8) % len(named)] if named else _OBJECTS[(h >> 8) % len(_OBJECTS)]
    stage = _STAGES[(h >> 16) % len(_STAGES)]
    return {
        "issue_id": issue_id,
        "category": category,
        "diagnosis": _sentence(finding[1].format(obj=obj, stage=stage)),
        "proposed_fix": _sentence(finding[2].format(obj=obj, stage=stage)),
        "confidence": round(0.55 + ((h >> 24) % 41) / 100, 2),
    }


def apply_answer_faults(entries: list[JSONDict], draw: FaultDraw) -> JSONDict:
    """The tool input, with the id faults and the ``malformed`` fault of ``draw`` applied."""
    out = [dict(e) for e in entries]
    if draw.missing_ids and out:
        drop = max(1, len(out) // 4)
        out = [e for i, e in enumerate(out) if (i + draw.variant) % len(out) >= drop]
    if draw.duplicate_ids and out:
        repeat = dict(out[0])
        repeat["diagnosis"] = "Restated: " + str(repeat["diagnosis"])
        out.append(repeat)
    if draw.invented_ids:
        invented = max((int(e["issue_id"]) for e in entries), default=0) + 1_000_003
        out.append(diagnose(invented, "invented"))
    if draw.answer != "malformed":
        return {"diagnoses": out}
    if draw.variant == 0 or not out:
        return {"diagnoses": "oops"}
    if draw.variant == 1:
        dropped = ("proposed_fix", "confidence")
        return {"diagnoses": [{k: v for k, v in e.items() if k not in dropped} for e in out]}
    return {"diagnoses": [e | {"confidence": "very high", "category": "???"} for e in out]}


def truncate_entries(entries: list[JSONDict], fits: Callable[[JSONDict], bool]) -> JSONDict:
    """The longest prefix of ``entries`` that ``fits``, plus the cut-off next entry's first fields:
    what a partial parse of a tool input cut at ``max_tokens`` looks like."""
    low, high = 0, len(entries)
    while low < high:
        mid = (low + high + 1) // 2
        if fits({"diagnoses": entries[:mid]}):
            low = mid
        else:
            high = mid - 1
    kept = list(entries[:low])
    if low < len(entries):
        cut = {k: entries[low][k] for k in list(entries[low])[:2]}
        if fits({"diagnoses": [*kept, cut]}):
            kept.append(cut)
    return {"diagnoses": kept}


def tool_answer(
    entries: list[JSONDict], draw: FaultDraw, max_tokens: int, measure: Callable[[object], int]
) -> tuple[JSONDict, str, int]:
    """(tool input, stop_reason, output tokens): the faults of ``draw`` applied, then cut to
    ``max_tokens`` as measured by ``measure`` (a cut answer reports ``max_tokens`` output tokens)."""
    tool_input = apply_answer_faults(entries, draw)
    output = measure(tool_input)
    if draw.answer in ("truncated", "context_exceeded"):
        half = max(1, output // 2)
        cut = truncate_entries(entries, lambda d: measure(d) <= half)
        if draw.answer == "truncated":
            return cut, "max_tokens", max_tokens
        return cut, "model_context_window_exceeded", measure(cut)
    if output <= max_tokens:
        return tool_input, "tool_use", output
    listed = tool_input.get("diagnoses")
    keep = [e for e in listed if isinstance(e, dict)] if isinstance(listed, list) else []
    return truncate_entries(keep, lambda d: measure(d) <= max_tokens), "max_tokens", max_tokens


def text_answer(issue_ids: list[int], measure: Callable[[str], int], max_tokens: int) -> tuple[str, str]:
    """(text, stop_reason) of the answer when no tool is offered."""
    listed = ", ".join(map(str, issue_ids)) or "none"
    words = (
        f"Stand-in answer: {len(issue_ids)} issue(s) received ({listed}); "
        f"offer the {tool_name()} tool to get one diagnosis per issue."
    ).split(" ")
    stop_reason = "end_turn"
    while len(words) > 1 and measure(" ".join(words)) > max_tokens:
        words, stop_reason = words[: len(words) // 2], "max_tokens"
    return " ".join(words), stop_reason


def issues_in(user_text: str) -> list[tuple[int, str]]:
    """(issue id, text) per issue of a message made by ``budgetq.answers.render_issues``."""
    texts = {int(m.group(1)): m.group(2) for m in _ISSUE_BLOCK.finditer(user_text)}
    try:
        from budgetq.answers import parse_issue_ids
    except ImportError:  # answers.py is optional for the stand-in: fall back to its own parsing
        ids = list(texts)
    else:
        ids = parse_issue_ids(user_text)
    return [(i, texts.get(i, "")) for i in ids]


def tool_name() -> str:
    try:
        from budgetq.answers import TOOL_NAME
    except ImportError:
        return "record_diagnoses"
    return TOOL_NAME


def choose_tool(tools: list[JSONDict], tool_choice: JSONDict) -> JSONDict | None:
    """The tool to answer with (None: answer with text); ValueError if tool_choice names no tool."""
    by_name = {str(t.get("name")): t for t in tools if isinstance(t, dict)}
    kind = tool_choice.get("type", "auto")
    if kind == "none" or not by_name:
        return None
    if kind == "tool":
        name = str(tool_choice.get("name"))
        if name not in by_name:
            raise ValueError(f"tool_choice: tool '{name}' is not among the provided tools")
        return by_name[name]
    if tool_name() in by_name:
        return by_name[tool_name()]
    return next(iter(by_name.values())) if kind == "any" else None


def categories_of(tool: JSONDict) -> tuple[str, ...]:
    """The category enum of a diagnoses tool's schema (the default set if it has none)."""
    try:
        items = tool["input_schema"]["properties"]["diagnoses"]["items"]
        return tuple(str(c) for c in items["properties"]["category"]["enum"])
    except (KeyError, TypeError):
        return DEFAULT_CATEGORIES
