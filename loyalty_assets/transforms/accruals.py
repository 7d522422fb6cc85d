"""Bonus accrual entries for a campaign's entrants ('Начислить бонусы').

An accrual's id is built from campaign, step, customer and occasion, so it is the same in every
re-run of the date and the warehouse's primary key refuses a second one.
"""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from loyalty_assets.config.campaigns import Campaign
from loyalty_assets.sources.schemas import MONEY
from loyalty_assets.transforms.ids import step_output_id

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


def percent_of(amount: pl.Expr, percent: Decimal) -> pl.Expr:
    """`percent` % of a Decimal(14,2) amount, rounded half-up to cents, computed in integers (exact)."""
    basis_points = int(percent * 100)
    cents = (amount * 100).cast(pl.Int64)
    rounded = (cents * basis_points + 5_000) // 10_000
    return pl.format("{}.{}", rounded // 100, (rounded % 100).cast(pl.String()).str.zfill(2)).cast(MONEY)


def build_accruals(campaign: Campaign, actions: pl.DataFrame) -> pl.DataFrame:
    """One accrual per executed accrue step, accrued at the instant the customer reached it.

    A fixed `amount`, `percent_of_check` of the triggering check's total, or the
    `favourite_cashback` the trigger computed (`event_amount`; 0 → no accrual). `expires_at` =
    `accrued_at` + `lifetime_days` (no expiry when the step gives no lifetime).
    """
    parts = []
    for step in campaign.accrual_steps():
        done = actions.filter(pl.col("step_id") == step.id)
        if step.favourite_cashback:  # computed by the favourite_purchase trigger (transforms.cashback)
            amount = pl.col("event_amount").cast(MONEY)
        elif step.amount is not None:
            amount = pl.lit(str(step.amount)).cast(MONEY)
        else:
            amount = percent_of(pl.col("check_total"), step.percent_of_check or Decimal(0))
        parts.append(
            done.select(
                step_output_id(campaign.id, step.id).alias("accrual_id"),
                pl.lit(campaign.id).alias("campaign_id"),
                pl.lit(step.id).alias("step_id"),
                "customer_id",
                "occasion",
                amount.alias("amount"),
                pl.col("at").alias("accrued_at"),
                (
                    pl.col("at") + pl.duration(days=step.lifetime_days)
                    if step.lifetime_days
                    else pl.lit(None, dtype=pl.Datetime("us", "UTC"))
                ).alias("expires_at"),
                pl.lit(step.legal_entity).alias("legal_entity"),
                pl.concat_str(pl.lit(f"{step.reason or campaign.name}: "), pl.col("occasion")).alias("reason"),
            ).filter(pl.col("amount") > 0)
        )
    if not parts:
        return pl.DataFrame(schema=ACCRUALS_SCHEMA)
    return pl.concat(parts).cast(ACCRUALS_SCHEMA).sort("customer_id", "step_id")  # type: ignore[arg-type]
