"""`loyalty report`: one campaign's results as a self-contained HTML file that reads offline.

Charts are drawn by plotly with plotly.js inlined once in the page (no network, no CDN): uplift
with interval bars, the funnel, cumulative revenue per customer for test and control, and the A/B
variants. Every figure of `CampaignResults.table()` is also in the page's table, one cell per
figure with `data-section`, `data-variant`, `data-group` and `data-metric` attributes, so a test can
compare the page with the results table.
"""

from __future__ import annotations

import html
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from loyalty_assets.transforms.results import FUNNEL_STAGES, CampaignResults

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th{background:#f3f3f3} td.k{text-align:left}
.note{background:#fff3cd;padding:.5rem 1rem;border-left:4px solid #e0a800}
"""


def _attr(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _figures_table(r: CampaignResults) -> str:
    rows = ["<table id='results'><tr><th>section</th><th>variant</th><th>group</th><th>metric</th><th>value</th></tr>"]
    for section, variant, group, metric, value in r.table().iter_rows():
        rows.append(
            f"<tr><td class='k'>{_attr(section)}</td><td class='k'>{_attr(variant)}</td>"
            f"<td class='k'>{_attr(group)}</td><td class='k'>{_attr(metric)}</td>"
            f"<td class='v' data-section='{_attr(section)}' data-variant='{_attr(variant)}' "
            f"data-group='{_attr(group)}' data-metric='{_attr(metric)}'>{_attr(value)}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _empty(fig: Any, text: str) -> Any:
    """An explicit empty state: the chart is there and says why it has nothing to show."""
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def _charts(r: CampaignResults) -> list[tuple[str, Any]]:
    """Uplift (conversion, revenue per customer), funnel, cumulative revenue, A/B: always drawn."""
    import plotly.graph_objects as go

    charts: list[tuple[str, Any]] = []
    for metric in ("conversion", "revenue_per_customer"):
        rows = r.differences.filter((pl.col("metric") == metric) & pl.col("difference").is_not_null())
        labels = [f"{s}{':' + v if v else ''}" for s, v in rows.select("scope", "variant").rows()]
        est = rows.get_column("difference").to_list()
        low = [lo if lo is not None else e for lo, e in zip(rows.get_column("ci_low").to_list(), est, strict=True)]
        high = [hi if hi is not None else e for hi, e in zip(rows.get_column("ci_high").to_list(), est, strict=True)]
        fig = go.Figure(
            go.Bar(
                x=labels,
                y=est,
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [h - e for h, e in zip(high, est, strict=True)],
                    "arrayminus": [e - lo for lo, e in zip(low, est, strict=True)],
                },
            )
        )
        fig.update_layout(title=f"Uplift in {metric.replace('_', ' ')} (test − control, {r.confidence:.0%} interval)")
        charts.append((f"uplift_{metric}", fig if rows.height else _empty(fig, "no test and control entrants yet")))
    stages = ("messages", *FUNNEL_STAGES)  # planned in the outbox, then each event
    totals = r.funnel.group_by("channel").agg(pl.col(s).sum() for s in stages).sort("channel")
    fig = go.Figure(
        [
            go.Bar(name=str(row["channel"]), x=list(stages), y=[row[s] for s in stages])
            for row in totals.iter_rows(named=True)
        ]
    )
    fig.update_layout(title="Funnel: messages reaching each stage", barmode="group")
    charts.append(("funnel", fig if totals.height else _empty(fig, "no messages yet")))
    fig = go.Figure(
        [
            go.Scatter(
                name=str(g),
                x=[d.isoformat() for d in part.get_column("day")],
                y=part.get_column("revenue_per_customer").to_list(),
                mode="lines",
            )
            for (g,), part in r.cumulative.partition_by("group", as_dict=True, maintain_order=True).items()
        ]
    )
    fig.update_layout(title="Cumulative revenue per customer in the measurement windows")
    charts.append(("cumulative", fig if r.cumulative.height else _empty(fig, "no entrants yet")))
    if r.ab is not None:
        variants = r.groups.filter(pl.col("scope") == "variant")
        fig = go.Figure(
            go.Bar(x=variants.get_column("variant").to_list(), y=variants.get_column("conversion").to_list())
        )
        fig.update_layout(title=f"A/B variants: conversion — winner: {r.ab.winner or 'none yet'}")
        charts.append(("ab", fig))
    return charts


def render_report(r: CampaignResults, *, campaign_name: str, generated_for: date | None = None) -> str:
    """The whole page as one string (plotly.js included)."""
    from plotly.offline import get_plotlyjs

    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(r.campaign_id)} results</title><style>{_STYLE}</style>",
        f"<script>{get_plotlyjs()}</script></head><body>",
        f"<h1>{html.escape(campaign_name)}</h1>",
        f"<p>Campaign <code>{html.escape(r.campaign_id)}</code>, entrants of {r.start} … {r.end}"
        f"{f', data as of {generated_for}' if generated_for else ''}. Intervals at {r.confidence:.0%}: "
        "Newcombe (Wilson score) for conversion, Welch's t for revenue per customer and average check.</p>",
    ]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in r.notes]
    if r.ab is not None:
        parts.append(
            f"<p id='ab'>A/B: winner <b>{html.escape(r.ab.winner or 'none yet')}</b> — {html.escape(r.ab.reason)}</p>"
        )
    for name, fig in _charts(r):
        parts.append(f"<div class='chart' id='chart-{name}'>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"plot-{name}"))
        parts.append("</div>")
    parts.append("<h2>All figures</h2>")
    parts.append(_figures_table(r))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(r: CampaignResults, out: Path, *, campaign_name: str, generated_for: date | None = None) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(r, campaign_name=campaign_name, generated_for=generated_for), encoding="utf-8")
    return out
