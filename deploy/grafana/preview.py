"""Draws the dashboard's time-series panels from a running Prometheus as one SVG (a stand-in for
a Grafana screenshot where Grafana cannot be installed):

    python deploy/grafana/preview.py --prometheus http://127.0.0.1:9090 --minutes 5 --out docs/images/dashboard.svg

Each panel's queries are evaluated with query_range ($__rate_interval = 30s, every variable = .*)."""

from __future__ import annotations

import argparse
import json
import re
import time
import urllib.parse
import urllib.request
from html import escape
from pathlib import Path
from typing import Any

COLOURS = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0"]
W, H, COLS = 440, 220, 3


def query_range(base: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{params}", timeout=30) as resp:
        return list(json.load(resp)["data"]["result"])


def legend(fmt: str, labels: dict[str, str]) -> str:
    """Grafana's legend format: `{{label}}` by its value, an absent label by nothing."""
    out = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip()
    return out or "(no labels)"


def draw(panel: dict[str, Any], series: list[tuple[str, list[tuple[float, float]]]], x0: float, y0: float,
         start: float, end: float) -> str:  # fmt: skip
    out = [f'<g transform="translate({x0},{y0})">',
           f'<rect width="{W - 10}" height="{H - 10}" fill="#181b1f" stroke="#2c3235"/>',
           f'<text x="10" y="20" fill="#ccccdc" font-size="13" font-weight="bold">{escape(panel["title"])}</text>']  # fmt: skip
    values = [v for _, points in series for _, v in points]
    top = max(values) if values else 1.0
    top = top * 1.1 if top > 0 else 1.0
    left, right, upper, lower = 50, W - 20, 35, H - 60
    out.append(f'<text x="5" y="{upper + 4}" fill="#8e8e8e" font-size="10">{top:.3g}</text>')
    out.append(f'<text x="5" y="{lower}" fill="#8e8e8e" font-size="10">0</text>')
    out.append(f'<line x1="{left}" y1="{lower}" x2="{right}" y2="{lower}" stroke="#2c3235"/>')
    for i, (name, points) in enumerate(series[:6]):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(
            f"{left + (t - start) / (end - start) * (right - left):.1f},{lower - v / top * (lower - upper):.1f}"
            for t, v in points
        )
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        last = points[-1][1] if points else 0
        out.append(f'<rect x="{left}" y="{lower + 10 + 12 * i - 8}" width="8" height="8" fill="{colour}"/>')
        label = f"{name[:48]}  last {last:.3g}"
        out.append(f'<text x="{left + 12}" y="{lower + 10 + 12 * i}" fill="#ccccdc" font-size="10">{escape(label)}</text>')  # fmt: skip
    if not series:
        out.append(f'<text x="{left}" y="{(upper + lower) / 2}" fill="#8e8e8e" font-size="12">No data</text>')
    out.append("</g>")
    return "\n".join(out)


def render(base: str, dashboard: dict[str, Any], minutes: float, end: float | None = None) -> str:
    end = end or time.time()
    start = end - minutes * 60
    step = max(1.0, minutes * 60 / 120)
    panels = [p for p in dashboard["panels"] if p["type"] == "timeseries"]
    parts = []
    for n, panel in enumerate(panels):
        series = []
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "30s").replace("$team", ".*").replace("$provider", ".*")
            for result in query_range(base, expr, start, end, step):
                points = [(float(t), float(v)) for t, v in result["values"] if v not in ("NaN", "+Inf", "-Inf")]
                series.append((legend(target.get("legendFormat", ""), result["metric"]), points))
        parts.append(draw(panel, series, (n % COLS) * W, (n // COLS) * H + 40, start, end))
    rows = (len(panels) + COLS - 1) // COLS
    title = escape(f"{dashboard['title']} (preview from Prometheus, last {minutes:g} min)")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{COLS * W}" height="{rows * H + 40}" '
        f'font-family="Inter, Helvetica, Arial, sans-serif">\n<rect width="100%" height="100%" fill="#111217"/>\n'
        f'<text x="10" y="26" fill="#ccccdc" font-size="16">{title}</text>\n' + "\n".join(parts) + "\n</svg>\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--dashboard", type=Path, default=Path(__file__).parent / "sluice-dashboard.json")
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--end", type=float, help="unix time the window ends (default: now)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(args.prometheus, json.loads(args.dashboard.read_text()), args.minutes, args.end))


if __name__ == "__main__":
    main()
