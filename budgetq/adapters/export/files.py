"""Exported rows as CSV, JSON Lines or Parquet, to a stream or to a file written whole or not at all.

A file is written beside its target under a temporary name and renamed over it once complete, so a
failed or interrupted export never leaves a half-written file where a reader expects a whole one.
Text is UTF-8 and non-ASCII is kept as is (no ``\\u`` escapes).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from budgetq.errors import ExportError

PARQUET_ROWS = 5000  # rows per Parquet row group, so a large export streams


class Format(StrEnum):
    """The export formats."""

    TABLE = "table"
    CSV = "csv"
    JSONL = "jsonl"
    PARQUET = "parquet"


def _plain(value: Any) -> Any:
    """A JSON or CSV value: timestamps in ISO 8601, exact decimals as their digits (no float rounding)."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def write_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], out: IO[str]) -> int:
    """Write a header and ``rows`` as CSV; return how many rows were written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    n = 0
    for row in rows:
        writer.writerow(["" if row[c] is None else _plain(row[c]) for c in columns])
        n += 1
    return n


def write_jsonl(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], out: IO[str]) -> int:
    """Write one JSON object per line (keys in ``columns`` order); return how many rows were written."""
    n = 0
    for row in rows:
        out.write(json.dumps({c: _plain(row[c]) for c in columns}, ensure_ascii=False) + "\n")
        n += 1
    return n


def _schema(columns: Sequence[str]) -> Any:
    import pyarrow as pa

    kinds = {
        "issue_id": pa.int64(),
        "priority": pa.int16(),
        "confidence": pa.float64(),
        "run_id": pa.int64(),
        "answered_at": pa.timestamp("us", tz="UTC"),
        "cost_usd": pa.decimal128(18, 6),
        "reused_from_run_id": pa.int64(),
        "reused_from_answered_at": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema([(c, kinds.get(c, pa.string())) for c in columns])


def write_parquet(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], path: Path) -> int:
    """Write ``rows`` to a Parquet file at ``path`` in row groups; return how many rows were written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema(columns)
    n = 0
    with pq.ParquetWriter(path, schema) as writer:
        chunk: list[Mapping[str, Any]] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) == PARQUET_ROWS:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                n, chunk = n + len(chunk), []
        if chunk or n == 0:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
            n += len(chunk)
    return n


@contextlib.contextmanager
def whole_file(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target``, renamed over it when the block ends without error (and
    removed when it fails); ExportError when the folder cannot be written."""
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise ExportError(f"cannot write {str(target)!r}: it is a folder; give a file name with -o")
    try:
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise ExportError(f"cannot write {str(target)!r}: {exc.strerror}; choose another -o path") from exc
    os.close(handle)
    part = Path(name)
    try:
        yield part
        os.replace(part, target)
    except OSError as exc:
        raise ExportError(f"cannot write {str(target)!r}: {exc.strerror}; choose another -o path") from exc
    finally:
        part.unlink(missing_ok=True)
