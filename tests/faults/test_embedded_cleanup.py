"""What `budgetq demo` and a test session start they also stop: no embedded server left running with
parent pid 1 and no temp folder left in /tmp, after a clean end, Ctrl-C or an error (issue 17, point 8)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix).resolve()


# Every process the command under test starts inherits this variable; tests running beside this one
# (pytest-xdist) start workers and servers of their own, which must not count as left behind.
MARK = "BUDGETQ_CLEANUP_TEST_MARK"


def _ours(since: float, data_dir: Path) -> list[psutil.Process]:
    """Processes started since ``since`` by the command this test ran: those that carry its mark in
    their environment, or its data dir in their command line (redis-server and postgres write their
    titles over their environment), and their children."""
    found: dict[int, psutil.Process] = {}
    candidates = []
    for proc in psutil.process_iter(["create_time", "cmdline", "ppid"]):
        try:
            if proc.info["create_time"] < since - 1 or proc.pid == os.getpid():
                continue
            candidates.append(proc)
            if str(data_dir) in " ".join(proc.info["cmdline"] or []) or proc.environ().get(MARK) == str(
                data_dir
            ):
                found[proc.pid] = proc
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    grew = True
    while grew:  # children of ours (postgres' own processes) are ours
        grew = False
        for proc in candidates:
            if proc.pid not in found and proc.info["ppid"] in found:
                found[proc.pid] = proc
                grew = True
    return list(found.values())


def _left_behind(since: float, data_dir: Path) -> list[str]:
    """What a command started and left: its processes still alive, and their temp folders."""
    deadline = time.monotonic() + 10  # a server shutting down may take a moment to go
    while True:
        alive = [p for p in _ours(since, data_dir) if _alive(p)]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    left = [f"pid {p.pid} (ppid {p.info['ppid']}): {' '.join(p.info['cmdline'] or [])}" for p in alive]
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    return left


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _env(data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BUDGETQ_", "ANTHROPIC_", "PYTEST_")) and k != "TMPDIR"
    }
    return {**env, "BUDGETQ_DATA_DIR": str(data_dir), MARK: str(data_dir), "TMPDIR": str(data_dir / TMP)}


# The command's TMPDIR, where its embedded Redis makes its temp folder: one of this test's own, so a
# folder another test leaves meanwhile is not counted (under the data dir, whose path is short enough
# for the Redis socket's 108 bytes).
TMP = "t"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A short data folder for the command under test (Unix socket paths are limited to 108 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="bqc-", dir="/tmp"))
    (folder / TMP).mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _temp_folders(data_dir: Path) -> set[str]:
    return {
        str(p)
        for p in (data_dir / TMP).glob("tmp*")
        if (p / "redis.socket").exists() or (p / "redis.db").exists()
    }


def test_the_demo_leaves_no_process_and_no_temp_folder(data_dir: Path) -> None:
    # Given nothing configured: the demo starts embedded PostgreSQL and Redis, the stand-in and a worker
    before, started = _temp_folders(data_dir), time.time()

    # When it runs to its end
    done = subprocess.run(
        [str(VENV / "bin" / "budgetq"), "demo"],
        env=_env(data_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )

    # Then it succeeded, and nothing it started is still running and no temp folder of its Redis is left
    assert done.returncode == 0, done.stderr
    assert _left_behind(started, data_dir) == []
    assert _temp_folders(data_dir) - before == set()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_demo_stopped_midway_leaves_no_process(data_dir: Path, sig: signal.Signals) -> None:
    # Given the demo running on embedded servers
    before, started = _temp_folders(data_dir), time.time()
    demo = subprocess.Popen(
        [str(VENV / "bin" / "budgetq"), "demo"],
        env=_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # When it is interrupted (Ctrl-C) or terminated once its servers are up
    deadline = time.monotonic() + 120
    while (
        not any("redis-server" in " ".join(p.info["cmdline"] or []) for p in _ours(started, data_dir))
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    time.sleep(2)
    demo.send_signal(sig)
    out, _ = demo.communicate(timeout=120)

    # Then it ended without a traceback and left nothing running and no temp folder
    assert demo.returncode != 0
    assert "Traceback" not in out, out
    assert _left_behind(started, data_dir) == []
    assert _temp_folders(data_dir) - before == set()


def test_a_test_session_on_embedded_servers_leaves_no_process(data_dir: Path) -> None:
    # Given a test session with no test servers configured (its fixtures start embedded ones)
    before, started = _temp_folders(data_dir), time.time()
    env = {k: v for k, v in _env(data_dir).items() if not k.startswith("BUDGETQ_TEST_")}

    # When it runs a test that needs PostgreSQL and Redis, and ends
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",
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
    assert _left_behind(started, data_dir) == []
    assert _temp_folders(data_dir) - before == set()
