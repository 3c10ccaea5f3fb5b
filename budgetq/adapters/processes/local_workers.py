"""Starting and stopping worker processes by command (the CLI never imports worker internals)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def worker_command(concurrency: int, queues: str = "llm", loglevel: str = "WARNING") -> list[str]:
    """A Celery worker on the threads pool, the pool LLM calls want (docs/architecture.md, "Workers")."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.app",
        "worker",
        "-P",
        "threads",
        "-c",
        str(concurrency),
        "-Q",
        queues,
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def start_worker(env: Mapping[str, str], concurrency: int, log_path: Path) -> subprocess.Popen[bytes]:
    """Start a worker process with ``env`` added to this environment; its output goes to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            worker_command(concurrency),
            cwd=PROJECT_ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """Stop a worker gracefully (SIGTERM: finish the current task), then kill it if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode
