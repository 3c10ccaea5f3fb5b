"""The HTML report page: self-contained (no address outside it), escaped, and whole when a period is empty."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

from budgetq.adapters.html.page import render
from budgetq.adapters.store.dashboard import Dashboard

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def _page(**sections: tuple[dict[str, object], ...]) -> str:
    return render(Dashboard(since=dt.date(2026, 11, 3), generated_at=NOW, sections=sections))


def test_an_empty_period_still_gives_every_chart_a_box() -> None:
    page = _page()
    assert page.count('<svg class="chart"') == 8
    assert "nothing in this period" in page


def test_the_page_names_no_address_but_the_svg_namespace() -> None:
    page = _page(
        cost_by_day_model=(
            {"day": dt.date(2026, 12, 1), "model": "m-a", "cost_usd": Decimal("1.5")},
            {"day": dt.date(2026, 12, 2), "model": "m-b", "cost_usd": Decimal("0.25")},
        ),
        cost_by_set=({"set_name": "nightly", "run_days": 2, "attempts": 9, "cost_usd": Decimal("1.75")},),
    )
    addresses = set(re.findall(r"(?:https?:)?//[\w.-]+[^\s\"'<)]*", page))
    assert addresses == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<(link|img|iframe)\b|src=|@import|url\(", page)
    assert "$1.50" in page and "m-b" in page


def test_text_from_the_database_is_escaped() -> None:
    page = _page(
        diagnoses=(
            {
                "run_id": 1,
                "set_name": "s",
                "issue": "<script>alert(1)</script>",
                "priority": 5,
                "category": "other",
                "confidence": 0.5,
                "diagnosis": "a & b",
                "proposed_fix": "none",
            },
        )
    )
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "a &amp; b" in page
