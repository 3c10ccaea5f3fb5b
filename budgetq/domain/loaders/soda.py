"""Soda scan results: Soda Core v3's ``soda scan -srf FILE`` and the v4 contract results payload.

Every check whose outcome is fail or warn is a finding, with its diagnostics. The identity is the
check's own: v3 ``identity``, v4 ``identities`` (or, lacking both, data source + table + check name).
"""

from __future__ import annotations

from collections.abc import Mapping

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
    short_hash,
)
from budgetq.errors import IngestError

_STATUS = {"fail": CheckStatus.FAIL, "warn": CheckStatus.WARN, "error": CheckStatus.ERROR}
PASSING = frozenset({"pass", "not_evaluated", "notevaluated", "excluded"})


def scan_checks(document: Mapping[str, object]) -> tuple[list[object], Mapping[str, object]]:
    """The checks of a scan result, and the object that holds them (the payload, for a v4 wrapper)."""
    holder: object = document
    if isinstance(document.get("payload"), dict) and "checks" not in document:
        holder = document["payload"]
    assert isinstance(holder, dict)
    checks = holder.get("checks")
    if not isinstance(checks, list):
        raise IngestError("not a Soda scan result: it has no list of checks")
    return checks, holder


def parse_soda(document: Mapping[str, object]) -> Parsed:
    """The findings of a Soda scan result (v3 or v4)."""
    checks, holder = scan_checks(document)
    default_source = as_text(holder.get("defaultDataSource")) or as_text(holder.get("dataSourceName"))
    findings: list[Finding] = []
    read = passing = 0
    for check in checks:
        if not isinstance(check, dict):
            raise IngestError("a Soda check is not an object")
        read += 1
        outcome = str(check.get("outcome") or "").lower()
        status = _STATUS.get(outcome)
        if status is None:
            if outcome and outcome not in PASSING:
                raise IngestError(f"Soda check {check.get('name')!r} has the outcome {outcome!r}")
            passing += 1
            continue
        findings.append(_finding(check, status, default_source))
    return Parsed(SourceTool.SODA, tuple(findings), read, passing)


def _attributes(check: Mapping[str, object]) -> dict[str, str]:
    out: dict[str, str] = {}
    attributes = check.get("resourceAttributes") or check.get("attributes")
    if isinstance(attributes, list):
        for item in attributes:
            if isinstance(item, dict) and "name" in item:
                out[str(item["name"])] = str(item.get("value"))
    elif isinstance(attributes, dict):
        out.update({str(k): str(v) for k, v in attributes.items()})
    return out


def _identity(check: Mapping[str, object], dataset: str | None, name: str) -> str:
    identity = check.get("identity")
    if isinstance(identity, str) and identity:
        return f"soda:{identity}"
    identities = check.get("identities")
    if isinstance(identities, dict) and identities:
        return f"soda:{sorted(str(v) for v in identities.values())[0]}"
    if isinstance(identities, list) and identities:
        return f"soda:{sorted(str(v) for v in identities)[0]}"
    return f"soda:{short_hash([dataset, check.get('checkPath'), name])}"


def _finding(check: Mapping[str, object], status: CheckStatus, default_source: str | None) -> Finding:
    name = as_text(check.get("name")) or as_text(check.get("definition")) or "check"
    prefix = check.get("datasetPrefix")
    parts = (
        [str(p) for p in prefix]
        if isinstance(prefix, list)
        else [as_text(check.get("dataSource")) or default_source]
    )
    dataset = dataset_name(*parts, check.get("table"))
    diagnostics = check.get("diagnostics") if isinstance(check.get("diagnostics"), dict) else {}
    assert isinstance(diagnostics, dict)
    v4 = diagnostics.get("v4") if isinstance(diagnostics.get("v4"), dict) else {}
    assert isinstance(v4, dict)
    failing = as_count(v4.get("failedRowsCount"))
    if failing is None:
        failing = as_count(diagnostics.get("failedRowsCount"))
    attributes = _attributes(check)
    kind = as_text(check.get("checkType")) or as_text(check.get("type"))
    path = as_text(check.get("checkPath"))
    return Finding(
        source=SourceTool.SODA,
        external_id=_identity(check, dataset, name),
        check_name=name,
        status=status,
        check_kind=(kind + (f" ({path})" if path else "")) if kind else path,
        dataset=dataset,
        column=as_text(check.get("column")),
        failing_rows=failing,
        out_of=as_count(v4.get("datasetRowsTested")),
        message="diagnostics: " + canonical_json(diagnostics) if diagnostics else None,
        detail=as_text(check.get("definition")),
        detail_label="definition",
        owner=attributes.get("owner") or attributes.get("team"),
        tags=as_tags(attributes.get("tags", "")),
        meta=tuple(
            sorted((k, v) for k, v in attributes.items() if k not in ("owner", "tags", "budgetq_priority"))
        ),
        own_priority=attributes.get("budgetq_priority") or attributes.get("priority"),
    )
