"""AttemptGates: after an attempt every gate is settled, even when one of them raises."""

from __future__ import annotations

import datetime as dt

from budgetq.domain.calls import Attempt, CallRequest
from budgetq.domain.statuses import CallOutcome
from worker.gates import AttemptGates


class Recording:
    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
        self.settled: list[int] = []

    def before_attempt(self, request: CallRequest) -> None:
        pass

    def after_attempt(self, request: CallRequest, attempt: Attempt) -> None:
        self.settled.append(attempt.number)
        if self.broken:
            raise OverflowError("cannot convert float infinity to integer")

    def cancel(self, request: CallRequest) -> None:
        pass


def test_a_gate_that_raises_after_a_reply_neither_skips_the_others_nor_escapes() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    spend, limiter = Recording(), Recording(broken=True)
    request = CallRequest(model="m", system="s", user="u", max_tokens=10, estimated_input_tokens=5)
    attempt = Attempt(number=1, started_at=now, finished_at=now, outcome=CallOutcome.OK, http_status=200)

    AttemptGates(spend, limiter).after_attempt(request, attempt)

    assert limiter.settled == [1] and spend.settled == [1]
