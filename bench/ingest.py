"""Ingest and token-count speed on 1M issues: the real loader against a plain COPY, the bulk counter
against plain tiktoken, all measured in the same run on the same rows.

Run: ``uv run python bench/ingest.py [--rows N]``. It writes N issues (seed-scenario sentences,
lognormal lengths, fixed seed) to a CSV in a temporary folder, loads them into PostgreSQL through
``budgetq load``'s code path (BUDGETQ_DATABASE_URL when set, which must be migrated; else an
embedded server in the temporary folder), COPYs the same file into a table of the same shape, then
counts the texts' tokens. One untimed COPY runs first, so that the loader and the plain COPY both meet
a server that has already created its WAL files. The last line is one JSON object with keys rows, rows_per_s,
raw_copy_rows_per_s, tokens_per_s, raw_tiktoken_tokens_per_s.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import tiktoken
from sqlalchemy import delete
from sqlalchemy.engine import make_url

from budgetq.adapters.store.engine import (
    ensure_migrated,
    make_engine,
    make_sessions,
    sqlalchemy_url,
    transaction,
    upgrade,
)
from budgetq.adapters.store.models import IssueSet
from budgetq.cli.load import load_path
from budgetq.devtools.embedded import start_postgres
from budgetq.devtools.scenario import seed_issues
from budgetq.domain.tokens import ENCODING_NAME
from budgetq.services.counting import count_texts
from budgetq.services.planning import count_tokens
from budgetq.settings import Settings

SEED = 20261129
PRIORITIES = (15, 10, 10, 5, 5, 5, 1)


def write_issues(path: Path, rows: int) -> None:
    """``rows`` issues: 1 to 40 seed sentences each (lognormal, median 1), as CSV with a header."""
    sentences = [issue.text for issue in seed_issues()]
    rng = random.Random(SEED)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["external_id", "priority", "text"])
        for i in range(rows):
            k = max(1, min(40, round(rng.lognormvariate(0.0, 0.6))))
            text = " ".join(rng.choice(sentences) for _ in range(k))
            writer.writerow([f"dq-{i:08d}", rng.choice(PRIORITIES), text])


def read_texts(path: Path) -> list[str]:
    """The text column of the CSV."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        return [row[2] for row in reader]


