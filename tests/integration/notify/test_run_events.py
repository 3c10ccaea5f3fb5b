"""Events the outbox records beside a run: a nightly set whose run did not start (the watch), and a
cancelled run's end; each once, whatever the number of times it is noticed."""

from __future__ import annotations

import datetime as dt
import uuid
from itertools import islice

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store import issues as issue_store
from budgetq.adapters.store import lifecycle
from budgetq.adapters.store.engine import transaction
from budgetq.devtools.scenario import seed_issues
from budgetq.domain.cron_fires import CronFields
from budgetq.services.notifying import watch_nightly
from budgetq.services.planning import plan_run
from budgetq.settings import Settings


def _nightly_set(sessions: sessionmaker[Session], name: str) -> int:
    with transaction(sessions) as session:
        set_id = issue_store.create_set(session, name, nightly=True)
        issue_store.insert_issues(
            session,
            set_id,
            (issue_store.NewIssue(i.priority, i.text, i.external_id) for i in islice(seed_issues(), 4)),
        )
        # Loaded well before the night's schedule fired.
        session.execute(
            text("UPDATE issue_sets SET created_at = now() - interval '2 days' WHERE id = :s"), {"s": set_id}
        )
    return set_id


def _told(sessions: sessionmaker[Session], kind: str, like: str) -> list[dict[str, object]]:
    with transaction(sessions) as session:
        return list(
            session.scalars(
                text("SELECT payload FROM notifications WHERE kind = :k AND dedupe_key LIKE :d ORDER BY id"),
                {"k": kind, "d": like},
            )
        )


def test_a_nightly_set_whose_run_did_not_start_is_told_once(
    sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    # Given two nightly sets; the schedule fired at 02:00 today and one of them got its run for tonight
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    fired = now - dt.timedelta(hours=2)
    fields = CronFields({fired.minute}, {fired.hour}, set(range(1, 32)), set(range(1, 13)), set(range(7)))
    missed_name, ran_name = f"nightly-missed-{uuid.uuid4().hex[:8]}", f"nightly-ran-{uuid.uuid4().hex[:8]}"
    missed, ran = _nightly_set(sessions, missed_name), _nightly_set(sessions, ran_name)
    plan_run(sessions, test_settings, ran, kind="nightly", nightly_date=fired.date())
    settings = test_settings.model_copy(update={"nightly_start_window_s": 3600.0})

    # When the watch looks once before the window has passed, then three times after
    early = watch_nightly(sessions, settings, fields, fired + dt.timedelta(minutes=30))
    seen = [watch_nightly(sessions, settings, fields, now) for _ in range(3)]

    # Then only the set without a run is reported, and only after the window, once, with its night
    assert early == []
    assert all(missed_name in found and ran_name not in found for found in seen), seen
    told = _told(sessions, "nightly_missed", f"nightly_missed:{missed}:%")
    assert len(told) == 1 and told[0]["night"] == fired.date().isoformat(), told
    assert not _told(sessions, "nightly_missed", f"nightly_missed:{ran}:%")


def test_a_cancelled_run_is_told_once_with_its_counts(
    sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    # Given a planned run nobody has worked on yet
    set_id = _nightly_set(sessions, f"cancelled-{uuid.uuid4().hex[:8]}")
    planned = plan_run(sessions, test_settings, set_id, kind="manual")
    assert planned.run_id is not None

    # When it is cancelled
    with transaction(sessions) as session:
        lifecycle.cancel_run(session, planned.run_id, "cancelled by a test")

    # Then its end is in the outbox once, every issue counted cancelled, with the reason
    told = _told(sessions, "run_ended", f"run_ended:{planned.run_id}")
    assert len(told) == 1, told
    assert told[0]["status"] == "cancelled" and told[0]["counts"] == {"cancelled": 4}
    assert told[0]["reason"] == "cancelled by a test"
