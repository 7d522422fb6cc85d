"""Favourite-category cashback (seed 001): the `preference` of `favourite_categories` put to use.

For each check, the lines whose category is one of the customer's favourite categories for the
period containing the check (the check's local date in the customer's zone; a category includes its
sub-categories) earn `preference` percent of their amount. Rules:

- a favourite counts for checks at or after it was chosen (`chosen_at <= ts`), so a choice made on
  the 20th does not pay back purchases of the 5th;
- a line under two favourite categories (e.g. `food` 3 and `dairy` 5) earns the highest percent, once;
- `preference` is read as a percent (`5`, `7.5`, `5%`, `7,5`); empty, unparsable, negative or above
  100 earns nothing;
- the check's cashback is the exact sum of amount × percent, rounded half up to the kopeck once per
  check, in integer arithmetic (no binary floats).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import polars as pl

from loyalty_assets.sources.frames import AsOf, SourceFrames
from loyalty_assets.sources.schemas import MONEY
from loyalty_assets.transforms.local_time import add_local_date, with_zone

CASHBACK_SCHEMA: dict[str, pl.DataType] = {
    "check_id": pl.String(),
    "customer_id": pl.Int64(),
    "ts": pl.Datetime("us", "UTC"),
    "total": MONEY,
    "favourite_amount": MONEY,
    "cashback": MONEY,
}


def category_closure(categories: pl.DataFrame) -> pl.DataFrame:
    """`ancestor`, `category_id`: every category under each category, itself included.

    One join per tree level (a handful), never a loop over rows; cycle-safe (stops when no new pair).
    """
    parents = categories.select("category_id", "parent_id").filter(pl.col("parent_id").is_not_null())
    pairs = categories.select(pl.col("category_id").alias("ancestor"), "category_id")
    frontier = pairs
    while frontier.height:
        step = (
            frontier.join(parents, left_on="category_id", right_on="parent_id", how="inner")
            .select("ancestor", pl.col("category_id_right").alias("category_id"))
            .join(pairs, on=["ancestor", "category_id"], how="anti")
            .unique()
        )
        pairs = pl.concat([pairs, step])
        frontier = step
    return pairs


def percent_basis_points(preference: pl.Expr) -> pl.Expr:
    """`preference` text as hundredths of a percent (`7.5` → 750); null when not a percent in [0, 100]."""
    text = preference.str.strip_chars().str.strip_chars_end("%").str.strip_chars().str.replace(",", ".")
    value = text.cast(pl.Decimal(12, 2), strict=False)
    return pl.when((value >= 0) & (value <= 100)).then((value * 100).cast(pl.Int64)).otherwise(None)


def favourite_cashback(frames: SourceFrames, as_of: AsOf, checks: pl.DataFrame) -> pl.DataFrame:
    """Per check of `checks` (contract columns), the amount of favourite lines and the cashback earned.

    Checks without a favourite line are present with 0 (callers keep those with cashback > 0).
    """
    people = frames.customers.select("customer_id", "timezone")
    dated = add_local_date(
        with_zone(
            checks.select("check_id", "customer_id", "ts", "total").join(people, on="customer_id"), as_of.program_tz
        ),
        "ts",
        "local_date",
    )
    favourites = (
        frames.favourite_categories.filter(pl.col("chosen_at") < as_of.cutoff_literal)
        .select(
            "customer_id",
            "period_start",
            "period_end",
            "chosen_at",
            pl.col("category_id").alias("ancestor"),
            percent_basis_points(pl.col("preference")).alias("bp"),
        )
        .filter(pl.col("bp").is_not_null())
        .join(category_closure(frames.categories), on="ancestor", how="inner")
    )
    lines = (
        frames.check_items.join(dated.select("check_id", "customer_id", "ts", "local_date"), on="check_id")
        .join(favourites, on=["customer_id", "category_id"], how="inner")
        .filter(
            (pl.col("period_start") <= pl.col("local_date"))
            & (pl.col("local_date") <= pl.col("period_end"))
            & (pl.col("chosen_at") <= pl.col("ts"))
        )
        .group_by("check_id", "line_no")
        .agg(pl.col("amount").first(), pl.col("bp").max())
    )
    per_check = lines.group_by("check_id").agg(
        (pl.col("amount") * 100).cast(pl.Int64).sum().alias("_cents"),
        ((pl.col("amount") * 100).cast(pl.Int64) * pl.col("bp")).sum().alias("_scaled"),
    )
    kopecks = lambda col: pl.col(col).fill_null(0).cast(pl.Decimal(18, 0)) * pl.lit(Decimal("0.01"))  # noqa: E731
    return (
        dated.join(per_check, on="check_id", how="left")
        .with_columns(((pl.col("_scaled") + 5_000) // 10_000).alias("_cashback"))
        .select(
            "check_id",
            "customer_id",
            "ts",
            "total",
            kopecks("_cents").cast(MONEY).alias("favourite_amount"),
            kopecks("_cashback").cast(MONEY).alias("cashback"),
        )
        .cast(CASHBACK_SCHEMA)  # type: ignore[arg-type]
        .sort("check_id")
    )


SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.Int64(),
    "favourite_earned": MONEY,
    "favourite_percent": pl.Decimal(5, 2),
    "favourite_period_end": pl.Date(),
    "favourite_days_left": pl.Int64(),
    "favourite_could_earn_per_1000": MONEY,
}


def favourite_period_summary(frames: SourceFrames, as_of: AsOf, customers: pl.Series | None = None) -> pl.DataFrame:
    """For reminder templates: per customer with favourites for the period containing D (as chosen by
    the cutoff), what the cashback rule paid on their checks of that period so far (`favourite_earned`,
    checks up to the cutoff) and what they could still earn: the highest `favourite_percent` of their
    categories until `favourite_period_end` (`favourite_days_left` days from D, D included), i.e.
    `favourite_could_earn_per_1000` bonuses on every 1000 spent there. Spending is not forecast.

    `customers` limits the work to the customers about to get a message.
    """
    current = frames.favourite_categories.filter(
        (pl.col("period_start") <= as_of.date)
        & (pl.col("period_end") >= as_of.date)
        & (pl.col("chosen_at") < as_of.cutoff_literal)
    )
    if customers is not None:
        current = current.filter(pl.col("customer_id").is_in(customers.implode()))
    if current.is_empty():
        return pl.DataFrame(schema=SUMMARY_SCHEMA)
    since = datetime.combine(current.get_column("period_start").min(), time(0), UTC) - timedelta(days=1)  # type: ignore[arg-type]
    checks = frames.checks.filter(
        (pl.col("ts") >= pl.lit(since).cast(pl.Datetime("us", "UTC")))
        & (pl.col("ts") < as_of.cutoff_literal)
        & pl.col("customer_id").is_in(current.get_column("customer_id").unique().implode())
    )
    earned = (
        favourite_cashback(replace(frames, favourite_categories=current), as_of, checks)
        .group_by("customer_id")
        .agg(pl.col("cashback").sum().cast(MONEY).alias("favourite_earned"))
    )
    rate = current.group_by("customer_id").agg(
        percent_basis_points(pl.col("preference")).max().alias("_bp"), pl.col("period_end").max()
    )
    return (
        rate.join(earned, on="customer_id", how="left")
        .select(
            "customer_id",
            pl.col("favourite_earned").fill_null(pl.lit(Decimal(0)).cast(MONEY)),
            (pl.col("_bp").cast(pl.Decimal(12, 0)) * pl.lit(Decimal("0.01"))).alias("favourite_percent"),
            pl.col("period_end").alias("favourite_period_end"),
            ((pl.col("period_end") - pl.lit(as_of.date)).dt.total_days() + 1).alias("favourite_days_left"),
            (pl.col("_bp").cast(pl.Decimal(12, 0)) * pl.lit(Decimal("0.10"))).alias("favourite_could_earn_per_1000"),
        )
        .cast(SUMMARY_SCHEMA)  # type: ignore[arg-type]
        .sort("customer_id")
    )
