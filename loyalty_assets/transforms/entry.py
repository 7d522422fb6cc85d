"""Who enters a campaign on date D: trigger hits narrowed by audience, history and control group.

History is what earlier dates' runs wrote to `triggered_customers`. Because it is read by
partition date, a backfill run in date order makes the same decisions as the daily runs did.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from loyalty_assets.config.campaigns import Campaign
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
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Entrants (with `is_control`) and how many trigger hits each rule removed.

    - audience: only customers in `audience` (None = everybody);
    - once per occasion: an occasion already handled on another date is not handled again;
    - re-entry: with `settings.reentry_days: N`, a customer who entered on any of the N days
      before D does not enter again;
    - control group: `settings.control_group_percent` of entrants, stable per campaign and
      customer, are recorded with `is_control = true` and get no accrual and no message.
    """
    counts = {"fired": fired.height}
    current = fired
    if audience is not None:
        current = current.filter(pl.col("customer_id").is_in(audience.implode()))
    counts["not_in_audience"] = fired.height - current.height

    others = history.filter(pl.col("partition_date") != run_date)
    before = current.height
    current = current.join(
        others.select("customer_id", "occasion"), on=["customer_id", "occasion"], how="anti"
    )
    counts["occasion_already_handled"] = before - current.height

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

    control = in_percent(
        current.get_column("customer_id"),
        f"control:{campaign.id}",
        float(campaign.settings.control_group_percent),
    )
    entrants = current.with_columns(
        pl.lit(None, dtype=pl.String()).alias("variant"),
        control.alias("is_control"),
    ).select(list(ENTRANTS_SCHEMA))
    counts["entered"] = entrants.height
    counts["control"] = int(entrants.get_column("is_control").sum())
    return entrants.cast(ENTRANTS_SCHEMA), counts  # type: ignore[arg-type]
