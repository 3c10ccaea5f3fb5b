"""Loading a large dbt project's results: 20,000 tests, a manifest of 200 MB or more.

Run: ``uv run python bench/loaders.py [--tests N] [--failing-share F]``. It writes, in a temporary
folder, a dbt ``target/`` of N tests over N/10 models (run-results v6 and a manifest v12 padded as
real ones are, with compiled SQL, column docs and macros), then times ``budgetq load target/ --set
NAME --snapshot`` through the CLI's code path (parse, stream the manifest, build texts, store) into
PostgreSQL (BUDGETQ_DATABASE_URL when set, which must be migrated; else an embedded server in the
temporary folder). With ``--compare`` it also runs ``json.load`` of the manifest in a fresh process
and reports that process's peak memory as ``json_load_peak_rss_mb``. ``peak_rss_mb`` is this
process's peak resident memory, read after the load (the generator writes node by node, so it
stays small). The last line is one JSON object with keys
tests, issues, manifest_mb, seconds, peak_rss_mb.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from budgetq.adapters.store.engine import ensure_migrated, make_engine, make_sessions, upgrade
from budgetq.devtools.embedded import start_postgres
from budgetq.domain.loaders.detect import LoadFormat
from budgetq.services.loading import load_tool_file

SEED = 20261203
KINDS = ("not_null", "unique", "accepted_values", "relationships")
INVOCATION = "bench-0000-0000-0000-000000000000"


def _sql(model: str, column: str, rng: random.Random) -> str:
    joins = "\n".join(
        f"left join analytics.shop.dim_{rng.randrange(99)} d{i} on d{i}.id = m.{column}" for i in range(12)
    )
    return f"select m.{column}\nfrom analytics.shop.{model} m\n{joins}\nwhere m.{column} is null\n"


def write_project(target: Path, tests: int, failing_share: float) -> int:
    """Write run_results.json and manifest.json for ``tests`` tests; return how many do not pass."""
    rng = random.Random(SEED)
    models = max(1, tests // 10)
    target.mkdir(parents=True)
    failing = 0
    results = []
    with (target / "manifest.json").open("w", encoding="utf-8") as out:
        metadata = {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
            "dbt_version": "1.9.0",
            "invocation_id": INVOCATION,
        }
        out.write('{"metadata": ' + json.dumps(metadata) + ', "nodes": {')
        first = True
        for m in range(models):
            name = f"model_{m}"
            columns = {
                f"col_{c}": {
                    "name": f"col_{c}",
                    "description": "A column documented at length. " * 20,
                    "meta": {},
                }
                for c in range(40)
            }
            node = {
                "name": name,
                "resource_type": "model",
                "unique_id": f"model.shop.{name}",
                "database": "analytics",
                "schema": "shop",
                "alias": name,
                "description": f"Model {m}: one row per thing. " * 20,
                "meta": {"owner": f"team-{m % 17}"},
                "config": {"meta": {"owner": f"team-{m % 17}"}, "tags": ["nightly"]},
                "tags": ["nightly"],
                "columns": columns,
                "compiled_code": _sql(name, "id", rng) * 8,
                "raw_code": _sql(name, "id", rng) * 8,
            }
            out.write(("" if first else ",") + json.dumps(f"model.shop.{name}") + ":" + json.dumps(node))
            first = False
        for t in range(tests):
            kind = KINDS[t % len(KINDS)]
            model = f"model_{t % models}"
            column = f"col_{t % 40}"
            unique_id = f"test.shop.{kind}_{model}_{column}_{t}.{t:010x}"
            sql = _sql(model, column, rng)
            node = {
                "name": f"{kind}_{model}_{column}_{t}",
                "resource_type": "test",
                "unique_id": unique_id,
                "database": "analytics",
                "schema": "dbt_test__audit",
                "alias": f"{kind}_{t}",
                "test_metadata": {
                    "name": kind,
                    "kwargs": {"column_name": column, "model": f"{{{{ ref('{model}') }}}}"},
                },
                "column_name": column,
                "attached_node": f"model.shop.{model}",
                "depends_on": {"nodes": [f"model.shop.{model}"], "macros": [f"macro.dbt.test_{kind}"]},
                "config": {"severity": "ERROR", "meta": {}, "tags": []},
                "tags": [],
                "meta": {},
                "compiled_code": sql * 6,
                "raw_code": "{{ test_" + kind + "(**_dbt_generic_test_kwargs) }}",
                "description": "",
            }
            out.write("," + json.dumps(unique_id) + ":" + json.dumps(node))
            status = "pass"
            if rng.random() < failing_share:
                status = rng.choice(("fail", "fail", "warn", "error"))
                failing += 1
            results.append(
                {
                    "unique_id": unique_id,
                    "status": status,
                    "failures": None
                    if status == "error"
                    else (0 if status == "pass" else rng.randrange(1, 5000)),
                    "message": None if status == "pass" else f"Got results, configured to {status}",
                    "timing": [],
                    "thread_id": "Thread-1",
                    "execution_time": 0.1,
                    "adapter_response": {},
                }
            )
        out.write('}, "sources": {}, "macros": {')
        for i in range(5000):
            macro = {
                "name": f"macro_{i}",
                "macro_sql": "{% macro x() %}" + "select 1 union all " * 200 + "{% endmacro %}",
            }
            out.write(("" if i == 0 else ",") + json.dumps(f"macro.shop.macro_{i}") + ":" + json.dumps(macro))
        out.write("}}")
    run_results = {
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
            "dbt_version": "1.9.0",
            "invocation_id": INVOCATION,
        },
        "results": results,
        "elapsed_time": 60.0,
        "args": {"which": "test"},
    }
    (target / "run_results.json").write_text(json.dumps(run_results))
    return failing


def _plain_json_load_mb(manifest: Path) -> float:
    """Peak RSS of a fresh Python process that only json.loads the manifest (what streaming avoids)."""
    code = (
        "import json, resource, sys; json.load(open(sys.argv[1], encoding='utf-8')); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(manifest)], capture_output=True, text=True, check=True
    )
    return round(float(out.stdout.strip()), 1)


def main() -> None:
    """Generate the project, load it once as a snapshot, and end with one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tests", type=int, default=20_000)
    parser.add_argument("--failing-share", type=float, default=0.25)
    parser.add_argument(
        "--compare", action="store_true", help="also measure json.load of the manifest in a fresh process"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="budgetq-bench-loaders-") as tmp:
        folder = Path(tmp)
        target = folder / "project" / "target"
        failing = write_project(target, args.tests, args.failing_share)
        manifest_mb = (target / "manifest.json").stat().st_size / 1e6
        print(f"wrote {args.tests:,} tests ({failing:,} not passing), manifest {manifest_mb:.0f} MB")
        url = os.environ.get("BUDGETQ_DATABASE_URL")
        handle = None
        if url is None:
            url, handle = start_postgres(folder)
            upgrade(url)
        engine = make_engine(url, pool_size=2)
        ensure_migrated(engine)
        sessions = make_sessions(engine)
        before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS before the load (generator included): {before_mb:.0f} MB")
        started = time.perf_counter()
        load = load_tool_file(
            sessions,
            target / "run_results.json",
            LoadFormat.DBT,
            f"bench-loaders-{os.getpid()}-{time.time_ns()}",
            snapshot=True,
            nightly=False,
            manifest=None,
            mapping=None,
            max_detail_chars=4_000,
            max_text_chars=100_000,
        )
        seconds = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        engine.dispose()
        del handle
        plain_mb = _plain_json_load_mb(target / "manifest.json") if args.compare else None
    stored = load.stored.inserted if load.stored else 0
    print(
        json.dumps(
            {
                "tests": args.tests,
                "issues": stored,
                "manifest_mb": round(manifest_mb, 1),
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(peak_mb, 1),
                **({"json_load_peak_rss_mb": plain_mb} if plain_mb is not None else {}),
            }
        )
    )


if __name__ == "__main__":
    main()
