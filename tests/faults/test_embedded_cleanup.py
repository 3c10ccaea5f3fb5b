"""What `budgetq demo` and a test session start they also stop: no embedded server left running with
parent pid 1 and no temp folder left in /tmp, after a clean end, Ctrl-C or an error (issue 17, point 8)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix).resolve()


def _ours(since: float) -> list[psutil.Process]:
    """Processes of this checkout's environment (embedded redis-server, postgres and workers) started
    since ``since``; other checkouts on the machine have other environments."""
    found = []
    for proc in psutil.process_iter(["cmdline", "exe", "create_time"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["exe"] or "")
            if proc.info["create_time"] >= since - 1 and str(VENV) in text and proc.pid != os.getpid():
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _left_behind(since: float, data_dir: Path) -> list[str]:
    """What a command started and left: its processes still alive, and their temp folders."""
    deadline = time.monotonic() + 10  # a server shutting down may take a moment to go
    while True:
        alive = [p for p in _ours(since) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    left = [f"pid {p.pid} (ppid {p.ppid()}): {' '.join(p.cmdline())}" for p in alive]
    for p in alive:
        p.kill()
    return left


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUDGETQ_", "ANTHROPIC_"))}
    return {**env, "BUDGETQ_DATA_DIR": str(data_dir)}


def _temp_folders() -> set[str]:
    return {
        str(p)
        for p in Path("/tmp").glob("tmp*")
        if (p / "redis.socket").exists() or (p / "redis.db").exists()
    }


def test_the_demo_leaves_no_process_and_no_temp_folder(tmp_path: Path) -> None:
    # Given nothing configured: the demo starts embedded PostgreSQL and Redis, the stand-in and a worker
    before, started = _temp_folders(), time.time()

    # When it runs to its end
    done = subprocess.run(
        [str(VENV / "bin" / "budgetq"), "demo"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )

    # Then it succeeded, and nothing it started is still running and no temp folder of its Redis is left
    assert done.returncode == 0, done.stderr
    assert _left_behind(started, tmp_path) == []
    assert _temp_folders() - before == set()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_demo_stopped_midway_leaves_no_process(tmp_path: Path, sig: signal.Signals) -> None:
    # Given the demo running on embedded servers
    before, started = _temp_folders(), time.time()
    demo = subprocess.Popen(
        [str(VENV / "bin" / "budgetq"), "demo"],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # When it is interrupted (Ctrl-C) or terminated once its servers are up
    deadline = time.monotonic() + 120
    while (
        not any("redis-server" in " ".join(p.cmdline()) for p in _ours(started))
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    time.sleep(2)
    demo.send_signal(sig)
    out, _ = demo.communicate(timeout=120)

    # Then it ended without a traceback and left nothing running and no temp folder
    assert demo.returncode != 0
    assert "Traceback" not in out, out
    assert _left_behind(started, tmp_path) == []
    assert _temp_folders() - before == set()


def test_a_test_session_on_embedded_servers_leaves_no_process(tmp_path: Path) -> None:
    # Given a test session with no test servers configured (its fixtures start embedded ones)
    before, started = _temp_folders(), time.time()
    env = {k: v for k, v in _env(tmp_path).items() if not k.startswith("BUDGETQ_TEST_")}

    # When it runs a test that needs PostgreSQL and Redis, and ends
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/integration/ratelimit/test_redis_limiter.py",
            "tests/integration/store/test_spend_caps.py",
            "-x",
            "-k",
            "not slow",
            "--maxfail=1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    # Then it passed and left nothing running and no temp folder
    assert done.returncode == 0, done.stdout[-2000:]
    assert _left_behind(started, tmp_path) == []
    assert _temp_folders() - before == set()
