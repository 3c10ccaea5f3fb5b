"""The report as one self-contained HTML page: styles, charts (inline SVG) and the table filter's few lines
of script all inside it, so it opens the same from a mail attachment, a bucket or a laptop offline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from html import escape

from budgetq.adapters.html import charts
from budgetq.adapters.store.dashboard import Dashboard

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
background:#f6f7f9;color:#111827}
header{background:#111827;color:#f9fafb;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#9ca3af}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));
gap:18px;padding:18px 32px}section{background:#fff;border-radius:10px;padding:14px 18px;
box-shadow:0 1px 3px rgba(0,0,0,.08)}section.wide{grid-column:1/-1}h2{font-size:16px;margin:0 0 10px}
.kpis{display:flex;gap:14px;flex-wrap:wrap}.kpi{background:#fff;border-radius:10px;padding:12px 18px;
box-shadow:0 1px 3px rgba(0,0,0,.08);min-width:150px}.kpi b{display:block;font-size:22px}
.kpi span{color:#6b7280;font-size:12px}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eef0f3;vertical-align:top}
th{background:#f9fafb;position:sticky;top:0}td.n{text-align:right;font-variant-numeric:tabular-nums}
.scroll{max-height:420px;overflow:auto}input[type=search]{width:100%;padding:7px 10px;margin-bottom:8px;
border:1px solid #d1d5db;border-radius:6px;font-size:14px;box-sizing:border-box}.muted{color:#6b7280}
"""

# The diagnoses table's filter: a row stays when every word typed appears somewhere in it.
_SCRIPT = """
document.getElementById('filter').addEventListener('input', function (e) {
  var words = e.target.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
  document.querySelectorAll('#diagnoses tbody tr').forEach(function (row) {
    var text = row.textContent.toLowerCase();
    var keep = words.every(function (w) { return text.indexOf(w) >= 0; });
    row.style.display = keep ? '' : 'none'; if (keep) shown++;
  });
  document.getElementById('shown').textContent = shown;
});
"""


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float | Decimal) else 0.0


def _cell(name: str, value: object) -> str:
    if value is None:
        return '<td class="muted">–</td>'
    if isinstance(value, Decimal) and name.endswith("_usd"):
        return f'<td class="n">{escape(charts.usd(float(value)))}</td>'
    if isinstance(value, int | float | Decimal):
        return f'<td class="n">{escape(str(value))}</td>'
    return f"<td>{escape(str(value))}</td>"


