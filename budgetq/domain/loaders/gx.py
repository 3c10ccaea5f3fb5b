"""Great Expectations validation results (0.x and 1.x), one file or a checkpoint result holding several.

Every expectation with ``success: false`` is a finding, including those that raised (status error,
the exception as the message). Its identity is suite + expectation type + kwargs (less ``batch_id``,
which changes every run), so the same expectation failing again keeps its id.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

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

_VOLATILE_KWARGS = frozenset({"batch_id"})
_SEVERITY_STATUS = {"warning": CheckStatus.WARN, "info": CheckStatus.WARN}


def is_validation(document: Mapping[str, object]) -> bool:
    """True for one validation result (0.x or 1.x)."""
    return isinstance(document.get("results"), list) and (
        "suite_name" in document or "evaluation_parameters" in document or "statistics" in document
    )


def validations(document: Mapping[str, object]) -> Iterator[Mapping[str, object]]:
    """The validation results in a file: itself, or each of a checkpoint result's ``run_results``."""
    if is_validation(document):
        yield document
        return
    run_results = document.get("run_results")
    if not isinstance(run_results, dict):
        raise IngestError(
            "not a Great Expectations validation or checkpoint result (no results, no run_results)"
        )
    for entry in run_results.values():
        inner = entry.get("validation_result") if isinstance(entry, dict) else None
        if isinstance(entry, dict) and inner is None and is_validation(entry):
            inner = entry
        if not isinstance(inner, dict) or not is_validation(inner):
            raise IngestError("a checkpoint run_results entry holds no validation_result")
        yield inner


def parse_gx(document: Mapping[str, object]) -> Parsed:
    """The findings of a validation or checkpoint result."""
    findings: list[Finding] = []
    read = passing = 0
    for validation in validations(document):
        meta = validation.get("meta") if isinstance(validation.get("meta"), dict) else {}
        assert isinstance(meta, dict)
        suite = (
            as_text(validation.get("suite_name")) or as_text(meta.get("expectation_suite_name")) or "suite"
        )
        dataset = _dataset(meta)
        results = validation.get("results")
        assert isinstance(results, list)
        for result in results:
            if not isinstance(result, dict):
                raise IngestError(f"suite {suite!r}: a result is not an object")
            read += 1
            if result.get("success") is not False:
                passing += 1
                continue
            findings.append(_finding(result, suite, dataset))
    return Parsed(SourceTool.GX, tuple(findings), read, passing)


def _dataset(meta: Mapping[str, object]) -> str | None:
    spec = meta.get("batch_spec") if isinstance(meta.get("batch_spec"), dict) else {}
    batch = (
        meta.get("active_batch_definition") if isinstance(meta.get("active_batch_definition"), dict) else {}
    )
    assert isinstance(spec, dict) and isinstance(batch, dict)
    if spec.get("table_name"):
        return dataset_name(batch.get("datasource_name"), spec.get("schema_name"), spec.get("table_name"))
    return dataset_name(
        batch.get("datasource_name"), batch.get("data_asset_name") or spec.get("data_asset_name")
    )


def _exception(info: object) -> str | None:
    """The message of a raised expectation: 0.x holds one exception_info, 1.8 one per metric."""
    if not isinstance(info, dict):
        return None
    if "raised_exception" in info or "exception_message" in info:
        return as_text(info.get("exception_message")) if info.get("raised_exception") is not False else None
    messages = sorted({m for v in info.values() if (m := _exception(v))})
    return "; ".join(messages) or None


def _finding(result: Mapping[str, object], suite: str, dataset: str | None) -> Finding:
    config = result.get("expectation_config") if isinstance(result.get("expectation_config"), dict) else {}
    assert isinstance(config, dict)
    kind = as_text(config.get("type")) or as_text(config.get("expectation_type")) or "expectation"
    kwargs = config.get("kwargs") if isinstance(config.get("kwargs"), dict) else {}
    assert isinstance(kwargs, dict)
    stable = {k: v for k, v in kwargs.items() if k not in _VOLATILE_KWARGS}
    outcome = result.get("result") if isinstance(result.get("result"), dict) else {}
    assert isinstance(outcome, dict)
    raised = _exception(result.get("exception_info"))
    severity = as_text(result.get("severity")) or as_text(config.get("severity"))
    status = CheckStatus.ERROR if raised else _SEVERITY_STATUS.get((severity or "").lower(), CheckStatus.FAIL)
    column = as_text(stable.get("column")) or (
        ", ".join(str(c) for c in stable["column_list"])
        if isinstance(stable.get("column_list"), list)
        else None
    )
    message = raised
    if message is None and "observed_value" in outcome:
        message = f"observed value: {canonical_json(outcome['observed_value'])}"
    elif message is None and isinstance(outcome.get("partial_unexpected_list"), list):
        sample = outcome["partial_unexpected_list"][:10]
        message = f"unexpected values (sample): {canonical_json(sample)}"
    config_meta = config.get("meta") if isinstance(config.get("meta"), dict) else {}
    assert isinstance(config_meta, dict)
    return Finding(
        source=SourceTool.GX,
        external_id=f"gx:{suite}:{kind}:{column or '-'}:{short_hash(stable)}",
        check_name=f"{suite}: {kind}",
        status=status,
        check_kind=kind,
        severity=severity,
        dataset=dataset,
        column=column,
        failing_rows=as_count(outcome.get("unexpected_count")),
        out_of=as_count(outcome.get("element_count")),
        message=message,
        detail=canonical_json(stable),
        detail_label="kwargs",
        description=as_text(config_meta.get("notes")) if isinstance(config_meta.get("notes"), str) else None,
        owner=as_text(config_meta.get("owner")),
        tags=as_tags(config_meta.get("tags")),
        own_priority=config_meta.get("budgetq_priority"),
    )
