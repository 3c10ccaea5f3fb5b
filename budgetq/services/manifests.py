"""Streaming a dbt ``manifest.json`` down to what a load needs.

A manifest can run to hundreds of MB; it is read with ijson (its C parser, yajl2_c), keeping only the
failing tests' nodes and a few fields of each model and source, so memory follows the number of
failing tests and models, not the file's size (see docs/benchmarks.md for the figures).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import ijson

from budgetq.domain.loaders import dbt
from budgetq.errors import IngestError

MANIFEST = "manifest.json"


def read_manifest(path: Path, wanted: frozenset[str]) -> dbt.ManifestIndex:
    """Stream ``manifest.json``: its invocation id, the ``wanted`` test nodes and every model and source."""
    kept: dict[str, Mapping[str, object]] = {}
    try:
        with path.open("rb") as handle:
            metadata: object = next(ijson.items(handle, "metadata"), {})
        with path.open("rb") as handle:
            for key, node in ijson.kvitems(handle, "nodes", use_float=True):
                if key in wanted:
                    kept[key] = dbt.keep_node(node)
                elif not str(key).startswith("test."):
                    # A model's SQL is never shown; only its name, relation, description and owner are.
                    kept[key] = {**dbt.keep_node(node), "compiled": None}
        with path.open("rb") as handle:
            for key, node in ijson.kvitems(handle, "sources", use_float=True):
                kept[key] = dbt.keep_node(node)
    except OSError as exc:
        raise IngestError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (ijson.JSONError, ijson.IncompleteJSONError) as exc:
        raise IngestError(f"{path} is not valid JSON (truncated?): {exc}; nothing was loaded") from exc
    if not isinstance(metadata, dict) or "/manifest/" not in str(metadata.get("dbt_schema_version", "")):
        raise IngestError(f"{path} is not a dbt manifest (no metadata.dbt_schema_version naming a manifest)")
    # Only the failing tests and what they test are kept past the stream.
    tests = {k: v for k, v in kept.items() if k in wanted}
    tested = dbt.tested_ids(tests)
    slim = {**tests, **{k: v for k, v in kept.items() if k in tested}}
    invocation = metadata.get("invocation_id")
    return dbt.ManifestIndex(str(invocation) if invocation else None, slim)


def manifest_beside(run_results: Path) -> Path | None:
    """The manifest.json beside ``run_results`` or in a ``target/`` there; None when there is none."""
    for candidate in (run_results.parent / MANIFEST, run_results.parent / "target" / MANIFEST):
        if candidate.is_file():
            return candidate
    return None
