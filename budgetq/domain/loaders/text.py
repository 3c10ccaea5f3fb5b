"""The issue text a model reads: one finding written out the same way every time.

Deterministic (no clock, no ordering left to chance): the same failing check with the same figures
gives the same text night after night, which is what lets a snapshot load tell "changed" from "same".
"""

from __future__ import annotations

from budgetq.domain.loaders.finding import Finding

TOOL_NAMES = {
    "dbt": "dbt",
    "gx": "Great Expectations",
    "soda": "Soda",
    "elementary": "Elementary",
    "re_data": "re_data",
}


def _cut(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    return value[:limit] + f"\n… (cut: {len(value) - limit:,} more characters)"


def issue_text(finding: Finding, *, max_detail_chars: int) -> str:
    """The text of ``finding`` for a model that must diagnose it; detail and message are cut to size."""
    f = finding
    tool = TOOL_NAMES[f.source.value]
    lines = [
        f"{tool} check {f.check_name!r} {f.status.value.upper()}"
        + (f" (severity {f.severity})" if f.severity else "")
    ]
    if f.check_kind:
        lines.append(f"check kind: {f.check_kind}")
    if f.dataset:
        lines.append(f"dataset: {f.dataset}")
    if f.column:
        lines.append(f"column: {f.column}")
    if f.failing_rows is not None:
        of = f" out of {f.out_of:,} rows" if f.out_of is not None else ""
        lines.append(f"failing rows: {f.failing_rows:,}{of}")
    if f.message:
        lines.append(f"message: {_cut(f.message, max_detail_chars)}")
    if f.description:
        lines.append(f"description: {_cut(f.description, max_detail_chars)}")
    if f.owner:
        lines.append(f"owner: {f.owner}")
    if f.tags:
        lines.append(f"tags: {', '.join(f.tags)}")
    if f.meta:
        lines.append("meta: " + ", ".join(f"{k}={v}" for k, v in f.meta))
    if f.detail:
        lines.append(f"{f.detail_label}:\n{_cut(f.detail.strip(), max_detail_chars)}")
    return "\n".join(lines)
