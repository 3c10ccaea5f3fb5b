"""A PostgreSQL host that accepts the connection but never answers ends a command in one line, in
seconds (issue 17, point 7)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def silent_host() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts every connection and never sends a byte; closed at the end."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


@pytest.mark.parametrize(
    "args", [("plan", "nightly"), ("report", "cost"), ("db", "upgrade"), ("db", "query", "SELECT 1")]
)
def test_a_database_that_never_answers_is_one_line_within_seconds(
    silent_host: int, tmp_path: Path, args: tuple[str, ...]
) -> None:
    # Given a database URL whose host accepts the connection and then says nothing, a 2 s connect timeout
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BUDGETQ_", "ANTHROPIC_"))},
        "BUDGETQ_DATABASE_URL": f"postgresql://budgetq:s3cret-pw@127.0.0.1:{silent_host}/budgetq",
        "BUDGETQ_REDIS_URL": "redis://127.0.0.1:1/0",
        "BUDGETQ_DATA_DIR": str(tmp_path),
        "BUDGETQ_DB_CONNECT_TIMEOUT_S": "2",
    }
    # When a command that needs the database runs (bounded: the old code hung here past 60 s)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", "from budgetq.cli import main; main()", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=45,
    )
    elapsed = time.monotonic() - started

    # Then it ends within seconds, exit 2, with one error line naming the timeout and not the password
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert lines[-1].startswith("error: ") and [x for x in lines if x.startswith("error: ")] == [lines[-1]]
    assert "cannot reach PostgreSQL" in lines[-1] and "timeout" in lines[-1], lines[-1]
    assert "Traceback" not in done.stderr and "s3cret-pw" not in done.stderr
    assert elapsed < 30, elapsed
