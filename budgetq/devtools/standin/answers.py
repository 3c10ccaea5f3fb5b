"""The stand-in's deterministic answers: one plausible diagnosis per issue, shaped as the tool input.

``issues_in`` reads the issues of a user message, ``choose_tool`` / ``categories_of`` read the
offered tool, ``diagnose`` writes an issue's diagnosis (same id and text: same answer), and
``tool_answer`` / ``text_answer`` apply a ``FaultDraw``'s answer faults and the ``max_tokens`` cut.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable

from budgetq.devtools.standin.faults import FaultDraw
from budgetq.devtools.standin.mapping import JSONDict
from budgetq.domain.answers import CATEGORIES

# The enum of budgetq.domain.answers' tool; a request's own tool schema overrides it.
DEFAULT_CATEGORIES = CATEGORIES

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
# An issue block is <issue id="…" …>\n text \n</issue> (``_issue_blocks``): the opening tag by regex,
# the text up to the first closing tag by str.find - a lazy (.*?) regex stepped through every text
# character by character and was most of the cost of reading a request.
_ISSUE_OPEN = re.compile(r'<issue id="(-?\d+)"[^>]*>\n')
_ISSUE_CLOSE = "\n</issue>"
_IDENTIFIER = re.compile(r"\b[a-z][a-z0-9]*(?:[._][a-z0-9]+)+\b")


def _digest(issue_id: int, text: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{issue_id}\x00{text}".encode()).digest()[:8], "big")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


# Diagnoses are deterministic, and a batch is often answered more than once (retries, splits, a rerun
# of the same set), so the last ones are kept; bounded so a long-running stand-in stays small.
_DIAGNOSIS_CACHE = 20_000


@functools.lru_cache(maxsize=64)
def _hints_for(categories: tuple[str, ...]) -> tuple[tuple[tuple[str, ...], str], ...]:
    """(hint words, category) for each hint key some category contains, in ``_HINTS`` order: the
    category lookup of ``_category`` done once per tool schema instead of once per issue."""
    out = []
    for key, words in _HINTS:
        hinted = [c for c in categories if key in c.lower()]
        if hinted:
            out.append((words, hinted[0]))
    return tuple(out)


@functools.lru_cache(maxsize=256)
def _finding(category: str) -> tuple[str, str, str]:
    return next(f for f in _FINDINGS if f[0] in category.lower())


def _category(text: str, categories: tuple[str, ...], h: int) -> str:
    lowered = text.lower()
    for words, category in _hints_for(categories):
        if any(map(lowered.__contains__, words)):  # map: no generator frame per word
            return category
    return categories[h % len(categories)] if categories else "other"


@functools.lru_cache(maxsize=_DIAGNOSIS_CACHE)
def _diagnosis(issue_id: int, text: str, categories: tuple[str, ...]) -> JSONDict:
    h = _digest(issue_id, text)
    category = _category(text, categories, h)
    finding = _finding(category)
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


def diagnose(issue_id: int, text: str, categories: tuple[str, ...] = DEFAULT_CATEGORIES) -> JSONDict:
    """One deterministic, plausible diagnosis for an issue (same id and text: same answer)."""
    return dict(_diagnosis(issue_id, text, categories))  # a copy: callers may change theirs


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


def _issue_blocks(user_text: str) -> dict[int, str]:
    """Text per issue id, as ``re.findall(r'<issue id="(-?\\d+)"[^>]*>\\n(.*?)\\n</issue>', DOTALL)``
    reads them (the shortest text closing the tag; the next block is looked for after it)."""
    texts: dict[int, str] = {}
    at = 0
    while (tag := _ISSUE_OPEN.search(user_text, at)) is not None:
        end = user_text.find(_ISSUE_CLOSE, tag.end())
        if end < 0:
            break  # no block can close after this one either
        texts[int(tag.group(1))] = user_text[tag.end() : end]
        at = end + len(_ISSUE_CLOSE)
    return texts


def issues_in(user_text: str) -> list[tuple[int, str]]:
    """(issue id, text) per issue of a message made by ``budgetq.domain.answers.render_issues``."""
    texts = _issue_blocks(user_text)
    try:
        from budgetq.domain.answers import parse_issue_ids
    except ImportError:  # answers.py is optional for the stand-in: fall back to its own parsing
        ids = list(texts)
    else:
        ids = parse_issue_ids(user_text)
    return [(i, texts.get(i, "")) for i in ids]


def tool_name() -> str:
    try:
        from budgetq.domain.answers import TOOL_NAME
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
