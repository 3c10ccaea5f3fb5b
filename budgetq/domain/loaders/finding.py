"""What every loader makes of one non-passing check: a tool-neutral finding, and a parsed file's tally."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum


class SourceTool(StrEnum):
    """The tools whose result files ``budgetq load`` reads."""

    DBT = "dbt"
    GX = "gx"
    SODA = "soda"
    ELEMENTARY = "elementary"
    RE_DATA = "re_data"


class CheckStatus(StrEnum):
    """How a check did not pass: it failed, only warned, or could not run at all."""

    FAIL = "fail"
    WARN = "warn"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    """One failing, warning or erroring check, with everything a model needs to diagnose it."""

    source: SourceTool
    external_id: str
    check_name: str
    status: CheckStatus
    check_kind: str | None = None
    severity: str | None = None
    dataset: str | None = None
    column: str | None = None
    failing_rows: int | None = None
    out_of: int | None = None
    message: str | None = None
    # The test's compiled SQL, the expectation's kwargs or the check's definition, and what it is.
    detail: str | None = None
    detail_label: str = "definition"
    description: str | None = None
    owner: str | None = None
    tags: tuple[str, ...] = ()
    meta: tuple[tuple[str, str], ...] = ()
    # The check's own ``budgetq_priority`` (tag or meta), which wins over every mapping.
    own_priority: object = None


@dataclass(frozen=True)
class Parsed:
    """A result file read: its findings, how many checks it held, and what the reader should be told."""

    source: SourceTool
    findings: tuple[Finding, ...]
    read: int
    skipped_passing: int
    notes: tuple[str, ...] = field(default=())


def canonical_json(value: object) -> str:
    """``value`` as JSON with sorted keys and no spaces, so equal values give equal text night after night."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def short_hash(value: object) -> str:
    """The first 16 hex digits of the SHA-256 of ``value``'s canonical JSON: a stable, short identity."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:16]


def as_count(value: object) -> int | None:
    """A row count from a tool's field: an int (or integral float, or digit string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def as_text(value: object) -> str | None:
    """A non-empty string from a tool's field, stripped; None for anything else."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def as_tags(value: object) -> tuple[str, ...]:
    """Tags from a list, or a comma-separated or JSON-list string, sorted and without repeats."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except ValueError:
                value = stripped.strip("[]").split(",")
        else:
            value = stripped.split(",")
    if not isinstance(value, list | tuple):
        return ()
    return tuple(sorted({str(t).strip().strip("'\"") for t in value if str(t).strip().strip("'\"")}))


def dataset_name(*parts: object) -> str | None:
    """``database.schema.relation`` from the parts that are known (None when none is)."""
    known = [str(p) for p in parts if isinstance(p, str) and p]
    return ".".join(known) or None
