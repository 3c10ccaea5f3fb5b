"""`budgetq load` never loses a row silently: what it rejects is in --rejected-csv with its external id
and its raw line (issue 17, point 10)."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

from tests.integration.conftest import Budgetq


def test_rejected_rows_carry_their_external_id_and_raw_lines(
    run_budgetq: Budgetq, database_url: str, tmp_path: Path
) -> None:
    # Given a file with an unquoted comma on line 3 and a quote left open from line 5 to the end
    source = tmp_path / "issues.csv"
    source.write_text(
        "external_id,priority,text\n"
        "a,15,fine\n"
        "b,10,nulls in orders, again\n"
        "c,5,fine too\n"
        'd,1,"never closed\n'
        "e,1,swallowed\n"
    )
    target = tmp_path / "rejected.csv"

    # When it is loaded with --rejected-csv
    outcome = run_budgetq(
        "load",
        str(source),
        "--set",
        f"rej-{uuid.uuid4().hex[:8]}",
        "--rejected-csv",
        str(target),
        BUDGETQ_DATABASE_URL=database_url,
    )

    # Then two rows loaded, exit 1, and each rejection is written with its id, reason and raw lines
    assert outcome.code == 1, outcome
    assert "2 rows rejected" in outcome.stderr + outcome.stdout
    with target.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["line"], r["external_id"]) for r in rows] == [("3", "b"), ("5", "d")]
    assert rows[0]["raw"] == "b,10,nulls in orders, again\n" and "4 fields" in rows[0]["reason"]
    assert rows[1]["raw"] == 'd,1,"never closed\ne,1,swallowed\n' and "lines 5-6" in rows[1]["reason"]
