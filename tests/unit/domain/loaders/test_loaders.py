"""The tool readers (budgetq.domain.loaders, and the file side in services.loading) on hand-made fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from budgetq.domain.loaders import dbt, gx, re_data, soda
from budgetq.domain.loaders.detect import LoadFormat, json_format
from budgetq.domain.loaders.finding import CheckStatus, Finding, Parsed, SourceTool
from budgetq.domain.loaders.priority import PriorityMap, priority_of
from budgetq.domain.loaders.text import issue_text
from budgetq.errors import IngestError
from budgetq.services.loading import parse_file, resolve_path, sniff, to_issues
from budgetq.services.manifests import read_manifest

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "loaders"
DBT = FIXTURES / "dbt_target"


def _json(path: Path) -> dict[str, object]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_dbt_run_results_with_manifest_give_one_issue_per_non_passing_test() -> None:
    parsed = parse_file(DBT / "run_results.json", LoadFormat.DBT)
    assert (parsed.read, parsed.skipped_passing, len(parsed.findings)) == (4, 1, 3)
    by_kind = {f.check_kind: f for f in parsed.findings}
    not_null = by_kind["not_null"]
    assert not_null.external_id == "test.shop.not_null_orders_customer_id.abc123"
    assert (not_null.dataset, not_null.column, not_null.failing_rows) == (
        "analytics.shop.orders",
        "customer_id",
        3,
    )
    assert not_null.owner == "team-orders" and not_null.tags == ("finance",)
    assert [f.status for f in parsed.findings] == [CheckStatus.FAIL, CheckStatus.WARN, CheckStatus.ERROR]
    text = issue_text(not_null, max_detail_chars=1000)
    for part in ("not_null_orders_customer_id", "analytics.shop.orders", "customer_id", "failing rows: 3"):
        assert part in text
    assert "select customer_id from analytics.shop.orders" in text
    assert "One row per order." in text


def test_dbt_priorities_follow_the_default_map_and_the_checks_own_override() -> None:
    issues, rejected = to_issues(parse_file(DBT / "run_results.json", LoadFormat.DBT), None, 1000, 100_000)
    assert rejected == ()
    # fail 10, warn 5, and the erroring singular test's tag budgetq_priority:15.
    assert [i.priority for i in issues] == [10, 5, 15]
    mapping = PriorityMap.from_document({"check": {"not_null": 15}, "status": {"warn": 1}}, "map.toml")
    issues, _ = to_issues(parse_file(DBT / "run_results.json", LoadFormat.DBT), mapping, 1000, 100_000)
    assert [i.priority for i in issues] == [15, 1, 15]


def test_a_bad_priority_map_is_refused_with_the_allowed_values() -> None:
    with pytest.raises(IngestError, match="is not a priority"):
        PriorityMap.from_document({"status": {"fail": 7}}, "map.toml")
    with pytest.raises(IngestError, match="unknown table"):
        PriorityMap.from_document({"owners": {}}, "map.toml")


def test_dbt_without_a_manifest_loads_what_run_results_holds_and_says_so(tmp_path: Path) -> None:
    alone = tmp_path / "run_results.json"
    alone.write_text((DBT / "run_results.json").read_text())
    parsed = parse_file(alone, LoadFormat.DBT)
    assert len(parsed.findings) == 3 and "no manifest.json" in parsed.notes[0]
    assert parsed.findings[0].check_name == "not_null_orders_customer_id"
    assert parsed.findings[0].dataset is None


def test_a_manifest_of_another_invocation_is_warned_about(tmp_path: Path) -> None:
    manifest = _json(DBT / "manifest.json")
    manifest["metadata"] = {**manifest["metadata"], "invocation_id": "other"}  # type: ignore[dict-item]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "run_results.json").write_text((DBT / "run_results.json").read_text())
    parsed = parse_file(tmp_path / "run_results.json", LoadFormat.DBT)
    assert any("from invocation other" in n for n in parsed.notes)


def test_an_unknown_run_results_version_names_the_supported_ones() -> None:
    document = _json(DBT / "run_results.json")
    document["metadata"] = {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v9.json"}
    with pytest.raises(IngestError, match="supported: run-results v1, v2, v3, v4, v5, v6"):
        dbt.parse_run_results(document, None)


def test_the_manifest_is_streamed_down_to_the_failing_tests_and_their_models() -> None:
    wanted = dbt.failing_ids(_json(DBT / "run_results.json"))
    index = read_manifest(DBT / "manifest.json", wanted)
    assert set(index.nodes) == set(wanted) | {"model.shop.orders", "model.shop.payments"}
    assert index.invocation_id == "11111111-2222-3333-4444-555555555555"


def test_a_truncated_manifest_is_one_clear_error(tmp_path: Path) -> None:
    cut = tmp_path / "manifest.json"
    cut.write_bytes((DBT / "manifest.json").read_bytes()[:1500])
    with pytest.raises(IngestError, match="not valid JSON"):
        read_manifest(cut, frozenset({"x"}))


def test_gx_checkpoint_holds_1x_and_0x_validations_and_raised_expectations() -> None:
    parsed = gx.parse_gx(_json(FIXTURES / "gx_checkpoint_result.json"))
    assert (parsed.read, parsed.skipped_passing, len(parsed.findings)) == (3, 1, 2)
    between, exists = parsed.findings
    assert between.check_kind == "expect_column_values_to_be_between"
    assert (between.dataset, between.column, between.failing_rows, between.out_of) == (
        "pg.public.orders",
        "amount",
        12,
        500,
    )
    assert exists.status is CheckStatus.ERROR and exists.message == "column email not found"
    assert exists.dataset == "pg.customers"


def test_gx_identity_ignores_the_batch_id_so_a_recurring_failure_keeps_its_id() -> None:
    document = _json(FIXTURES / "gx_checkpoint_result.json")
    first = gx.parse_gx(document).findings[0].external_id
    text = json.dumps(document).replace('"batch_id": "pg-orders"', '"batch_id": "pg-orders-next-night"')
    assert gx.parse_gx(json.loads(text)).findings[0].external_id == first
    moved = json.dumps(document).replace('"max_value": 10000', '"max_value": 20000')
    assert gx.parse_gx(json.loads(moved)).findings[0].external_id != first


def test_soda_v3_scan_results_give_the_fail_and_the_warn_with_their_diagnostics() -> None:
    parsed = soda.parse_soda(_json(FIXTURES / "soda_scan_results.json"))
    assert (parsed.read, parsed.skipped_passing) == (3, 1)
    missing, duplicate = parsed.findings
    assert missing.external_id == "soda:warehouse-dim_customer-missing_count-email-4e5f6a7b"
    assert (missing.dataset, missing.column, missing.owner, missing.tags) == (
        "warehouse.dim_customer",
        "email",
        "crm-team",
        ("crm", "pii"),
    )
    assert duplicate.status is CheckStatus.WARN
    assert '"value":37' in issue_text(missing, max_detail_chars=500)


def test_soda_v4_contract_payload_reads_failed_rows_and_dataset_prefix() -> None:
    parsed = soda.parse_soda(_json(FIXTURES / "soda_contract_results.json"))
    (missing,) = parsed.findings
    assert (missing.dataset, missing.column, missing.failing_rows, missing.out_of) == (
        "warehouse.public.orders",
        "id",
        5,
        200,
    )
    assert missing.owner == "orders-team" and missing.external_id == "soda:4d7f2a10"


def test_elementary_table_rows_count_only_each_tests_latest_execution() -> None:
    path = FIXTURES / "elementary_test_results.csv"
    assert sniff(path, None) is LoadFormat.ELEMENTARY
    parsed = parse_file(path, LoadFormat.ELEMENTARY)
    assert (parsed.read, parsed.skipped_passing) == (2, 1)
    (finding,) = parsed.findings
    assert (finding.failing_rows, finding.owner, finding.tags) == (6, "team-orders", ("finance",))


def test_detection_tells_each_tool_and_refuses_a_mismatch() -> None:
    assert sniff(resolve_path(DBT), None) is LoadFormat.DBT
    assert sniff(FIXTURES / "gx_checkpoint_result.json", None) is LoadFormat.GX
    assert sniff(FIXTURES / "soda_contract_results.json", None) is LoadFormat.SODA
    with pytest.raises(IngestError, match="is a dbt file, not gx"):
        sniff(DBT / "run_results.json", LoadFormat.GX)
    with pytest.raises(IngestError, match="manifest.json"):
        json_format(_json(DBT / "manifest.json"))
    with pytest.raises(IngestError, match="cannot tell which tool"):
        json_format({"hello": 1})


def test_the_text_is_the_same_every_time_and_cuts_long_sql() -> None:
    finding = Finding(
        SourceTool.DBT,
        "t",
        "check",
        CheckStatus.FAIL,
        detail="select 1\n" * 1000,
        detail_label="compiled SQL",
    )
    first = issue_text(finding, max_detail_chars=200)
    assert first == issue_text(finding, max_detail_chars=200)
    assert "(cut: 8,799 more characters)" in first and len(first) < 400


def test_the_default_priority_map_is_error_15_fail_10_warn_5() -> None:
    made = [priority_of(Finding(SourceTool.SODA, "x", "c", s)) for s in CheckStatus]
    assert made == [10, 5, 15]


def test_an_old_relationships_test_is_tied_to_the_model_its_kwargs_name() -> None:
    node = {
        "test_metadata": {
            "name": "relationships",
            "kwargs": {"model": "{{ ref('orders') }}", "to": "ref('customers')"},
        },
        "depends_on": ["model.shop.orders", "model.shop.customers"],
        "attached_node": None,
    }
    assert dbt.tested_ids({"t": node}) == frozenset({"model.shop.orders"})


def test_an_id_too_long_for_the_index_is_shortened_stably() -> None:
    long_id = "test." + "x" * 600
    parsed = Parsed(
        SourceTool.ELEMENTARY, (Finding(SourceTool.ELEMENTARY, long_id, "c", CheckStatus.FAIL),), 1, 0
    )
    (first,), _ = to_issues(parsed, None, 100, 1000)
    (second,), _ = to_issues(parsed, None, 100, 1000)
    assert len(first.external_id) <= 500 and first.external_id == second.external_id


def test_re_data_keeps_each_tests_latest_execution() -> None:
    def entry(status: str, run_at: str, count: str) -> dict[str, object]:
        data = {
            "status": status,
            "test_name": "not_null_orders_id",
            "run_at": run_at,
            "failures_count": count,
        }
        return {"type": "test", "table_name": "DB.S.orders", "column_name": "id", "data": json.dumps(data)}

    document = [
        entry("Warn", "2026-11-30", "5"),
        entry("Fail", "2026-12-01", "9"),
        {"type": "metric", "table_name": "x", "data": "{}"},
    ]
    parsed = re_data.parse_overview(document)
    (finding,) = parsed.findings
    assert (parsed.read, finding.status, finding.failing_rows, finding.check_kind) == (
        1,
        CheckStatus.FAIL,
        9,
        "not_null",
    )
    assert re_data.is_overview(document)


def test_elementary_rows_in_jsonl_are_told_from_issue_rows_whatever_the_suffix(tmp_path: Path) -> None:
    path = FIXTURES / "elementary_test_results.jsonl"
    assert sniff(path, None) is LoadFormat.ELEMENTARY
    assert sniff(path, LoadFormat.ELEMENTARY) is LoadFormat.ELEMENTARY
    renamed = tmp_path / "rows.json"
    renamed.write_text(path.read_text())
    assert sniff(renamed, None) is LoadFormat.ELEMENTARY
    assert len(parse_file(path, LoadFormat.ELEMENTARY).findings) == 1


def test_elementary_csv_rows_leave_the_process_wide_field_limit_as_it_was(tmp_path: Path) -> None:
    # Given the csv module's process-wide field limit, and an Elementary CSV
    import csv

    before = csv.field_size_limit()

    # When its rows are read
    parse_file(FIXTURES / "elementary_test_results.csv", LoadFormat.ELEMENTARY)

    # Then the limit is what it was (reading used to set it to 1 GiB for the whole process)
    assert csv.field_size_limit() == before


def test_an_elementary_csv_field_past_the_bound_is_an_ingest_error_naming_its_line(tmp_path: Path) -> None:
    # Given an Elementary CSV whose second row holds a query far past any real one
    from budgetq.services.loading import TOOL_FIELD_MAX_CHARS

    rows = (FIXTURES / "elementary_test_results.csv").read_text().splitlines(keepends=True)
    path = tmp_path / "elementary.csv"
    path.write_text(rows[0] + rows[1] + "e9,x9," + "q" * (TOOL_FIELD_MAX_CHARS + 10) + ",t\n")

    # When it is read, Then one IngestError names the file, the line and the bound: no csv.Error escapes
    with pytest.raises(IngestError, match=r"elementary\.csv line 3: .*field.*10,485,760"):
        parse_file(path, LoadFormat.ELEMENTARY)
