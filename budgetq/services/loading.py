"""Loading a data-quality tool's result files: finding them, telling the tool, reading them, storing.

A dbt manifest is streamed (``budgetq.services.manifests``), never read whole.
"""

from __future__ import annotations

import csv
import json
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store.snapshots import SnapshotReport, ToolIssue, load_tool_issues
from budgetq.domain import ingest
from budgetq.domain.loaders import dbt, elementary, gx, re_data, soda
from budgetq.domain.loaders.detect import LoadFormat, json_format, row_format
from budgetq.domain.loaders.finding import Parsed, short_hash
from budgetq.domain.loaders.priority import PriorityMap, priority_of
from budgetq.domain.loaders.text import issue_text
from budgetq.errors import IngestError
from budgetq.services.manifests import manifest_beside, read_manifest

RUN_RESULTS = "run_results.json"
# An Elementary CSV field (a compiled test query, a result sample) may be long, never a GiB: past this a
# file is refused. The csv module's limit is process-wide, so it is set only while a file is read.
TOOL_FIELD_MAX_CHARS = 10 * 1024 * 1024


@dataclass(frozen=True)
class ToolLoad:
    """A tool load's outcome: what the file held and what the store did with it."""

    source: str
    path: Path
    parsed: Parsed
    stored: SnapshotReport | None
    rejected: tuple[str, ...]


def resolve_path(path: Path) -> Path:
    """The result file ``path`` names: itself, or a folder's (or its ``target/``'s) run_results.json."""
    if path.is_dir():
        for candidate in (path / RUN_RESULTS, path / "target" / RUN_RESULTS):
            if candidate.is_file():
                return candidate
        raise IngestError(
            f"{path} is a folder without {RUN_RESULTS} (nor target/{RUN_RESULTS}): run dbt test first"
        )
    if not path.exists():
        raise IngestError(f"cannot read {path}: no such file or folder")
    return path


def sniff(path: Path, declared: LoadFormat | None) -> LoadFormat:
    """The format of ``path`` from its first bytes (and, for JSON, its keys); ``declared`` is checked."""
    with _open(path) as handle:
        head = handle.read(4096).lstrip("\ufeff \t\r\n")
    if not head:
        raise IngestError(f"{path} is empty: nothing to load")
    if head[0] == "{" and _is_jsonl(path):
        found = row_file_format(path, LoadFormat.JSONL)
    elif head[0] in "{[":
        found = json_format(_read_json(path))
    else:
        header = next(csv.reader([head.splitlines()[0]]), [])
        found = row_format({h.strip().lower() for h in header}, LoadFormat.CSV)
    if (
        declared is not None
        and declared is not found
        and not (
            declared in (LoadFormat.CSV, LoadFormat.JSONL) and found in (LoadFormat.CSV, LoadFormat.JSONL)
        )
    ):
        raise IngestError(f"{path.name} is a {found.value} file, not {declared.value} as --from says")
    return declared or found


def row_file_format(path: Path, suffix: LoadFormat) -> LoadFormat:
    """ELEMENTARY when a CSV/JSONL file's first record names Elementary's columns, else ``suffix``."""
    with _open(path) as handle:
        first = handle.readline().lstrip("\ufeff").strip()
    if not first:
        return suffix
    if suffix is LoadFormat.JSONL:
        try:
            record = json.loads(first)
        except ValueError:
            return suffix
        return row_format(set(record) if isinstance(record, dict) else set(), suffix)
    return row_format({h.strip().lower() for h in next(csv.reader([first]), [])}, suffix)


