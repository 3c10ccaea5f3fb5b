"""Which priority a finding gets: the tool's verdict by a documented default, overridden by the check.

Order, first match wins: the check's own ``budgetq_priority`` (a meta key, or a tag
``budgetq_priority:N``); then a mapping file's ``check`` entry (by check kind or name), ``tag`` entry,
``severity`` entry and ``status`` entry; then the default: error 15, fail 10, warn 5.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from budgetq.domain.ingest import ALLOWED_PRIORITIES
from budgetq.domain.loaders.finding import CheckStatus, Finding
from budgetq.errors import IngestError

DEFAULT_BY_STATUS: Mapping[CheckStatus, int] = {
    CheckStatus.ERROR: 15,
    CheckStatus.FAIL: 10,
    CheckStatus.WARN: 5,
}
SECTIONS = ("check", "tag", "severity", "status")
TAG_PREFIX = "budgetq_priority:"


@dataclass(frozen=True)
class PriorityMap:
    """A mapping file's overrides: section (check, tag, severity, status) to name to priority."""

    sections: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: Mapping[str, object], origin: str) -> PriorityMap:
        """Check a parsed mapping file (TOML tables named as in SECTIONS) and build the map."""
        sections: dict[str, dict[str, int]] = {}
        for name, table in document.items():
            if name not in SECTIONS or not isinstance(table, Mapping):
                raise IngestError(
                    f"{origin}: unknown table [{name}]; a priority map has the tables {', '.join(SECTIONS)}"
                )
            entries: dict[str, int] = {}
            for key, value in table.items():
                if isinstance(value, bool) or value not in ALLOWED_PRIORITIES:
                    allowed = ", ".join(str(p) for p in ALLOWED_PRIORITIES)
                    raise IngestError(f"{origin}: [{name}] {key} = {value!r} is not a priority ({allowed})")
                entries[str(key).lower()] = int(str(value))
            sections[name] = entries
        return cls(sections)


def _own(value: object) -> int | None:
    text = str(value).strip() if value is not None else ""
    if text.isdigit() and int(text) in ALLOWED_PRIORITIES:
        return int(text)
    return None


def priority_of(finding: Finding, mapping: PriorityMap | None = None) -> int:
    """The priority ``finding`` is loaded with (see the module's order)."""
    own = _own(finding.own_priority)
    if own is None:
        for tag in finding.tags:
            if tag.lower().startswith(TAG_PREFIX):
                own = _own(tag[len(TAG_PREFIX) :])
    if own is not None:
        return own
    if mapping is not None:
        sections = mapping.sections
        for key in (finding.check_kind, finding.check_name):
            if key and key.lower() in sections.get("check", {}):
                return sections["check"][key.lower()]
        for tag in finding.tags:
            if tag.lower() in sections.get("tag", {}):
                return sections["tag"][tag.lower()]
        if finding.severity and finding.severity.lower() in sections.get("severity", {}):
            return sections["severity"][finding.severity.lower()]
        if finding.status.value in sections.get("status", {}):
            return sections["status"][finding.status.value]
    return DEFAULT_BY_STATUS[finding.status]
