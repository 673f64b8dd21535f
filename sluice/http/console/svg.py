"""Charts as SVG drawn on the server: no script, nothing inline that a strict Content-Security-
Policy would refuse (presentation attributes, not style attributes), readable by screen readers
(role="img" with a title; the pages print the same figures in a table beside each chart)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup


def bars(
    points: Sequence[tuple[str, float]], *, title: str, unit: str = "$", width: int = 720, height: int = 180
) -> Markup:
    """A bar per point (label, value), the largest filling the height."""
    pad_left, pad_bottom, pad_top = 48, 22, 10
    plot_w, plot_h = width - pad_left - 4, height - pad_bottom - pad_top
    top = max((v for _, v in points), default=0.0) or 1.0
    n = max(len(points), 1)
    step = plot_w / n
    gap = min(4.0, step * 0.2)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{escape(title)}"'
        f' xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<line x1="{pad_left}" y1="{pad_top + plot_h}" x2="{width - 4}" y2="{pad_top + plot_h}" class="axis"/>',
        f'<text x="{pad_left - 6}" y="{pad_top + 8}" text-anchor="end" class="tick">{escape(_fmt(top, unit))}</text>',
        f'<text x="{pad_left - 6}" y="{pad_top + plot_h}" text-anchor="end" class="tick">0</text>',
    ]
    label_every = max(1, n // 12)
    for i, (label, value) in enumerate(points):
        h = plot_h * (value / top) if top else 0
        x = pad_left + i * step + gap / 2
        y = pad_top + plot_h - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(step - gap, 1):.1f}" height="{h:.1f}" class="bar">'
            f"<title>{escape(label)}: {escape(_fmt(value, unit))}</title></rect>"
        )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + (step - gap) / 2:.1f}" y="{height - 6}" text-anchor="middle" class="tick">'
                f"{escape(label)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def budget_bar(
    spent: float, held: float, limit: float, *, label: str, unit: str = "$", width: int = 220, height: int = 14
) -> Markup:
    """Spent, then held by requests in flight, then what is left, of a limit (dollars, or a
    count of `unit`: tokens, requests)."""
    limit = limit or 1.0
    w_spent = min(width, width * spent / limit)
    w_held = min(width - w_spent, width * held / limit)
    over = " over" if spent + held >= limit else ""
    left = max(0.0, limit - spent - held)
    if unit == "$":
        money = [_fmt(v, "$") for v in (spent, held, left, limit)]
        text = f"{label}: {money[0]} spent, {money[1]} held, {money[2]} left of {money[3]}"
    else:
        used, flight, rest, of = (_fmt(v, unit) for v in (spent, held, left, limit))
        text = f"{label}: {used} used, {flight} held by requests in flight, {rest} left of {of} {unit}"
    return Markup(
        f'<svg class="budget{over}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img"'
        f' aria-label="{escape(text)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(text)}</title>'
        f'<rect x="0" y="0" width="{width}" height="{height}" class="left"/>'
        f'<rect x="0" y="0" width="{w_spent:.1f}" height="{height}" class="spent"/>'
        f'<rect x="{w_spent:.1f}" y="0" width="{w_held:.1f}" height="{height}" class="held"/></svg>'
    )


def _fmt(value: float, unit: str) -> str:
    if unit == "$":
        return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"
    return f"{value:,.0f}"
