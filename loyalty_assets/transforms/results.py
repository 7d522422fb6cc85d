"""Did a campaign work? Test versus control over the same windows, money, A/B, funnel — pure functions.

Inputs are plain frames (the campaign's `triggered_customers`, `message_outbox` and `bonus_accruals`
rows, every campaign's outbox for last-touch attribution, and the point-in-time sources), so the
results asset, the report and the tests compute the same numbers from the same rows.

Units: an *entrant* is one `triggered_customers` row (customer and occasion); `customers` counts
entrants. Each is measured over `[start, start + attribution_days)` (see `transforms.attribution`).
A *buyer* has at least one check in the window; conversion = buyers / customers; revenue = sum of
check totals in windows; revenue per customer = revenue / customers; average check = revenue /
checks. Statistics are in `transforms.uplift`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import polars as pl

from loyalty_assets.config.campaigns import Campaign, GlobalControlGroup
from loyalty_assets.sources.frames import AsOf, utc_literal
from loyalty_assets.sources.schemas import MONEY
from loyalty_assets.transforms.attribution import attribute_checks, measurement_windows, touches
from loyalty_assets.transforms.control_groups import global_control_members
from loyalty_assets.transforms.local_time import add_local_date, with_zone
from loyalty_assets.transforms.uplift import (
    Interval,
    SampleRatio,
    Winner,
    mean_difference,
    proportion_difference,
    sample_ratio_check,
    significant_winner,
    welch_p_value,
)

CENT = Decimal("0.01")
FUNNEL_STAGES = ("sent", "delivered", "opened", "clicked", "purchased")

GROUP_SCHEMA: dict[str, pl.DataType] = {
    "scope": pl.String(),
    "variant": pl.String(),
    "group": pl.String(),
    "customers": pl.Int64(),
    "buyers": pl.Int64(),
    "conversion": pl.Float64(),
    "checks": pl.Int64(),
    "revenue": MONEY,
    "revenue_per_customer": MONEY,
    "avg_check": MONEY,
}

DIFF_SCHEMA: dict[str, pl.DataType] = {
    "scope": pl.String(),
    "variant": pl.String(),
    "metric": pl.String(),
    "test": pl.Float64(),
    "control": pl.Float64(),
    "difference": pl.Float64(),
    "ci_low": pl.Float64(),
    "ci_high": pl.Float64(),
    "confidence": pl.Float64(),
    "method": pl.String(),
    "significant": pl.Boolean(),
    "p_value": pl.Float64(),
}


def cents(value: Decimal | float | int) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class CampaignResults:
    campaign_id: str
    start: date
    end: date
    confidence: float
    groups: pl.DataFrame  # GROUP_SCHEMA
    differences: pl.DataFrame  # DIFF_SCHEMA
    money: dict[str, Decimal | float | None]
    sample_ratio: SampleRatio
    ab: Winner | None
    attributed: dict[str, Decimal | int]
    funnel: pl.DataFrame
    cumulative: pl.DataFrame  # day, group, revenue_per_customer (cumulative)
    notes: list[str] = field(default_factory=list)

    def table(self) -> pl.DataFrame:
        """Every figure as one long table (`section, variant, group, metric, value`): what the
        warehouse table `campaign_results` holds and what the report shows."""
        rows: list[dict[str, Any]] = []
        for g in self.groups.iter_rows(named=True):
            for metric in (
                "customers",
                "buyers",
                "conversion",
                "checks",
                "revenue",
                "revenue_per_customer",
                "avg_check",
            ):
                rows.append(_row(g["scope"], g["variant"], g["group"], metric, g[metric]))
        for d in self.differences.iter_rows(named=True):
            for metric in ("difference", "ci_low", "ci_high", "p_value"):
                rows.append(_row(f"difference:{d['scope']}", d["variant"], d["metric"], metric, d[metric]))
        for metric, value in self.money.items():
            rows.append(_row("money", None, None, metric, value))
        srm = self.sample_ratio
        for metric in (
            "test",
            "control",
            "expected_control_share",
            "observed_control_share",
            "chi_square",
            "p_value",
            "mismatch",
        ):
            rows.append(_row("sample_ratio", None, None, metric, getattr(srm, metric)))
        for metric, value in self.attributed.items():
            rows.append(_row("attribution", None, None, metric, value))
        if self.ab is not None:
            rows.append(_row("ab", None, None, "winner", self.ab.winner))
            for variant, rate in self.ab.rates.items():
                rows.append(_row("ab", variant, None, "conversion", rate))
        return pl.DataFrame(
            rows,
            schema={
                "section": pl.String(),
                "variant": pl.String(),
                "group": pl.String(),
                "metric": pl.String(),
                "value": pl.String(),
            },
            orient="row",
        )


def _row(section: str, variant: str | None, group: str | None, metric: str, value: object) -> dict[str, Any]:
    return {"section": section, "variant": variant, "group": group, "metric": metric, "value": format_value(value)}


def format_value(value: object) -> str | None:
    """The one text form of a figure (table, metadata and report all use it)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def customer_outcomes(windows: pl.DataFrame, checks: pl.DataFrame) -> pl.DataFrame:
    """Per entrant: its window and the checks (count, revenue) its customer made inside it."""
    inside = (
        windows.select("customer_id", "occasion", "start_at", "end_at")
        .join(checks.select("check_id", "customer_id", "ts", "total"), on="customer_id", how="inner")
        .filter((pl.col("ts") >= pl.col("start_at")) & (pl.col("ts") < pl.col("end_at")))
        .group_by("customer_id", "occasion")
        .agg(pl.len().cast(pl.Int64).alias("checks"), pl.col("total").sum().cast(MONEY).alias("revenue"))
    )
    return windows.join(inside, on=["customer_id", "occasion"], how="left").with_columns(
        pl.col("checks").fill_null(0),
        pl.col("revenue").fill_null(pl.lit(Decimal(0)).cast(MONEY)),
    )


