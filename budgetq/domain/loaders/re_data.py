"""re_data: the ``re_data overview generate`` output (``target/re_data/overview.json``).

A list of entries with ``type`` (metric, schema, test, alert, anomaly), ``table_name``, ``column_name``,
``computed_on`` and ``data`` (a JSON string). Each ``test`` entry is one dbt test execution; with test
history saved, a test appears once per run, and only its latest execution counts. A test whose
status is Fail, Warn or Error is a finding, identified by table, column and test name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from budgetq.domain.loaders.finding import CheckStatus, Finding, Parsed, SourceTool, as_count, as_text
from budgetq.errors import IngestError

_STATUS = {"fail": CheckStatus.FAIL, "warn": CheckStatus.WARN, "error": CheckStatus.ERROR}


def is_overview(document: object) -> bool:
    """True for a re_data overview: a list of objects with type, table_name and data."""
    return (
        isinstance(document, list)
        and bool(document)
        and all(isinstance(e, dict) and {"type", "table_name", "data"} <= set(e) for e in document[:20])
    )


def parse_overview(document: Sequence[object]) -> Parsed:
    """The findings of a re_data overview: each test's latest execution that did not pass."""
    latest: dict[tuple[str, str, str], tuple[str, Mapping[str, object], Mapping[str, object]]] = {}
    for entry in document:
        if not isinstance(entry, dict) or entry.get("type") != "test":
            continue
        data = _data(entry)
        key = (str(entry.get("table_name")), str(entry.get("column_name") or ""), str(data.get("test_name")))
        when = str(data.get("run_at") or entry.get("computed_on") or "")
        if key not in latest or when >= latest[key][0]:
            latest[key] = (when, entry, data)
    findings: list[Finding] = []
    passing = 0
    for (table, column, test), (_, _entry, data) in sorted(latest.items()):
        status = _STATUS.get(str(data.get("status", "")).lower())
        if status is None:
            passing += 1
            continue
        findings.append(
            Finding(
                source=SourceTool.RE_DATA,
                external_id=f"re_data:{table}:{column or '-'}:{test}",
                check_name=test,
                status=status,
                check_kind=_kind(test),
                severity=as_text(data.get("severity")),
                dataset=table,
                column=column or None,
                failing_rows=as_count(data.get("failures_count")),
                message=as_text(data.get("message")),
                detail=as_text(data.get("compiled_sql")),
                detail_label="compiled SQL",
            )
        )
    return Parsed(SourceTool.RE_DATA, tuple(findings), len(latest), passing)


_KINDS = ("not_null", "unique", "accepted_values", "relationships")


def _kind(test: str) -> str | None:
    """The generic test a dbt test's name starts with (re_data keeps only the name); None when unknown."""
    return next((kind for kind in _KINDS if test.startswith(kind)), None)


def _data(entry: Mapping[str, object]) -> Mapping[str, object]:
    raw = entry.get("data")
    if isinstance(raw, dict):
        return raw
    try:
        data = json.loads(str(raw))
    except ValueError as exc:
        raise IngestError(
            f"a re_data test entry of {entry.get('table_name')!r} has data that is not JSON"
        ) from exc
    if not isinstance(data, dict):
        raise IngestError(
            f"a re_data test entry of {entry.get('table_name')!r} has data that is not an object"
        )
    return data
