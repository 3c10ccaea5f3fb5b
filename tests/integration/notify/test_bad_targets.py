"""Targets that cannot work: not a URL (refused at start with one line, the URL never shown), and a URL
nobody listens on (each try logged in redacted form, retried, then given up; never a traceback)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.notify.targets import parse_targets
from budgetq.adapters.processes import local_workers as processes
from budgetq.adapters.store import outbox
from budgetq.adapters.store.engine import transaction
from budgetq.services.notifying import deliver_due
from budgetq.settings import Settings
from tests.integration.conftest import Budgetq

SECRET = "T0AAAA/B0BBBB/xoxSECRETxyz"
NOT_A_URL = f"hooks.slack.com/services/{SECRET}"


def test_a_target_that_is_not_a_url_is_one_error_line_of_the_cli_without_the_url(
    run_budgetq: Budgetq, database_url: str
) -> None:
    # When any command starts with a target that is not a URL, beside a good one
    outcome = run_budgetq(
        "runs",
        BUDGETQ_DATABASE_URL=database_url,
        BUDGETQ_NOTIFY_URLS=f"https://hooks.slack.com/services/{SECRET}, {NOT_A_URL}",
    )

    # Then it says which target and how to write one, in one line, and never prints the URLs
    line = outcome.one_error_line("BUDGETQ_NOTIFY_URLS", "target 2 of 2 is not an http(s) URL")
    assert SECRET not in outcome.stderr + outcome.stdout, line


def test_a_scheduler_started_with_a_bad_target_exits_with_one_line(
    database_url: str, broker_url: str
) -> None:
    # When the scheduler process starts with a target that is not a URL
    env = {**os.environ, "BUDGETQ_DATABASE_URL": database_url, "BUDGETQ_REDIS_URL": broker_url}
    env["BUDGETQ_NOTIFY_URLS"] = NOT_A_URL
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "scheduler.app",
        "worker",
        "-Q",
        "scheduler",
        "-P",
        "threads",
    ]
    done = subprocess.run(
        command, env=env, cwd=processes.PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )

    # Then it exits at once with the one line, no traceback, no URL
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0 and lines[-1].startswith("error: bad setting BUDGETQ_NOTIFY_URLS"), (
        done.stderr
    )
    assert "Traceback" not in done.stderr and SECRET not in done.stderr + done.stdout


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_target_nobody_listens_on_is_retried_logged_redacted_and_given_up(
    sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    # Given a notification and a target on a port nobody listens on, two tries allowed
    stamp = dt.datetime.now(dt.UTC)
    with transaction(sessions) as session:
        key = -int(uuid.uuid4().int % 10**9)
        assert outbox.record_nightly_missed(session, key, "gone", stamp.date(), stamp, 60)
        notification = session.scalar(text("SELECT max(id) FROM notifications"))
    url = f"json+http://127.0.0.1:{_closed_port()}/hooks/{SECRET}"
    targets = parse_targets(SecretStr(url))
    settings = Settings(
        database_url="unused", notify_max_attempts=2, notify_retry_base_s=0.1, notify_retry_max_s=0.2
    )

    # When two delivery passes run, the second after the retry delay
    caplog.set_level(logging.INFO, logger="budgetq.notify")
    first = deliver_due(sessions, settings, targets)
    time.sleep(0.5)
    second = deliver_due(sessions, settings, targets)

    # Then the first try is retried and the second given up, each logged with the redacted target only
    assert (first.retrying, second.failed) == (1, 1), (first, second)
    logged = caplog.text
    assert f"notification {notification} (nightly_missed) to json http://127.0.0.1:" in logged
    assert "could not reach it (ConnectError)" in logged and "given up" in logged
    assert SECRET not in logged and "/hooks" not in logged
    with transaction(sessions) as session:
        row = session.execute(
            text(
                "SELECT status, attempts, last_error FROM notification_deliveries WHERE notification_id = :n"
            ),
            {"n": notification},
        ).one()
    assert (row.status, row.attempts) == ("failed", 2) and SECRET not in (row.last_error or "")


def test_budgetq_notifications_lists_the_outbox_with_targets_redacted(
    run_budgetq: Budgetq, database_url: str, sessions: sessionmaker[Session]
) -> None:
    # Given a notification delivered once to a target that failed
    stamp = dt.datetime.now(dt.UTC)
    with transaction(sessions) as session:
        assert outbox.record_nightly_missed(
            session, -int(uuid.uuid4().int % 10**9), "listed", stamp.date(), stamp, 60
        )
    url = f"json+http://127.0.0.1:{_closed_port()}/hooks/{SECRET}"
    settings = Settings(database_url="unused", notify_max_attempts=1)
    deliver_due(sessions, settings, parse_targets(SecretStr(url)))

    # When the outbox is listed with the same setting
    listed = run_budgetq(
        "notifications", "--json", BUDGETQ_DATABASE_URL=database_url, BUDGETQ_NOTIFY_URLS=url
    )

    # Then the delivery shows, failed, with its target's redacted name and never its URL
    assert listed.code == 0, listed
    rows = [r for r in map(json.loads, listed.stdout.splitlines()) if r["kind"] == "nightly_missed"]
    failed = [r for r in rows if r["status"] == "failed" and r["target"].startswith("json http://127.0.0.1:")]
    assert failed and "could not reach it" in failed[0]["last_error"], rows
    assert SECRET not in listed.stdout