def group_figures(outcomes: pl.DataFrame) -> dict[str, Any]:
    """customers, buyers, conversion, checks, revenue, revenue per customer, average check."""
    customers = outcomes.height
    buyers = int((outcomes.get_column("checks") > 0).sum()) if customers else 0
    checks = int(outcomes.get_column("checks").sum()) if customers else 0
    revenue = cents(outcomes.get_column("revenue").sum()) if customers else cents(0)
    return {
        "customers": customers,
        "buyers": buyers,
        "conversion": buyers / customers if customers else None,
        "checks": checks,
        "revenue": revenue,
        "revenue_per_customer": cents(revenue / customers) if customers else None,
        "avg_check": cents(revenue / checks) if checks else None,
    }


def _floats(outcomes: pl.DataFrame) -> list[float]:
    return [float(v) for v in outcomes.get_column("revenue").to_list()]


def _check_totals(outcomes: pl.DataFrame, windows_checks: pl.DataFrame) -> list[float]:
    keys = outcomes.select("customer_id", "occasion")
    return [
        float(v)
        for v in windows_checks.join(keys, on=["customer_id", "occasion"], how="semi").get_column("total").to_list()
    ]


def _checks_in_windows(windows: pl.DataFrame, checks: pl.DataFrame) -> pl.DataFrame:
    return (
        windows.select("customer_id", "occasion", "start_at", "end_at")
        .join(checks.select("check_id", "customer_id", "ts", "total"), on="customer_id", how="inner")
        .filter((pl.col("ts") >= pl.col("start_at")) & (pl.col("ts") < pl.col("end_at")))
    )


