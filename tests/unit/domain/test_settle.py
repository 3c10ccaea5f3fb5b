"""What an answer means for its batch (domain.settle.judge), shared by the sync and batch-api paths."""

from __future__ import annotations

import pytest

from budgetq.domain.settle import Step, judge

IDS = (11, 12, 13)


def _entry(issue_id: int) -> dict[str, object]:
    return {
        "issue_id": issue_id,
        "category": "null_values",
        "diagnosis": "The upstream export writes empty strings where ids are missing.",
        "proposed_fix": "SELECT count(*) FROM t WHERE id IS NULL;",
        "confidence": 0.8,
    }


def test_a_complete_answer_completes_the_batch() -> None:
    verdict = judge({"diagnoses": [_entry(i) for i in IDS]}, "tool_use", IDS)
    assert verdict.step is Step.COMPLETE
    assert [a.issue_id for a in verdict.answers] == list(IDS)
    assert verdict.missing == () and not verdict.split_missing


def test_a_partial_answer_completes_what_it_answered_and_leaves_the_rest_missing() -> None:
    verdict = judge({"diagnoses": [_entry(11), _entry(99)]}, "tool_use", IDS)
    assert verdict.step is Step.COMPLETE
    assert [a.issue_id for a in verdict.answers] == [11]
    assert verdict.missing == (12, 13) and verdict.invented == (99,)
    assert not verdict.split_missing


def test_an_overflowing_answer_keeps_its_complete_entries_and_halves_the_rest() -> None:
    verdict = judge({"diagnoses": [_entry(11)]}, "max_tokens", IDS)
    assert verdict.step is Step.COMPLETE and verdict.split_missing and verdict.missing == (12, 13)


@pytest.mark.parametrize(
    ("tool_input", "stop_reason", "step"),
    [
        (None, "max_tokens", Step.SPLIT),  # overflow before any tool input: halve
        (None, "refusal", Step.SPLIT),  # a refusal is about some issue: halving isolates it
        (None, "end_turn", Step.RETRY),  # prose instead of the tool: ask again
        ({"diagnoses": [{"issue_id": 11}]}, "tool_use", Step.RETRY),  # no valid entry
        ({"diagnoses": [{"issue_id": 11}]}, "model_context_window_exceeded", Step.SPLIT),
    ],
)
def test_an_unusable_answer_splits_or_retries_with_a_reason(
    tool_input: object, stop_reason: str, step: Step
) -> None:
    verdict = judge(tool_input, stop_reason, IDS)
    assert verdict.step is step
    assert verdict.reason and verdict.answers == ()


def test_halves_of_an_exhausted_batch_get_one_try_and_single_issues_their_own_tries() -> None:
    from budgetq.domain.settle import Next, after_failure, half_failures

    decision = after_failure(2, 3, 8, "no valid entry")
    assert decision.next is Next.SPLIT and decision.inherited == 2
    assert half_failures(decision.inherited, 4) == 2
    assert half_failures(decision.inherited, 1) == 0
    assert after_failure(2, 3, 4, "no valid entry").next is Next.SPLIT  # its first failure splits again
