"""Bonus accrual entries for a campaign's entrants ('Начислить бонусы').

An accrual's id is built from campaign, step, customer and occasion, so it is the same in every
re-run of the date and the warehouse's primary key refuses a second one.
"""

from __future__ import annotations

import polars as pl

from loyalty_assets.config.campaigns import Campaign
from loyalty_assets.sources.schemas import MONEY

ACCRUALS_SCHEMA: dict[str, pl.DataType] = {
    "accrual_id": pl.String(),
    "campaign_id": pl.String(),
    "step_id": pl.String(),
    "customer_id": pl.Int64(),
    "occasion": pl.String(),
    "amount": MONEY,
    "accrued_at": pl.Datetime("us", "UTC"),
    "expires_at": pl.Datetime("us", "UTC"),
    "legal_entity": pl.String(),
    "reason": pl.String(),
}


def build_accruals(campaign: Campaign, entrants: pl.DataFrame) -> pl.DataFrame:
    """One accrual per accrue step and non-control entrant, accrued at the trigger instant.

    `expires_at` = `accrued_at` + `lifetime_days` (no expiry when the step gives no lifetime).
    """
    receiving = entrants.filter(pl.col("is_control").not_())
    parts = [
        receiving.select(
            pl.concat_str(
                pl.lit(f"{campaign.id}:{step.id}:"),
                pl.col("customer_id").cast(pl.String()),
                pl.lit(":"),
                pl.col("occasion"),
            ).alias("accrual_id"),
            pl.lit(campaign.id).alias("campaign_id"),
            pl.lit(step.id).alias("step_id"),
            "customer_id",
            "occasion",
            pl.lit(str(step.amount)).cast(MONEY).alias("amount"),
            pl.col("triggered_at").alias("accrued_at"),
            (
                pl.col("triggered_at") + pl.duration(days=step.lifetime_days)
                if step.lifetime_days
                else pl.lit(None, dtype=pl.Datetime("us", "UTC"))
            ).alias("expires_at"),
            pl.lit(step.legal_entity).alias("legal_entity"),
            pl.concat_str(pl.lit(f"{step.reason or campaign.name}: "), pl.col("occasion")).alias("reason"),
        )
        for step in campaign.accrual_steps()
    ]
    if not parts:
        return pl.DataFrame(schema=ACCRUALS_SCHEMA)
    return pl.concat(parts).cast(ACCRUALS_SCHEMA).sort("customer_id", "step_id")  # type: ignore[arg-type]