def load_priority_map(path: Path | None) -> PriorityMap | None:
    """The mapping file at ``path`` (TOML), checked; None when no file is given."""
    if path is None:
        return None
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise IngestError(f"cannot read the priority map {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise IngestError(f"the priority map {path} is not valid TOML: {exc}") from exc
    return PriorityMap.from_document(document, str(path))


def parse_file(path: Path, fmt: LoadFormat, manifest: Path | None = None) -> Parsed:
    """Read the result file ``path`` of the tool ``fmt`` into findings."""
    if fmt is LoadFormat.DBT:
        document = _read_object(path)
        dbt.run_results_version(document)
        found = manifest or manifest_beside(path)
        index = read_manifest(found, dbt.failing_ids(document)) if found is not None else None
        return dbt.parse_run_results(document, index)
    if fmt is LoadFormat.GX:
        return gx.parse_gx(_read_object(path))
    if fmt is LoadFormat.SODA:
        return soda.parse_soda(_read_object(path))
    if fmt is LoadFormat.ELEMENTARY:
        with _open(path) as head:
            first = head.read(1)
        rows_file = path.suffix.lower() in (".csv", ".jsonl", ".ndjson")
        if first == "{" and not rows_file and not _is_jsonl(path):
            return elementary.parse_report(_read_object(path))
        return elementary.parse_table_rows(_table_rows(path))
    if fmt is LoadFormat.RE_DATA:
        overview = _read_json(path)
        if not re_data.is_overview(overview):
            raise IngestError(f"{path.name} is not a re_data overview (a list of entries with type and data)")
        assert isinstance(overview, list)
        return re_data.parse_overview(overview)
    raise IngestError(f"{fmt.value} is not a tool format")


def to_issues(
    parsed: Parsed, mapping: PriorityMap | None, max_detail_chars: int, max_text_chars: int
) -> tuple[list[ToolIssue], tuple[str, ...]]:
    """The findings as issues to store, and the reasons for those that cannot be (repeated id, too long)."""
    issues: list[ToolIssue] = []
    rejected: list[str] = []
    seen: set[str] = set()
    for f in parsed.findings:
        if f.external_id in seen:
            rejected.append(f"{f.external_id}: the file holds this check twice; the first was kept")
            continue
        seen.add(f.external_id)
        external = f.external_id
        if len(external) > ingest.MAX_EXTERNAL_ID_CHARS:
            # A unique-index key must stay small; the hash keeps a long id (Elementary's) stable and unique.
            external = f"{external[: ingest.MAX_EXTERNAL_ID_CHARS - 20]}:{short_hash(external)}"
        text = issue_text(f, max_detail_chars=max_detail_chars)
        if len(text) > max_text_chars:
            text = text[:max_text_chars]
        issues.append(
            ToolIssue(
                external,
                priority_of(f, mapping),
                text,
                f.source.value,
                f.dataset,
                f.column,
                f.check_name,
                f.owner,
                f.tags,
            )
        )
    return issues, tuple(rejected)


def load_tool_file(
    sessions: sessionmaker[Session],
    path: Path,
    fmt: LoadFormat,
    set_name: str,
    *,
    snapshot: bool,
    nightly: bool,
    manifest: Path | None,
    mapping: PriorityMap | None,
    max_detail_chars: int,
    max_text_chars: int,
) -> ToolLoad:
    """Parse ``path`` and store its findings into the set; a file with no failing check stores nothing
    unless it is a snapshot (which then resolves every open check of the set)."""
    parsed = parse_file(path, fmt, manifest)
    issues, rejected = to_issues(parsed, mapping, max_detail_chars, max_text_chars)
    stored = None
    if issues or snapshot:
        stored = load_tool_issues(sessions, set_name, issues, snapshot=snapshot, nightly=nightly)
    return ToolLoad(fmt.value, path, parsed, stored, rejected)


def read_snapshot_rows(
    path: Path, fmt: LoadFormat, max_text_chars: int
) -> tuple[list[ToolIssue], list[ingest.Rejection]]:
    """A CSV/JSONL file's rows as issues for a snapshot, and its rejected rows; a snapshot row needs an
    ``external_id`` (the identity that says which checks are gone)."""
    issues: list[ToolIssue] = []
    rejected: list[ingest.Rejection] = []
    try:
        with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as lines:
            for outcome in ingest.check_rows(
                ingest.read_rows(lines, fmt.value), max_text_chars=max_text_chars
            ):
                if isinstance(outcome, ingest.Rejection):
                    rejected.append(outcome)
                elif outcome.external_id is None:
                    rejected.append(ingest.Rejection(outcome.line, "a --snapshot row needs an external_id"))
                else:
                    issues.append(
                        ToolIssue(
                            outcome.external_id,
                            outcome.priority,
                            outcome.text,
                            None,
                            None,
                            None,
                            None,
                            None,
                            (),
                        )
                    )
    except OSError as exc:
        raise IngestError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return issues, rejected


def _open(path: Path) -> IO[str]:
    try:
        return path.open(encoding="utf-8-sig", errors="replace", newline="")
    except OSError as exc:
        raise IngestError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _is_jsonl(path: Path) -> bool:
    """True when the file's first line is a whole JSON object and more lines follow (JSON Lines)."""
    with _open(path) as handle:
        first = handle.readline()
        second = handle.readline()
    try:
        json.loads(first)
    except ValueError:
        return False
    return bool(second.strip())


def _read_json(path: Path) -> object:
    with _open(path) as handle:
        try:
            return json.load(handle)
        except ValueError as exc:
            raise IngestError(
                f"{path.name} is not valid JSON (truncated or damaged?): {exc}; nothing was loaded"
            ) from exc


def _read_object(path: Path) -> dict[str, object]:
    document = _read_json(path)
    if not isinstance(document, dict):
        raise IngestError(f"{path.name} holds a JSON {type(document).__name__}, not a result object")
    return document


def _table_rows(path: Path) -> Iterator[Mapping[str, object]]:
    with _open(path) as handle:
        if handle.read(1) == "{":
            handle.seek(0)
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError as exc:
                        raise IngestError(f"{path.name} line {number}: not valid JSON: {exc}") from exc
            return
        handle.seek(0)
        previous = csv.field_size_limit(TOOL_FIELD_MAX_CHARS)
        reader = csv.DictReader(handle)
        try:
            yield from reader
        except csv.Error as exc:
            raise IngestError(
                f"{path.name} line {reader.line_num + 1}: {exc} "
                f"({TOOL_FIELD_MAX_CHARS:,} characters at most); nothing was loaded"
            ) from exc
        finally:
            csv.field_size_limit(previous)
