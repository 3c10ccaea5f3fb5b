"""Charts drawn as inline SVG on the server: no script, no font or image fetched, sized by a viewBox so a
page of any width shows them whole. Each bar carries a <title> a browser shows on hover."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape

# A palette that stays apart for the colour-blind (Okabe–Ito), in the order series are met.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")

Format = Callable[[float], str]


def usd(value: float) -> str:
    """Dollars as people read them: cents above a dollar, four decimals below."""
    if value == 0:
        return "$0"
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:,.4f}"


def count(value: float) -> str:
    """A whole number with thousands separators."""
    return f"{value:,.0f}"


def _svg(width: int, height: int, body: str, label: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )


def empty(label: str) -> str:
    """A chart-sized box saying there is nothing to draw (so the layout never jumps)."""
    body = (
        '<rect x="0" y="0" width="600" height="80" rx="6" fill="#f4f5f7"/>'
        '<text x="300" y="46" text-anchor="middle" fill="#6b7280" font-size="14">'
        "nothing in this period</text>"
    )
    return _svg(600, 80, body, label)


def horizontal_bars(
    items: Sequence[tuple[str, float]], label: str, fmt: Format, colour: str = PALETTE[0]
) -> str:
    """One bar per item, longest first as given, its value written at its end."""
    if not items or max(v for _, v in items) <= 0:
        return empty(label)
    width, left, right, row = 600, 210, 80, 26
    top = max(v for _, v in items)
    height = row * len(items) + 8
    parts = []
    for i, (name, value) in enumerate(items):
        y = 4 + i * row
        length = max(2.0, (width - left - right) * value / top)
        short = name if len(name) <= 26 else "…" + name[-25:]
        parts.append(
            f'<text x="{left - 8}" y="{y + 16}" text-anchor="end" font-size="13" fill="#1f2937">'
            f"{escape(short)}</text>"
            f'<rect x="{left}" y="{y + 3}" width="{length:.1f}" height="{row - 8}" rx="3" fill="{colour}">'
            f"<title>{escape(name)}: {escape(fmt(value))}</title></rect>"
            f'<text x="{left + length + 6:.1f}" y="{y + 16}" font-size="12" fill="#374151">'
            f"{escape(fmt(value))}</text>"
        )
    return _svg(width, height, "".join(parts), label)


def _axis(top: float, plot_left: int, plot_top: int, plot_height: int, plot_right: int, fmt: Format) -> str:
    lines = []
    for step in range(5):
        value = top * step / 4
        y = plot_top + plot_height - plot_height * step / 4
        lines.append(
            f'<line x1="{plot_left}" x2="{plot_right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
            f'<text x="{plot_left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#6b7280">'
            f"{escape(fmt(value))}</text>"
        )
    return "".join(lines)


def _legend(names: Sequence[str], y: int) -> str:
    parts, x = [], 70
    for i, name in enumerate(names):
        parts.append(
            f'<rect x="{x}" y="{y}" width="12" height="12" rx="2" fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{x + 17}" y="{y + 11}" font-size="12" fill="#374151">{escape(name)}</text>'
        )
        x += 30 + 7 * len(name)
    return "".join(parts)


def stacked_columns(
    columns: Sequence[tuple[str, Mapping[str, float]]], series: Sequence[str], label: str, fmt: Format
) -> str:
    """One column per key (a day), stacked by series (a model), with a y axis and a legend."""
    totals = [sum(parts.values()) for _, parts in columns]
    if not columns or max(totals) <= 0:
        return empty(label)
    width, height, left, top_pad, bottom = 1200, 280, 70, 30, 40
    plot_w, plot_h = width - left - 10, height - top_pad - bottom
    top = max(totals) * 1.1
    slot = plot_w / len(columns)
    bar = max(3.0, min(48.0, slot * 0.7))
    parts = [_legend(series, 6), _axis(top, left, top_pad, plot_h, width - 10, fmt)]
    every = max(1, len(columns) // 12)
    for i, (key, values) in enumerate(columns):
        x = left + slot * i + (slot - bar) / 2
        y = float(top_pad + plot_h)
        for s, name in enumerate(series):
            value = values.get(name, 0.0)
            if value <= 0:
                continue
            h = plot_h * value / top
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(key)} · {escape(name)}: '
                f"{escape(fmt(value))}</title></rect>"
            )
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{top_pad + plot_h + 16}" text-anchor="middle" '
                f'font-size="11" fill="#6b7280">{escape(key)}</text>'
            )
    return _svg(width, height, "".join(parts), label)


def paired_columns(
    columns: Sequence[tuple[str, float, float]], names: tuple[str, str], label: str, fmt: Format
) -> str:
    """Two columns side by side per key (estimated against billed), with a y axis and a legend."""
    if not columns or max(max(a, b) for _, a, b in columns) <= 0:
        return empty(label)
    width, height, left, top_pad, bottom = 1200, 260, 80, 30, 40
    plot_w, plot_h = width - left - 10, height - top_pad - bottom
    top = max(max(a, b) for _, a, b in columns) * 1.1
    slot = plot_w / len(columns)
    bar = max(3.0, min(30.0, slot * 0.35))
    parts = [_legend(names, 6), _axis(top, left, top_pad, plot_h, width - 10, fmt)]
    every = max(1, len(columns) // 12)
    for i, (key, first, second) in enumerate(columns):
        x = left + slot * i + slot / 2 - bar
        for j, value in enumerate((first, second)):
            h = plot_h * value / top
            parts.append(
                f'<rect x="{x + j * bar:.1f}" y="{top_pad + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{PALETTE[j]}"><title>{escape(key)} · {escape(names[j])}: '
                f"{escape(fmt(value))}</title></rect>"
            )
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar:.1f}" y="{top_pad + plot_h + 16}" text-anchor="middle" font-size="11" '
                f'fill="#6b7280">{escape(key)}</text>'
            )
    return _svg(width, height, "".join(parts), label)
