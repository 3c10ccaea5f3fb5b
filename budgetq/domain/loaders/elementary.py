"""Elementary: the ``edr report`` data file and rows exported from the ``elementary_test_results`` table.

In the report file, ``test_results`` maps a model to its tests; each entry whose
``metadata.latest_run_status`` is fail, warn or error is a finding, identified by Elementary's test id.
The table holds one row per execution: only the latest row of each test counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from budgetq.domain.loaders.finding import (
    CheckStatus,
    Finding,
    Parsed,
    SourceTool,
    as_count,
    as_tags,
    as_text,
    canonical_json,
    dataset_name,
)
from budgetq.errors import IngestError

_STATUS = {"fail": CheckStatus.FAIL, "warn": CheckStatus.WARN, "error": CheckStatus.ERROR}
PASSING = frozenset({"pass", "skipped", "no_data"})
TABLE_COLUMNS = frozenset({"test_unique_id", "status"})


def parse_report(document: Mapping[str, object]) -> Parsed:
    """The findings of an ``elementary_output.json`` report data file."""
    groups = document.get("test_results")
    if not isinstance(groups, dict):
        raise IngestError("not an Elementary report: test_results is not a map of models to tests")
    findings: list[Finding] = []
    read = passing = 0
    for entries in groups.values():
        for entry in entries if isinstance(entries, list) else []:
            meta = entry.get("metadata") if isinstance(entry, dict) else None
            if not isinstance(meta, dict):
                raise IngestError("an Elementary test result has no metadata")
            read += 1
            status = _STATUS.get(str(meta.get("latest_run_status", "")).lower())
            if status is None:
                passing += 1
                continue
            sample = entry.get("test_results") if isinstance(entry.get("test_results"), dict) else {}
            assert isinstance(sample, dict)
            result = meta.get("result") if isinstance(meta.get("result"), dict) else {}
            assert isinstance(result, dict)
            findings.append(
                _finding(
                    meta,
                    status,
                    failing=as_count(sample.get("failed_rows_count")),
                    message=as_text(sample.get("error_message")) or as_text(result.get("result_description")),
                    query=as_text(meta.get("test_query")),
                    owner=meta.get("owners") or meta.get("owner"),
                    tags=meta.get("test_tags"),
                )
            )
    return Parsed(SourceTool.ELEMENTARY, tuple(findings), read, passing)


def parse_table_rows(rows: Iterable[Mapping[str, object]]) -> Parsed:
    """The findings of rows of ``elementary_test_results`` (CSV or JSONL): each test's latest row."""
    latest: dict[str, Mapping[str, object]] = {}
    for row in rows:
        test_id = as_text(row.get("test_unique_id"))
        if test_id is None:
            raise IngestError("an elementary_test_results row has no test_unique_id")
        key = _row_id(row, test_id)
        seen = latest.get(key)
        if seen is None or str(row.get("detected_at") or "") >= str(seen.get("detected_at") or ""):
            latest[key] = row
    findings: list[Finding] = []
    passing = 0
    for row in latest.values():
        status = _STATUS.get(str(row.get("status", "")).lower())
        if status is None:
            passing += 1
            continue
        findings.append(
            _finding(
                row,
                status,
                failing=as_count(row.get("failures")),
                message=as_text(row.get("test_results_description")),
                query=as_text(row.get("test_results_query")),
                owner=row.get("owners"),
                tags=row.get("tags"),
            )
        )
    notes = () if len(latest) == 0 else ()
    return Parsed(SourceTool.ELEMENTARY, tuple(findings), len(latest), passing, notes)


def _row_id(row: Mapping[str, object], test_id: str) -> str:
    column = as_text(row.get("column_name"))
    sub_type = as_text(row.get("test_sub_type"))
    if sub_type and sub_type != "generic":
        return f"{test_id}.{column or ''}.{sub_type}" if column else f"{test_id}.{sub_type}"
    return test_id


def _owner(value: object) -> str | None:
    owners = as_tags(value) if value is not None else ()
    return ", ".join(owners) or None


def _finding(
    meta: Mapping[str, object],
    status: CheckStatus,
    *,
    failing: int | None,
    message: str | None,
    query: str | None,
    owner: object,
    tags: object,
) -> Finding:
    test_id = str(meta.get("test_unique_id"))
    external = as_text(meta.get("elementary_unique_id")) or _row_id(meta, test_id)
    params = meta.get("test_params")
    kind = as_text(meta.get("test_name")) or as_text(meta.get("test_short_name")) or "test"
    return Finding(
        source=SourceTool.ELEMENTARY,
        external_id=external,
        check_name=as_text(meta.get("test_display_name")) or as_text(meta.get("test_alias")) or kind,
        status=status,
        check_kind=kind + (f" ({meta['test_sub_type']})" if as_text(meta.get("test_sub_type")) else ""),
        severity=as_text(meta.get("severity")),
        dataset=dataset_name(meta.get("database_name"), meta.get("schema_name"), meta.get("table_name")),
        column=as_text(meta.get("column_name")),
        failing_rows=failing,
        message=message,
        detail=query or (canonical_json(params) if params else None),
        detail_label="test query" if query else "test params",
        description=as_text(meta.get("description")),
        owner=_owner(owner),
        tags=as_tags(tags) if tags is not None else (),
    )
