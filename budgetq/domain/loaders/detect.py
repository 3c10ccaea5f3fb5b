"""Which tool wrote a result file, told from its content (never from its name alone)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from budgetq.domain.loaders import gx, re_data
from budgetq.errors import IngestError


class LoadFormat(StrEnum):
    """What ``budgetq load --from`` accepts."""

    CSV = "csv"
    JSONL = "jsonl"
    DBT = "dbt"
    GX = "gx"
    SODA = "soda"
    ELEMENTARY = "elementary"
    RE_DATA = "re_data"


TOOL_FORMATS = (LoadFormat.DBT, LoadFormat.GX, LoadFormat.SODA, LoadFormat.ELEMENTARY, LoadFormat.RE_DATA)


def json_format(document: object) -> LoadFormat:
    """The tool of a parsed JSON result file; IngestError when it is none of them."""
    if re_data.is_overview(document):
        return LoadFormat.RE_DATA
    if not isinstance(document, dict):
        raise IngestError(
            f"the JSON holds a {type(document).__name__}, not an object: not a dbt, Great Expectations, "
            "Soda or Elementary result file"
        )
    metadata = document.get("metadata")
    schema = metadata.get("dbt_schema_version") if isinstance(metadata, dict) else None
    if isinstance(schema, str):
        if "/manifest/" in schema:
            raise IngestError(
                "this is a dbt manifest.json: load the run_results.json beside it (or its folder)"
            )
        return LoadFormat.DBT
    if "project_dict" in document and "packages" in document:
        raise IngestError("this is re_data's metadata.json: load the overview.json beside it")
    if "test_results" in document and ("test_results_totals" in document or "creation_time" in document):
        return LoadFormat.ELEMENTARY
    if gx.is_validation(document) or isinstance(document.get("run_results"), dict):
        return LoadFormat.GX
    payload = document.get("payload")
    if isinstance(document.get("checks"), list) or (isinstance(payload, Mapping) and "checks" in payload):
        return LoadFormat.SODA
    keys = ", ".join(sorted(document)[:8])
    raise IngestError(
        f"cannot tell which tool wrote this JSON (top-level keys: {keys}); "
        "give --from dbt|gx|soda|elementary|re_data, or load a CSV/JSONL with priority,text"
    )


def row_format(columns: set[str], fallback: LoadFormat) -> LoadFormat:
    """ELEMENTARY for rows exported from ``elementary_test_results`` (test_unique_id), else ``fallback``."""
    return LoadFormat.ELEMENTARY if {"test_unique_id", "status"} <= columns else fallback
