"""Reuse keys (budgetq.domain.reuse): which issues are the same question."""

from __future__ import annotations

import pytest

from budgetq.domain.reuse import KeyedIssue, ReuseMode, carriers, mask_volatile, normalize, reuse_key

FAMILY = "claude-sonnet-4-6"


def key(text: str, mode: ReuseMode, external_id: str | None = None, **kw: str) -> str:
    return reuse_key(text, mode, model_family=kw.get("family", FAMILY), external_id=external_id)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Got 52 results, configured to fail if != 0", "Got <n> results, configured to fail if != <n>"),
        ("1,234 of 10,000 rows (12.3%) are null", "<n> of <n> rows (<n>%) are null"),
        ("failed on 2026-12-01T03:00:00Z and 2026-12-02", "failed on <date> and <date>"),
        ("orders_2024.col1 has -7 negative totals", "orders_2024.col1 has <n> negative totals"),
        ("v2.3 of model_x", "v2.3 of model_x"),
    ],
)
def test_masking_replaces_standalone_numbers_and_dates_but_keeps_names(text: str, masked: str) -> None:
    assert mask_volatile(text) == masked


def test_normalizing_folds_full_width_forms_and_whitespace() -> None:
    assert normalize("  not\u3000null\n on  ｏｒｄｅｒｓ ") == "not null on orders"


def test_text_mode_matches_only_the_same_words() -> None:
    assert key("52 rows failed", ReuseMode.TEXT) == key(" 52  rows failed ", ReuseMode.TEXT)
    assert key("52 rows failed", ReuseMode.TEXT) != key("57 rows failed", ReuseMode.TEXT)


def test_masked_mode_absorbs_a_changed_failing_count() -> None:
    assert key("52 rows failed on 2026-12-01", ReuseMode.MASKED) == key(
        "57 rows failed on 2026-12-02", ReuseMode.MASKED
    )
    assert key("52 rows failed in orders", ReuseMode.MASKED) != key(
        "52 rows failed in users", ReuseMode.MASKED
    )


def test_check_mode_needs_the_same_check() -> None:
    a = key("52 rows failed", ReuseMode.CHECK, "test.shop.not_null_orders_id")
    assert a == key("57 rows failed", ReuseMode.CHECK, "test.shop.not_null_orders_id")
    assert a != key("52 rows failed", ReuseMode.CHECK, "test.shop.unique_orders_id")


def test_keys_differ_across_modes_model_families_and_prompt_versions() -> None:
    text = "52 rows failed"
    keys = {key(text, mode) for mode in ReuseMode}
    assert len(keys) == 3
    assert key(text, ReuseMode.TEXT) != key(text, ReuseMode.TEXT, family="claude-haiku-5-5")
    assert reuse_key(text, ReuseMode.TEXT, model_family=FAMILY, prompt_version="p2") != key(
        text, ReuseMode.TEXT
    )


def test_duplicates_are_carried_by_the_highest_priority_then_the_earliest_issue() -> None:
    issues = [
        KeyedIssue(1, 5, "a"),
        KeyedIssue(2, 15, "a"),
        KeyedIssue(3, 15, "a"),
        KeyedIssue(4, 10, "b"),
        KeyedIssue(5, 1, "c"),
        KeyedIssue(6, 1, "c"),
    ]
    # Issue 2 carries key a (priority 15 before 5, id 2 before 3); 4 is alone; 5 carries c.
    assert carriers(issues) == {1: 2, 3: 2, 6: 5}


def test_no_duplicates_means_no_copies() -> None:
    assert carriers([KeyedIssue(i, 10, f"k{i}") for i in range(5)]) == {}