def compare_groups(
    scope: str,
    variant: str | None,
    test: pl.DataFrame,
    control: pl.DataFrame,
    window_checks: pl.DataFrame,
    confidence: float,
) -> list[dict[str, Any]]:
    """Differences test − control: conversion (Newcombe), revenue per customer and average check (Welch)."""
    t, c = group_figures(test), group_figures(control)
    rows = []
    conv = proportion_difference(t["buyers"], t["customers"], c["buyers"], c["customers"], confidence)
    rows.append(
        _diff(scope, variant, "conversion", t["conversion"], c["conversion"], conv, None, confidence, "newcombe_wilson")
    )
    a, b = _floats(test), _floats(control)
    rpc = mean_difference(a, b, confidence)
    rows.append(
        _diff(
            scope,
            variant,
            "revenue_per_customer",
            _f(t["revenue_per_customer"]),
            _f(c["revenue_per_customer"]),
            rpc,
            welch_p_value(a, b),
            confidence,
            "welch_t",
        )
    )
    ca, cb = _check_totals(test, window_checks), _check_totals(control, window_checks)
    avg = mean_difference(ca, cb, confidence)
    rows.append(
        _diff(
            scope,
            variant,
            "avg_check",
            _f(t["avg_check"]),
            _f(c["avg_check"]),
            avg,
            welch_p_value(ca, cb),
            confidence,
            "welch_t",
        )
    )
    return rows


