"""Campaign results as Markdown (the Dagster UI's metadata and the CLI's summary)."""

from __future__ import annotations

from loyalty_assets.transforms.results import CampaignResults, format_value

GROUP_COLUMNS = ("customers", "buyers", "conversion", "checks", "revenue", "revenue_per_customer", "avg_check")


def _cell(value: object) -> str:
    text = format_value(value)
    return "–" if text is None else text


def results_markdown(r: CampaignResults) -> str:
    """Groups, differences with intervals, money, sample ratio, A/B and attribution, as Markdown."""
    level = f"{r.confidence:.0%}"
    lines = [f"### {r.campaign_id}: entrants {r.start} … {r.end}", ""]
    lines += [
        "| scope | variant | group | " + " | ".join(GROUP_COLUMNS) + " |",
        "|" + "---|" * (3 + len(GROUP_COLUMNS)),
    ]
    for g in r.groups.iter_rows(named=True):
        cells = [g["scope"], g["variant"], g["group"], *(g[c] for c in GROUP_COLUMNS)]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", f"**Test − control** ({level} intervals)", ""]
    lines += ["| scope | variant | metric | test | control | difference | low | high | method | significant |"]
    lines += ["|" + "---|" * 10]
    for d in r.differences.iter_rows(named=True):
        cells = [
            d[k]
            for k in (
                "scope",
                "variant",
                "metric",
                "test",
                "control",
                "difference",
                "ci_low",
                "ci_high",
                "method",
                "significant",
            )
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "**Money**", ""] + [f"- {k}: {_cell(v)}" for k, v in r.money.items()]
    s = r.sample_ratio
    lines += [
        "",
        f"**Sample ratio**: control {s.control} of {s.test + s.control} "
        f"(expected share {s.expected_control_share:.4f}), "
        f"chi-square p = {_cell(s.p_value)}{' — MISMATCH' if s.mismatch else ''}",
    ]
    if r.ab is not None:
        lines += ["", f"**A/B** ({level}): winner {r.ab.winner or 'none yet'} — {r.ab.reason}"]
    lines += ["", "**Attribution**", ""] + [f"- {k}: {_cell(v)}" for k, v in r.attributed.items()]
    lines += ["", *(f"> {note}" for note in r.notes)]
    return "\n".join(lines)
