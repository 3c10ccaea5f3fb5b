"""PostgreSQL refuses connections for a while in the middle of a run."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from budgetq.reaping import ReapReport
from budgetq.store.db import make_engine, make_sessions, sqlalchemy_url
from tests.faults.conftest import Rig, assert_every_issue_ended_once, outcome, wait_until_settled
from tests.faults.tcp_proxy import TcpProxy

pytestmark = pytest.mark.faults


@pytest.fixture
def proxy(rig: Rig) -> Iterator[TcpProxy]:
    """A cuttable proxy in front of the rig's database; workers and the reaper connect through it."""
    url = make_url(sqlalchemy_url(rig.url))
    socket_dir = url.query.get("host")
    if socket_dir:
        target: str | tuple[str, int] = f"{socket_dir}/.s.PGSQL.{url.port or 5432}"
    else:
        target = (url.host or "127.0.0.1", url.port or 5432)
    server = TcpProxy(target)
    server.start()
    proxied = url.set(host="127.0.0.1", port=server.port, query={}).render_as_string(hide_password=False)
    rig.env["BUDGETQ_DATABASE_URL"] = proxied
    engine = make_engine(proxied, pool_size=4)
    rig.reaper_sessions = make_sessions(engine)
    yield server
    server.stop()
    engine.dispose()


def test_a_database_outage_mid_run_loses_nothing_and_duplicates_nothing(
    rig: Rig, proxy: TcpProxy, reaper: list[ReapReport]
) -> None:
    # Given a 600-issue run on two workers, whose calls take a second
    run_id, batch_ids = rig.plan(600, "pg-outage")
    rig.worker(4)
    rig.worker(4)
    deadline = time.monotonic() + 60
    while outcome(rig.sessions, run_id).answered < 100:
        assert time.monotonic() < deadline
        time.sleep(0.1)

    # When PostgreSQL refuses every connection for 6 s (longer than a lease) and then comes back
    proxy.stop()
    time.sleep(6)
    proxy.start()

    # Then the run completes: every issue answered exactly once or failed with a reason
    o = wait_until_settled(rig.sessions, run_id, timeout_s=90)
    assert_every_issue_ended_once(o)
    assert o.issues == 600
    # And the outage was felt: leases expired or messages were lost, and the reaper recovered them
    assert any(r.requeued or r.resent for r in reaper)
    print(o)
