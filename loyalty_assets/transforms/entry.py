"""Who enters a campaign on date D: trigger hits narrowed by audience, history and control group.

History is what earlier dates' runs wrote to `triggered_customers`. Because it is read by
partition date, a backfill run in date order makes the same decisions as the daily runs did.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from loyalty_assets.config.campaigns import Campaign
from loyalty_assets.transforms.ab_testing import assign_variants
from loyalty_assets.transforms.hashing import in_percent
from loyalty_assets.transforms.triggers import TRIGGERED_SCHEMA

ENTRANTS_SCHEMA: dict[str, pl.DataType] = {
    **TRIGGERED_SCHEMA,
    "variant": pl.String(),
    "is_control": pl.Boolean(),
}

HISTORY_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.Int64(),
    "occasion": pl.String(),
    "partition_date": pl.Date(),
}


def select_entrants(
    campaign: Campaign,
    fired: pl.DataFrame,
    *,
    run_date: date,
    audience: pl.Series | None,
    history: pl.DataFrame,
    global_control: pl.Series | None = None,
    winner: str | None = None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Entrants (with `is_control`) and how many trigger hits each rule removed.

    - audience: only customers in `audience` (None = everybody);
    - once per occasion: an occasion already handled on another date is not handled again;
    - re-entry: with `settings.reentry_days: N`, a customer who entered on any of the N days
      before D does not enter again;
    - once per customer: with `settings.once_per_customer`, nobody enters twice, ever;
    - control group: `settings.control_group_percent` of entrants, stable per campaign and
      customer, are recorded with `is_control = true` and get no accrual and no message;
    - global control group: its members (`global_control`) are recorded the same way, with
      variant `global_control`, unless the campaign sets `exclude_global_control: false`;
    - A/B: the others get their variant (the adaptive split's `winner` once decided).
    """
    counts = {"fired": fired.height}
    current = fired
    if audience is not None:
        current = current.filter(pl.col("customer_id").is_in(audience.implode()))
    counts["not_in_audience"] = fired.height - current.height

    others = history.filter(pl.col("partition_date") != run_date)
    before = current.height
    current = current.join(others.select("customer_id", "occasion"), on=["customer_id", "occasion"], how="anti")
    counts["occasion_already_handled"] = before - current.height

    before = current.height
    if campaign.settings.once_per_customer:
        earlier = history.filter(pl.col("partition_date") < run_date).select("customer_id").unique()
        current = current.join(earlier, on="customer_id", how="anti")
    counts["already_entered_once"] = before - current.height

    before = current.height
    if campaign.settings.reentry_days:
        window_start = run_date - timedelta(days=campaign.settings.reentry_days)
        recent = (
            history.filter((pl.col("partition_date") >= window_start) & (pl.col("partition_date") < run_date))
            .select("customer_id")
            .unique()
        )
        current = current.join(recent, on="customer_id", how="anti")
    counts["reentry_blocked"] = before - current.height

    before = current.height
    if campaign.settings.once_per_customer or campaign.settings.reentry_days:
        # several occasions of one customer on D (two purchases): only the day's first enters
        first = (
            current.sort("triggered_at", "occasion")
            .group_by("customer_id", maintain_order=True)
            .first()
            .select("customer_id", "occasion")
        )
        current = current.join(first, on=["customer_id", "occasion"], how="semi", maintain_order="left")
    counts["same_day_repeat"] = before - current.height

    ids = current.get_column("customer_id")
    control = in_percent(ids, f"control:{campaign.id}", float(campaign.settings.control_group_percent))
    held_out = (
        ids.is_in(global_control.implode())
        if global_control is not None and campaign.settings.exclude_global_control
        else pl.Series([False] * len(ids), dtype=pl.Boolean())
    )
    split = campaign.ab_split()
    variants = (
        assign_variants(split, campaign.id, ids, winner=winner)
        if split is not None
        else pl.Series("variant", [None] * len(ids), dtype=pl.String())
    )
    entrants = current.with_columns(
        pl.when(held_out)
        .then(pl.lit("global_control"))
        .when(control)
        .then(pl.lit(None, dtype=pl.String()))
        .otherwise(variants)
        .alias("variant"),
        (control | held_out).alias("is_control"),
    ).select(list(ENTRANTS_SCHEMA))
    counts["entered"] = entrants.height
    counts["control"] = int((control & held_out.not_()).sum())
    counts["global_control"] = int(held_out.sum())
    for name, n in entrants.filter(pl.col("is_control").not_()).group_by("variant").len().iter_rows():
        if name is not None:
            counts[f"variant:{name}"] = n
    return entrants.cast(ENTRANTS_SCHEMA), counts  # type: ignore[arg-type]
