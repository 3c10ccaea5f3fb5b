"""`budgetq report html` after a real run, opened in a real Chromium through playwright: no console error,
no network request, every chart drawn with a size, the diagnoses filter narrows the rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Request, Route, sync_playwright
from sqlalchemy import text

from budgetq.adapters.processes import local_workers as processes
from budgetq.adapters.queue.celery_app import make_celery
from budgetq.adapters.store.engine import make_engine, make_sessions, transaction
from budgetq.devtools.standin.server import StandIn, StandInConfig
from budgetq.services.planning import enqueue, plan_run
from budgetq.settings import Settings
from tests.integration.conftest import Budgetq
from tests.integration.pipeline import make_seed_set, wait_for_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def run_database(
    fresh_database: Callable[[], str], redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database holding one finished run of 120 seed issues on the stand-in."""
    url = fresh_database()
    engine = make_engine(url)
    sessions = make_sessions(engine)
    redis.Redis.from_url(redis_url.replace("redis+socket://", "unix://")).flushdb()
    standin = StandIn(StandInConfig())
    env = {
        "BUDGETQ_DATABASE_URL": url,
        "BUDGETQ_REDIS_URL": redis_url,
        "BUDGETQ_MODE": "standin",
        "ANTHROPIC_BASE_URL": standin.start(),
        "BUDGETQ_MAX_ISSUES_PER_CALL": "30",
    }
    worker = processes.start_worker(env, 2, tmp_path_factory.mktemp("html") / "worker.log")
    try:
        settings = Settings(
            **{k[len("BUDGETQ_") :].lower(): v for k, v in env.items() if k.startswith("BUDGETQ_")}
        )
        set_id = make_seed_set(sessions, f"html-{uuid.uuid4().hex[:8]}", 120)
        planned = plan_run(sessions, settings, set_id, kind="manual")
        assert planned.run_id is not None
        enqueue(make_celery(settings, redis_url), sessions, planned.batch_ids)
        wait_for_run(sessions, planned.run_id)
        # Owners and datasets, as a tool's load gives them (migration 0009): three of each, some issues none.
        with transaction(sessions) as session:
            session.execute(
                text(
                    "UPDATE issues SET owner = 'team-' || (id % 3), dataset = 'analytics.t' || (id % 3) "
                    "WHERE set_id = :s AND id % 4 <> 0"
                ),
                {"s": set_id},
            )
        yield url
    finally:
        processes.stop(worker, timeout=10)
        standin.stop()
        engine.dispose()


def test_report_opens_offline_with_charts_and_a_working_filter(
    run_database: str, run_budgetq: Budgetq, tmp_path: Path
) -> None:
    page_file = tmp_path / "report.html"
    made = run_budgetq(
        "report", "html", "--since", "7d", "-o", str(page_file), BUDGETQ_DATABASE_URL=run_database
    )
    assert made.code == 0, made
    assert page_file.stat().st_size > 0
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium (.ci/run does it)")
    errors: list[str] = []
    foreign: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            def only_the_file(route: Route, request: Request) -> None:
                if request.url == page_file.as_uri():
                    route.continue_()
                else:
                    foreign.append(request.url)
                    route.abort()

            page.route("**/*", only_the_file)
            page.goto(page_file.as_uri())
            charts = page.locator("svg.chart")
            assert charts.count() >= 6
            for i in range(charts.count()):
                box = charts.nth(i).bounding_box()
                assert box is not None and box["width"] > 0 and box["height"] > 0, i
            assert page.locator("svg.chart rect").count() > 10  # bars, not only empty boxes
            # Cost by owner and diagnoses by dataset: drawn, with a bar for each owner or dataset and "(none)"
            for label in ("cost by owner", "diagnoses by dataset"):
                chart = page.locator(f'svg.chart[aria-label="{label}"]')
                box = chart.bounding_box()
                assert box is not None and box["width"] > 0 and box["height"] > 0, label
                assert chart.locator("rect").count() >= 4, label
                assert chart.locator("text", has_text="(none)").count() == 1, label
            rows = page.locator("#diagnoses tbody tr")
            total = rows.count()
            assert total == 120
            first_category = rows.nth(0).locator("td").nth(4).inner_text()
            page.fill("#filter", first_category)
            visible = page.locator("#diagnoses tbody tr:visible").count()
            assert 0 < visible < total
            assert page.locator("#shown").inner_text() == str(visible)
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == [] and foreign == [], (errors, foreign)
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_bad_since_and_unwritable_output_are_one_line_each(run_database: str, run_budgetq: Budgetq) -> None:
    bad_since = run_budgetq("report", "html", "--since", "soon", "-o", "/tmp/x.html")
    assert bad_since.code == 2
    bad_since.one_error_line("soon")
    unwritable = run_budgetq(
        "report", "html", "-o", "/nonexistent-folder/report.html", BUDGETQ_DATABASE_URL=run_database
    )
    assert unwritable.code == 2
    unwritable.one_error_line("/nonexistent-folder/report.html")
