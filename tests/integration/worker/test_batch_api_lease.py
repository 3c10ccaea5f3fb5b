"""A batch-api submission that outlives its lease never sends the same batches in a second Message
Batch: the submitter renews its claims as it goes and checks them when a Message Batch is opened
(docs/batch-api.md, "Submitting")."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store import batches as store
from budgetq.adapters.store.engine import transaction
from budgetq.services.planning import plan_run
from budgetq.settings import Settings
from scheduler.reaper import reap_once
from tests.integration.pipeline import make_seed_set
from tests.integration.worker.inline import InlineQueue
from worker.batch_api.context import BatchApiContext
from worker.batch_api.submit import Submitter, _Admitted
from worker.resources import Resources

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_a_submission_past_its_lease_does_not_send_its_batches_twice(
    sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    # Given a batch-api run, and submissions whose lease (1 s) is shorter than their work
    settings = test_settings.model_copy(
        update={"message_batch_submit_lease_s": 1.0, "max_issues_per_call": 10}
    )
    set_id = make_seed_set(sessions, f"lease-{uuid.uuid4().hex[:8]}", 40)
    planned = plan_run(sessions, settings, set_id, kind="manual", api_mode="batch-api")
    assert planned.run_id is not None and len(planned.batch_ids) > 1
    queue = InlineQueue()
    api = BatchApiContext(Resources(settings, queue))  # type: ignore[arg-type]
    run_id = planned.run_id

    class Slow(Submitter):
        """The first submission stalls past its lease after its guard; meanwhile the reaper runs
        and the next poll's submission takes what the reaper gave back."""

        stalled = False

        def _admit(self, claims: Sequence[store.Claim]) -> Iterable[_Admitted]:
            admitted = list(super()._admit(claims))
            if not Slow.stalled:
                Slow.stalled = True
                time.sleep(1.5)
                reap_once(sessions, queue, settings)  # type: ignore[arg-type]
                Submitter(api).submit(run_id)
            return admitted

    # When the slow submission goes on after the stall
    Slow(api).submit(run_id)

    # Then every batch went out in exactly one created Message Batch
    with transaction(sessions) as session:
        sent = session.execute(
            text(
                "SELECT r.batch_id, count(*) AS times FROM message_batch_requests r "
                "JOIN message_batches m ON m.id = r.message_batch_id "
                "WHERE m.run_id = :run AND m.api_id IS NOT NULL GROUP BY r.batch_id"
            ),
            {"run": run_id},
        ).all()
    assert sorted(b for b, _ in sent) == sorted(planned.batch_ids)
    assert [b for b, times in sent if times > 1] == []