def plain_copy(url: str, path: Path) -> float:
    """Seconds for a plain COPY of the CSV into a new table shaped like ``issues`` (same indexes)."""
    driver_url = (
        make_url(sqlalchemy_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    with psycopg.connect(driver_url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_plain_copy")
        conn.execute("CREATE TABLE bench_plain_copy (LIKE issues INCLUDING ALL)")
        conn.execute("ALTER TABLE bench_plain_copy ALTER set_id SET DEFAULT 0, ALTER chars SET DEFAULT 0")
        conn.commit()
        try:
            started = time.perf_counter()
            with conn.cursor() as cursor, path.open("rb") as handle:
                statement = (
                    "COPY bench_plain_copy (external_id, priority, text) FROM STDIN (FORMAT csv, HEADER)"
                )
                with cursor.copy(statement) as copy:
                    while chunk := handle.read(1 << 20):
                        copy.write(chunk)
            conn.commit()
            return time.perf_counter() - started
        finally:
            conn.execute("DROP TABLE IF EXISTS bench_plain_copy")
            conn.commit()


class CpuMeter:
    """CPU seconds of this process and, for the embedded server, of all PostgreSQL's processes: contention
    from other work on the machine stretches wall time, not these."""

    def __init__(self, pgdata: Path | None) -> None:
        self.pgdata = pgdata

    def client(self) -> float:
        """CPU seconds of this process (all its threads) so far."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def children(self) -> float:
        """CPU seconds of this process's ended children (the bulk counter's forked workers) so far."""
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def server(self) -> float | None:
        """CPU seconds of the embedded server's processes so far (ended backends included); None if remote."""
        if self.pgdata is None:
            return None
        postmaster = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process ended while we looked
            pid, ppid = int(stat.parent.name), int(fields[1])
            if pid == postmaster:
                # utime, stime, and the CPU of its ended children (backends that closed)
                total += sum(int(f) for f in fields[11:15]) / tick
            elif ppid == postmaster:
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def describe(self, client_s: float, server_s: float | None, rows: int) -> str:
        """The CPU a phase used, and what that allows on two idle cores (client and server in parallel)."""
        if server_s is None:
            return f"client CPU {client_s:.1f}s"
        bound = max(client_s, server_s, (client_s + server_s) / 2)
        return (
            f"client CPU {client_s:.1f}s, server CPU {server_s:.1f}s: on two idle cores at most "
            f"{rows / bound:,.0f} rows/s"
        )


def tiktoken_loop(texts: list[str]) -> tuple[int, float]:
    """(tokens, seconds) of plain tiktoken: one ``encode_ordinary`` after another in this thread."""
    encode = tiktoken.get_encoding(ENCODING_NAME).encode_ordinary
    started = time.perf_counter()
    total = sum(len(encode(text)) for text in texts)
    return total, time.perf_counter() - started


def run(rows: int, folder: Path) -> dict[str, Any]:
    """Every measurement, printed as it is made; returns the figures."""
    settings = Settings()
    csv_path = folder / "issues.csv"
    started = time.perf_counter()
    write_issues(csv_path, rows)
    print(
        f"wrote {rows:,} issues ({csv_path.stat().st_size / 1e6:,.0f} MB) "
        f"in {time.perf_counter() - started:.1f}s"
    )
    handle = None
    url = settings.database_url
    meter = CpuMeter(None)
    if url is None:
        url, handle = start_postgres(folder)
        upgrade(url)
        meter = CpuMeter(folder / "pg")
        print("embedded PostgreSQL in a temporary folder")
    engine = make_engine(url, pool_size=2)
    ensure_migrated(engine)
    sessions = make_sessions(engine)
    set_name = f"bench-ingest-{os.getpid()}-{time.time_ns()}"
    try:
        # A new server pays for creating its WAL segment files on its first big write, which a server
        # that has run for a while does not; an untimed COPY first puts both timed loads on equal terms.
        warm_s = plain_copy(url, csv_path)
        print(f"warm-up (untimed in the figures): plain COPY in {warm_s:.2f}s")
        client, server = meter.client(), meter.server()
        started = time.perf_counter()
        report = load_path(sessions, csv_path, set_name, max_text_chars=settings.ingest_max_text_chars)
        load_s = time.perf_counter() - started
        assert report.loaded == rows and not report.rejected, report
        print(f"budgetq load: {rows:,} rows in {load_s:.2f}s = {rows / load_s:,.0f} rows/s")
        print("  " + meter.describe(meter.client() - client, _delta(meter.server(), server), rows))
        client, server = meter.client(), meter.server()
        copy_s = plain_copy(url, csv_path)
        print(f"plain COPY of the same file: {copy_s:.2f}s = {rows / copy_s:,.0f} rows/s")
        print("  " + meter.describe(meter.client() - client, _delta(meter.server(), server), rows))

        texts = read_texts(csv_path)
        client, children = meter.client(), meter.children()
        started = time.perf_counter()
        counts = count_texts(texts)
        count_s = time.perf_counter() - started
        parent_cpu, workers_cpu = meter.client() - client, meter.children() - children
        tokens = sum(counts)
        print(
            f"bulk counter (budgetq.services.counting): {tokens:,} tokens in {count_s:.2f}s "
            f"= {tokens / count_s:,.0f} tokens/s"
        )
        busiest = max(parent_cpu, (parent_cpu + workers_cpu) / 2)
        print(
            f"  CPU {parent_cpu:.1f}s here + {workers_cpu:.1f}s in its worker processes: on two idle cores "
            f"at most {tokens / busiest:,.0f} tokens/s"
        )
        client = meter.client()
        raw_tokens, raw_s = tiktoken_loop(texts)
        raw_cpu = meter.client() - client
        assert raw_tokens == tokens
        print(f"plain tiktoken loop, one thread: {raw_s:.2f}s = {raw_tokens / raw_s:,.0f} tokens/s")
        print(f"  CPU {raw_cpu:.1f}s: {raw_tokens / raw_cpu:,.0f} tokens per CPU second")
        del texts, counts

        assert report.set_id is not None
        started = time.perf_counter()
        counted = count_tokens(sessions, report.set_id)
        print(
            f"planning's count_tokens (read texts, count, COPY the counts): {counted:,} issues in "
            f"{time.perf_counter() - started:.2f}s"
        )
        started = time.perf_counter()
        again = count_tokens(sessions, report.set_id)
        print(f"count_tokens again: {again} issues counted in {time.perf_counter() - started:.2f}s")
    finally:
        with transaction(sessions) as session:
            session.execute(delete(IssueSet).where(IssueSet.name == set_name))
        engine.dispose()
        del handle
    return {
        "rows": rows,
        "rows_per_s": round(rows / load_s),
        "raw_copy_rows_per_s": round(rows / copy_s),
        "tokens_per_s": round(tokens / count_s),
        "raw_tiktoken_tokens_per_s": round(raw_tokens / raw_s),
    }


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def main() -> None:
    """Run the benchmark and end with one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="issues to generate (default 1M)")
    args = parser.parse_args()
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="budgetq-bench-ingest-") as folder:
        figures = run(args.rows, Path(folder))
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(json.dumps(figures))


if __name__ == "__main__":
    # The bulk counter's worker processes start from a fork server, which imports this module again.
    main()