def _table(rows: Sequence[Mapping[str, object]], table_id: str = "") -> str:
    if not rows:
        return '<p class="muted">nothing in this period</p>'
    head = "".join(f"<th>{escape(name.replace('_', ' '))}</th>" for name in rows[0])
    body = "".join("<tr>" + "".join(_cell(k, v) for k, v in row.items()) + "</tr>" for row in rows)
    ident = f' id="{table_id}"' if table_id else ""
    return (
        f'<div class="scroll"><table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    )


def _section(title: str, body: str, wide: bool = False) -> str:
    attrs = ' class="wide"' if wide else ""
    return f"<section{attrs}><h2>{escape(title)}</h2>{body}</section>"


def _cost_by_day(data: Dashboard) -> str:
    days: dict[str, dict[str, float]] = {}
    models: list[str] = []
    for row in data.rows("cost_by_day_model"):
        model = str(row["model"])
        if model not in models:
            models.append(model)
        days.setdefault(str(row["day"]), {})[model] = _num(row["cost_usd"])
    return charts.stacked_columns(sorted(days.items()), models, "cost by day and model", charts.usd)


def _kpis(data: Dashboard) -> str:
    runs = data.rows("latest_runs")
    cost = sum(_num(r["cost_usd"]) for r in data.rows("cost_by_set"))
    answered = sum(_num(r["issues"]) for r in data.rows("issues_by_status") if r["status"] == "answered")
    guard = data.rows("guard_by_day")
    estimated = sum(_num(r["estimated_tokens"]) for r in guard)
    billed = sum(_num(r["billed_tokens"]) for r in guard)
    ratio = f"{billed / estimated:.3f}" if estimated else "–"
    items = [
        (charts.usd(cost), "spent in the period"),
        (charts.count(answered), "issues answered"),
        (str(len(runs)) + ("+" if len(runs) >= 12 else ""), "runs"),
        (ratio, "billed ÷ estimated input tokens"),
    ]
    return (
        '<div class="kpis">'
        + "".join(f'<div class="kpi"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for v, k in items)
        + "</div>"
    )


def render(data: Dashboard) -> str:
    """The whole page for ``data``: nothing in it refers to anything outside it."""
    by_set = [(str(r["set_name"]), _num(r["cost_usd"])) for r in data.rows("cost_by_set")]
    by_owner = [(str(r["owner"]), _num(r["cost_usd"])) for r in data.rows("cost_by_owner")]
    by_dataset = [(str(r["dataset"]), _num(r["diagnoses"])) for r in data.rows("diagnoses_by_dataset")]
    by_priority = [(f"priority {r['priority']}", _num(r["cost_usd"])) for r in data.rows("cost_by_priority")]
    by_status = [(str(r["status"]), _num(r["issues"])) for r in data.rows("issues_by_status")]
    by_category = [(str(r["category"]), _num(r["diagnoses"])) for r in data.rows("diagnoses_by_category")]
    guard = [
        (str(r["day"]), _num(r["estimated_tokens"]), _num(r["billed_tokens"]))
        for r in data.rows("guard_by_day")
    ]
    diagnoses = data.rows("diagnoses")
    search = (
        '<input type="search" id="filter" placeholder="filter: type words from any column (issue, category, '
        f'diagnosis…)"><p class="muted"><span id="shown">{len(diagnoses)}</span> of {len(diagnoses)} shown '
        "(the latest answer per issue)</p>"
    )
    sections = [
        _section("Cost by day, by model", _cost_by_day(data), wide=True),
        _section("Cost by set", charts.horizontal_bars(by_set, "cost by set", charts.usd)),
        _section(
            "Cost by owner", charts.horizontal_bars(by_owner, "cost by owner", charts.usd, charts.PALETTE[4])
        ),
        _section(
            "Cost by priority",
            charts.horizontal_bars(by_priority, "cost by priority", charts.usd, charts.PALETTE[1]),
        ),
        _section(
            "Issues by status",
            charts.horizontal_bars(by_status, "issues by status", charts.count, charts.PALETTE[2]),
        ),
        _section(
            "Diagnoses by category",
            charts.horizontal_bars(by_category, "diagnoses by category", charts.count, charts.PALETTE[3]),
        ),
        _section(
            "Diagnoses by dataset",
            charts.horizontal_bars(by_dataset, "diagnoses by dataset", charts.count, charts.PALETTE[5]),
        ),
        _section(
            "The guard's honesty: estimated against billed input tokens",
            charts.paired_columns(guard, ("estimated", "billed"), "estimated vs billed tokens", charts.count)
            + _table(data.rows("guard_by_day")),
            wide=True,
        ),
        _section("Most expensive issues", _table(data.rows("expensive_issues")), wide=True),
        _section("Latest runs", _table(data.rows("latest_runs")), wide=True),
        _section("Diagnoses", search + _table(diagnoses, "diagnoses"), wide=True),
    ]
    stamp = data.generated_at.strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>budgetq report since {data.since.isoformat()}</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>budgetq · where the money went</h1><p>since {data.since.isoformat()} · made {stamp} "
        "from the SQL cost views</p></header>"
        '<main><section class="wide" style="background:none;box-shadow:none;padding:0">'
        f"{_kpis(data)}</section>"
        f"{''.join(sections)}</main><script>{_SCRIPT}</script></body></html>\n"
    )