def _f(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def _diff(
    scope: str,
    variant: str | None,
    metric: str,
    test: float | None,
    control: float | None,
    interval: Interval | None,
    p_value: float | None,
    confidence: float,
    method: str,
) -> dict[str, Any]:
    return {
        "scope": scope,
        "variant": variant,
        "metric": metric,
        "test": test,
        "control": control,
        "difference": (test - control) if test is not None and control is not None else None,
        "ci_low": interval.low if interval else None,
        "ci_high": interval.high if interval else None,
        "confidence": confidence,
        "method": method,
        "significant": interval.significant if interval else None,
        "p_value": p_value,
    }


def campaign_results(
    campaign: Campaign,
    *,
    start: date,
    end: date,
    entrants: pl.DataFrame,
    outbox: pl.DataFrame,
    all_outbox: pl.DataFrame,
    accruals: pl.DataFrame,
    communications: pl.DataFrame | pl.LazyFrame,
    checks: pl.DataFrame | pl.LazyFrame,
    customers: pl.DataFrame,
    ledger: pl.DataFrame | pl.LazyFrame,
    program_tz: str,
    attribution_days: Mapping[str, int],
    attribution_rules: Mapping[str, Mapping[str, str]],
) -> CampaignResults:
    """Results of the entrants of `start..end` (partition dates, both included), on the given data.

    `entrants`, `outbox`, `accruals`: this campaign's rows (any dates; filtered here); `all_outbox`:
    every campaign's messages (last touch across campaigns); `attribution_days` / `attribution_rules`:
    per campaign id. `checks` etc. are the point-in-time sources (as of `end`'s cutoff); the event
    tables may be lazy: only the rows a window, a touch or a link can reach are loaded
    (`reachable_checks`, `reachable_events`), so history before the first entrant is never read.
    """
    cid = campaign.id
    confidence = float(campaign.settings.confidence)
    in_range = (pl.col("partition_date") >= start) & (pl.col("partition_date") <= end)
    entrants = entrants.filter(in_range)
    outbox = outbox.filter(in_range & (pl.col("campaign_id") == cid))
    windows = measurement_windows(campaign, entrants, outbox, customers, program_tz)
    communications = reachable_events(communications, [all_outbox, outbox])
    rules = {k: dict(v) for k, v in attribution_rules.items()}
    all_touches = pl.concat(
        [
            touches(all_outbox.filter(pl.col("campaign_id") == other), communications, rules[other])
            for other in sorted(set(all_outbox.get_column("campaign_id").unique().to_list()) | {cid})
            if other in rules
        ]
    )
    mine = outbox.get_column("message_id")
    all_touches = all_touches.filter((pl.col("campaign_id") != cid) | pl.col("message_id").is_in(mine.implode()))
    checks = reachable_checks(checks, windows, all_touches)
    outcomes = customer_outcomes(windows, checks)
    window_checks = _checks_in_windows(windows, checks).join(
        windows.select("customer_id", "occasion", "group", "variant"), on=["customer_id", "occasion"], how="left"
    )
    test = outcomes.filter(pl.col("group") == "test")
    control = outcomes.filter(pl.col("group") == "control")

    group_rows: list[dict[str, Any]] = []
    diff_rows: list[dict[str, Any]] = []
    for name, frame in (
        ("test", test),
        ("control", control),
        ("global_control", outcomes.filter(pl.col("group") == "global_control")),
    ):
        group_rows.append({"scope": "campaign", "variant": None, "group": name, **group_figures(frame)})
    diff_rows += compare_groups("campaign", None, test, control, window_checks, confidence)

    split = campaign.ab_split()
    ab = None
    if split is not None:
        names = [v.name for v in split.variants]
        for name in names:
            variant_test = test.filter(pl.col("variant") == name)
            group_rows.append({"scope": "variant", "variant": name, "group": "test", **group_figures(variant_test)})
            diff_rows += compare_groups("variant", name, variant_test, control, window_checks, confidence)
        buyers = {n: int((test.filter(pl.col("variant") == n).get_column("checks") > 0).sum()) for n in names}
        sizes = {n: test.filter(pl.col("variant") == n).height for n in names}
        ab = significant_winner(buyers, sizes, confidence, order=names)

    # money: incremental revenue = revenue_test − revenue_control × n_test / n_control
    t, c = group_figures(test), group_figures(control)
    accrued_rows = accruals.filter(in_range & (pl.col("campaign_id") == cid))
    accrued = cents(accrued_rows.get_column("amount").sum()) if accrued_rows.height else cents(0)
    redeemed = _redeemed(ledger, accrued_rows, cid)
    money: dict[str, Decimal | float | None] = {
        "bonus_accrued": accrued,
        "bonus_redeemed": redeemed,
    }
    if t["customers"] and c["customers"]:
        incremental = cents(t["revenue"] - c["revenue"] * Decimal(t["customers"]) / Decimal(c["customers"]))
        rpc = mean_difference(_floats(test), _floats(control), confidence)
        money["incremental_revenue"] = incremental
        money["incremental_revenue_low"] = cents(rpc.low * t["customers"]) if rpc else None
        money["incremental_revenue_high"] = cents(rpc.high * t["customers"]) if rpc else None
        money["net_incremental_revenue"] = incremental - accrued
        money["net_incremental_revenue_low"] = money["incremental_revenue_low"] - accrued if rpc else None  # type: ignore[operator]
        money["net_incremental_revenue_high"] = money["incremental_revenue_high"] - accrued if rpc else None  # type: ignore[operator]
    else:
        for key in ("incremental_revenue", "incremental_revenue_low", "incremental_revenue_high"):
            money[key] = None
        for key in ("net_incremental_revenue", "net_incremental_revenue_low", "net_incremental_revenue_high"):
            money[key] = None

    srm = sample_ratio_check(t["customers"], c["customers"], campaign.settings.control_group_percent)

    claims = attribute_checks(all_touches, checks, attribution_days)
    own = claims.filter(pl.col("campaign_id") == cid)
    last = own.filter(pl.col("last_touch"))
    attributed: dict[str, Decimal | int] = {
        "attributed_checks": last.height,
        "attributed_revenue": cents(last.get_column("total").sum()) if last.height else cents(0),
        "attributed_checks_overlapping": own.height,
        "attributed_revenue_overlapping": cents(own.get_column("total").sum()) if own.height else cents(0),
        "shared_checks": int((own.get_column("campaigns") > 1).sum()),
    }
    funnel = campaign_funnel(outbox, communications, own, customers, program_tz)
    cumulative = cumulative_revenue(windows, window_checks, customers, program_tz, start, end)
    notes = []
    if srm.mismatch:
        notes.append(
            f"sample-ratio mismatch: control share {srm.observed_control_share:.3f} vs configured "
            f"{srm.expected_control_share:.3f} (chi-square p = {srm.p_value:.2g}); the comparison is suspect"
        )
    return CampaignResults(
        campaign_id=cid,
        start=start,
        end=end,
        confidence=confidence,
        groups=pl.DataFrame(group_rows, schema=GROUP_SCHEMA, orient="row"),
        differences=pl.DataFrame(diff_rows, schema=DIFF_SCHEMA, orient="row"),
        money=money,
        sample_ratio=srm,
        ab=ab,
        attributed=attributed,
        funnel=funnel,
        cumulative=cumulative,
        notes=notes,
    )


def reachable_checks(
    checks: pl.DataFrame | pl.LazyFrame, windows: pl.DataFrame, touches_frame: pl.DataFrame
) -> pl.DataFrame:
    """The checks a measurement window or an attribution touch can reach, loaded (from a lazy scan:
    only those rows are read). Every use of checks here asks `ts >= start_at` of a window or
    `ts >= touch_at` of a touch of the same customer, so nothing before the earliest of them, nor of
    other customers, can count."""
    starts = [f.get_column(c).min() for f, c in ((windows, "start_at"), (touches_frame, "touch_at")) if f.height]
    lazy = checks.lazy()
    if not starts:
        return lazy.head(0).collect()
    reached = pl.concat([windows.select("customer_id"), touches_frame.select("customer_id")]).unique()
    since = utc_literal(min(starts))  # type: ignore[type-var,arg-type]
    return lazy.filter((pl.col("ts") >= since) & pl.col("customer_id").is_in(reached.to_series().implode())).collect()


def reachable_events(communications: pl.DataFrame | pl.LazyFrame, outboxes: list[pl.DataFrame]) -> pl.DataFrame:
    """The communication events of the given messages, loaded: touches and the funnel read nothing else."""
    ids = pl.concat([o.select("message_id") for o in outboxes]).unique()
    return communications.lazy().join(ids.lazy(), on="message_id", how="semi").collect()


def _redeemed(ledger: pl.DataFrame | pl.LazyFrame, accruals: pl.DataFrame, campaign_id: str) -> Decimal:
    """Redemptions the ledger links to this campaign (`source` = the campaign id or one of its accrual ids)."""
    if "source" not in ledger.lazy().collect_schema().names():
        return cents(0)
    ids = (
        [campaign_id, *accruals.get_column("accrual_id").to_list()]
        if "accrual_id" in accruals.columns
        else [campaign_id]
    )
    linked = ledger.lazy().filter((pl.col("kind") == "redemption") & pl.col("source").is_in(ids)).collect()
    return cents(linked.get_column("amount").abs().sum()) if linked.height else cents(0)


def campaign_funnel(
    outbox: pl.DataFrame, communications: pl.DataFrame, claims: pl.DataFrame, customers: pl.DataFrame, program_tz: str
) -> pl.DataFrame:
    """Messages reaching each stage, per channel, variant and day (program-local date of the send).

    sent/delivered/opened/clicked: distinct messages with that event in `communications`;
    purchased: messages this campaign's attribution credits with at least one check.
    """
    events = communications.select("message_id", "event").unique()
    messages = outbox.select("message_id", "campaign_id", "customer_id", "channel", "variant", "send_at")
    messages = add_local_date(
        with_zone(messages.with_columns(pl.lit(None, dtype=pl.String()).alias("timezone")), program_tz),
        "send_at",
        "day",
    ).drop("__zone", "timezone")
    flags = [
        pl.col("message_id")
        .is_in(events.filter(pl.col("event") == stage).get_column("message_id").implode())
        .alias(stage)
        for stage in FUNNEL_STAGES[:-1]
    ]
    flags.append(pl.col("message_id").is_in(claims.get_column("message_id").implode()).alias("purchased"))
    return (
        messages.with_columns(flags)
        .group_by("campaign_id", "channel", "variant", "day")
        .agg(pl.len().cast(pl.Int64).alias("messages"), *(pl.col(s).sum().cast(pl.Int64) for s in FUNNEL_STAGES))
        .sort("campaign_id", "channel", "variant", "day", nulls_last=True)
    )


def cumulative_revenue(
    windows: pl.DataFrame,
    window_checks: pl.DataFrame,
    customers: pl.DataFrame,
    program_tz: str,
    start: date,
    last: date,
) -> pl.DataFrame:
    """Per program-local day and group, revenue in windows so far divided by the group's entrants."""
    sizes = windows.group_by("group").len()
    zoned = window_checks.with_columns(pl.lit(None, dtype=pl.String()).alias("timezone"))
    daily = (
        add_local_date(with_zone(zoned, program_tz), "ts", "day")
        .group_by("group", "day")
        .agg(pl.col("total").sum().cast(MONEY).alias("revenue"))
    )
    first = min([start, *daily.get_column("day").to_list()]) if daily.height else start
    end = max([last, *daily.get_column("day").to_list()]) if daily.height else last
    grid = pl.DataFrame({"day": pl.date_range(first, end, "1d", eager=True)}).join(sizes.select("group"), how="cross")
    return (
        grid.join(daily, on=["group", "day"], how="left")
        .with_columns(pl.col("revenue").fill_null(pl.lit(Decimal(0)).cast(MONEY)))
        .sort("group", "day")
        .with_columns(pl.col("revenue").cum_sum().over("group").alias("cumulative"))
        .join(sizes, on="group", how="left")
        .with_columns((pl.col("cumulative").cast(pl.Float64) / pl.col("len")).round(2).alias("revenue_per_customer"))
        .select("day", "group", "revenue_per_customer")
    )


def programme_results(
    customers: pl.DataFrame,
    checks: pl.DataFrame | pl.LazyFrame,
    group: GlobalControlGroup,
    start: date,
    end: date,
    program_tz: str,
    confidence: float = 0.95,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The programme as a whole: everybody else versus the global control group over `start..end`.

    Membership is that of `start`'s period; checks are those of local program days start..end.
    Returns the group figures and the differences (as for a campaign). Of lazy `checks`, only those
    from the start of `start` in the program's zone are loaded.
    """
    ids = customers.get_column("customer_id")
    held = global_control_members(ids, group, start).get_column("customer_id")
    checks = checks.lazy().filter(pl.col("ts") >= AsOf(start, program_tz).start_literal).collect()
    zoned = add_local_date(
        with_zone(checks.with_columns(pl.lit(None, dtype=pl.String()).alias("timezone")), program_tz), "ts", "day"
    )
    period = zoned.filter((pl.col("day") >= start) & (pl.col("day") <= end))
    per_customer = period.group_by("customer_id").agg(
        pl.len().cast(pl.Int64).alias("checks"), pl.col("total").sum().cast(MONEY).alias("revenue")
    )
    base = (
        customers.select("customer_id")
        .with_columns(
            pl.lit("").alias("occasion"),
            pl.when(pl.col("customer_id").is_in(held.implode()))
            .then(pl.lit("control"))
            .otherwise(pl.lit("test"))
            .alias("group"),
        )
        .join(per_customer, on="customer_id", how="left")
        .with_columns(pl.col("checks").fill_null(0), pl.col("revenue").fill_null(pl.lit(Decimal(0)).cast(MONEY)))
    )
    test, control = base.filter(pl.col("group") == "test"), base.filter(pl.col("group") == "control")
    rows = [
        {"scope": "programme", "variant": None, "group": "test", **group_figures(test)},
        {"scope": "programme", "variant": None, "group": "global_control", **group_figures(control)},
    ]
    checks_keyed = period.with_columns(pl.lit("").alias("occasion"))
    diffs = compare_groups("programme", None, test, control, checks_keyed, confidence)
    return pl.DataFrame(rows, schema=GROUP_SCHEMA, orient="row"), pl.DataFrame(diffs, schema=DIFF_SCHEMA, orient="row")
