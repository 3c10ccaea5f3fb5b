"""dbt's ``run_results.json`` (schema v1–v6, dbt 0.19 to 1.12) read with what its ``manifest.json`` says.

Every result with status fail, warn or error (``runtime error`` in old versions) is a finding;
pass, success and skipped are only counted. The manifest is not held whole: the caller streams its
nodes through ``keep_node`` and passes the small ``ManifestIndex`` that results.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

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

SUPPORTED_VERSIONS = ("v1", "v2", "v3", "v4", "v5", "v6")
_VERSION = re.compile(r"/run-results/(v\d+)\.json$")
_STATUS = {
    "fail": CheckStatus.FAIL,
    "warn": CheckStatus.WARN,
    "error": CheckStatus.ERROR,
    "runtime error": CheckStatus.ERROR,
}
PASSING = frozenset({"pass", "success", "skipped", "skip", "no-op"})
_REF = re.compile(r"""(?:ref|source)\(\s*['"]([^'"]+)['"]""")
_QUIET_META = frozenset({"owner", "budgetq_priority"})


@dataclass(frozen=True)
class ManifestIndex:
    """The few manifest fields a load needs: the failing tests' nodes and the models and sources they test."""

    invocation_id: str | None
    nodes: Mapping[str, Mapping[str, object]] = field(default_factory=dict)


def run_results_version(document: Mapping[str, object]) -> str:
    """The run-results schema version (``v1`` … ``v6``); IngestError names the supported ones otherwise."""
    metadata = document.get("metadata")
    schema = metadata.get("dbt_schema_version") if isinstance(metadata, dict) else None
    match = _VERSION.search(schema) if isinstance(schema, str) else None
    if match is None or match.group(1) not in SUPPORTED_VERSIONS:
        raise IngestError(
            f"run_results.json has schema version {schema!r}; supported: run-results "
            f"{', '.join(SUPPORTED_VERSIONS)} (dbt 0.19 to 1.12)"
        )
    return match.group(1)


def failing_ids(document: Mapping[str, object]) -> frozenset[str]:
    """The unique ids of the results that did not pass: the manifest nodes worth keeping."""
    return frozenset(
        str(r.get("unique_id")) for r in _results(document) if str(r.get("status", "")).lower() not in PASSING
    )


def keep_node(node: Mapping[str, object]) -> dict[str, object]:
    """The fields of a manifest node (test, model, seed, snapshot or source) that a finding uses."""
    config = node.get("config") if isinstance(node.get("config"), dict) else {}
    assert isinstance(config, dict)
    meta: dict[str, object] = {}
    for source in (config.get("meta"), node.get("meta")):
        if isinstance(source, dict):
            meta.update(source)
    test_metadata = node.get("test_metadata") if isinstance(node.get("test_metadata"), dict) else None
    depends = node.get("depends_on")
    return {
        "name": node.get("name"),
        "resource_type": node.get("resource_type"),
        "database": node.get("database"),
        "schema": node.get("schema"),
        "alias": node.get("alias") or node.get("identifier") or node.get("name"),
        "description": node.get("description"),
        "column_name": node.get("column_name"),
        "test_metadata": test_metadata,
        "severity": config.get("severity"),
        "tags": node.get("tags") or config.get("tags"),
        "meta": meta,
        "compiled": node.get("compiled_code") or node.get("compiled_sql"),
        "attached_node": node.get("attached_node"),
        "depends_on": depends.get("nodes") if isinstance(depends, dict) else None,
    }


def tested_ids(kept: Mapping[str, Mapping[str, object]]) -> frozenset[str]:
    """The models and sources the kept test nodes test: the second set of nodes worth keeping."""
    return frozenset(t for node in kept.values() if (t := _tested(node)) is not None)


def _tested(node: Mapping[str, object]) -> str | None:
    """The node a test tests: ``attached_node`` (dbt 1.5 on), else the dependency its ``model`` kwarg
    refers to (a relationships test depends on two models), else its last dependency."""
    attached = node.get("attached_node")
    if isinstance(attached, str):
        return attached
    depends = node.get("depends_on")
    if not isinstance(depends, list) or not depends:
        return None
    test_metadata = node.get("test_metadata")
    kwargs = test_metadata.get("kwargs") if isinstance(test_metadata, dict) else None
    model = kwargs.get("model") if isinstance(kwargs, dict) else None
    named = _REF.search(model) if isinstance(model, str) else None
    if named is not None:
        for candidate in depends:
            if str(candidate).endswith(f".{named.group(1)}"):
                return str(candidate)
    return str(depends[-1])


def parse_run_results(document: Mapping[str, object], manifest: ManifestIndex | None) -> Parsed:
    """The findings of a run_results document, with the manifest's context where there is one."""
    run_results_version(document)
    notes: list[str] = []
    metadata = document.get("metadata")
    invocation = metadata.get("invocation_id") if isinstance(metadata, dict) else None
    if manifest is None:
        notes.append("no manifest.json found: loaded what run_results.json holds (no dataset, owner or SQL)")
    elif manifest.invocation_id and invocation and manifest.invocation_id != invocation:
        notes.append(
            f"manifest.json is from invocation {manifest.invocation_id}, run_results.json from {invocation}: "
            "its SQL and descriptions may be out of date (run dbt test again to write both)"
        )
    findings: list[Finding] = []
    read = passing = 0
    for result in _results(document):
        read += 1
        status = str(result.get("status", "")).lower()
        if status in PASSING:
            passing += 1
            continue
        verdict = _STATUS.get(status)
        if verdict is None:
            raise IngestError(
                f"result {result.get('unique_id')!r} has the status {status!r}; "
                "expected pass, success, skipped, fail, warn or error"
            )
        findings.append(_finding(result, verdict, manifest))
    return Parsed(SourceTool.DBT, tuple(findings), read, passing, tuple(notes))


def _results(document: Mapping[str, object]) -> list[dict[str, object]]:
    results = document.get("results")
    if not isinstance(results, list) or not all(isinstance(r, dict) and "unique_id" in r for r in results):
        raise IngestError("run_results.json has no list of results with unique_id: is the file complete?")
    return results


def _finding(result: Mapping[str, object], status: CheckStatus, manifest: ManifestIndex | None) -> Finding:
    unique_id = str(result["unique_id"])
    parts = unique_id.split(".")
    node = manifest.nodes.get(unique_id, {}) if manifest is not None else {}
    found = node.get("test_metadata")
    test_metadata: dict[str, object] = found if isinstance(found, dict) else {}
    kwargs = test_metadata.get("kwargs")
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    tested = _tested(node)
    model: Mapping[str, object] = manifest.nodes.get(tested, {}) if manifest and tested else {}
    meta = node.get("meta") if isinstance(node.get("meta"), dict) else {}
    assert isinstance(meta, dict)
    model_meta = model.get("meta") if isinstance(model.get("meta"), dict) else {}
    assert isinstance(model_meta, dict)
    owner = as_text(meta.get("owner")) or as_text(model_meta.get("owner"))
    if test_metadata:
        kind = str(test_metadata.get("name"))
    else:
        kind = "singular test" if parts[0] == "test" else str(node.get("resource_type") or parts[0])
    detail = (
        as_text(node.get("compiled"))
        or as_text(result.get("compiled_code"))
        or as_text(result.get("compiled_sql"))
    )
    return Finding(
        source=SourceTool.DBT,
        external_id=unique_id,
        check_name=as_text(node.get("name")) or (parts[2] if len(parts) > 2 else unique_id),
        status=status,
        check_kind=kind,
        severity=as_text(node.get("severity")),
        dataset=dataset_name(model.get("database"), model.get("schema"), model.get("alias")),
        column=as_text(node.get("column_name")) or as_text(kwargs.get("column_name")),
        failing_rows=as_count(result.get("failures")),
        message=as_text(result.get("message")),
        detail=detail,
        detail_label="compiled SQL",
        description=as_text(model.get("description")),
        owner=owner,
        tags=as_tags(node.get("tags")),
        meta=tuple(
            (str(k), v if isinstance(v, str) else canonical_json(v))
            for k, v in sorted(meta.items())
            if k not in _QUIET_META
        ),
        own_priority=meta.get("budgetq_priority"),
    )
