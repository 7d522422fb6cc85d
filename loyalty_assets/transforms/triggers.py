"""Which customers a campaign's trigger fires for on run date D, and at what instant.

A trigger yields one row per (customer, occasion): the occasion names what is being celebrated or
reminded (e.g. `birthday:2025-03-01`), so the same occasion can never be handled twice, whichever
date's run sees it. Dates are compared in the customer's local calendar.
"""

from __future__ import annotations

import calendar
from datetime import timedelta

import polars as pl

from loyalty_assets.config.campaigns import (
    AnniversaryTrigger,
    DateArrivalTrigger,
    FixedDateTrigger,
    Trigger,
)
from loyalty_assets.sources.frames import AsOf, SourceFrames
from loyalty_assets.transforms.anniversaries import anniversary_hits
from loyalty_assets.transforms.local_time import ZONE, add_local_date, add_local_instant, with_zone

TRIGGERED_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.Int64(),
    "occasion": pl.String(),
    "event_date": pl.Date(),
    "triggered_at": pl.Datetime("us", "UTC"),
}

_OCCASION_PREFIX = {
    "birth_date": "birthday",
    "registration_date": "registration_anniversary",
    "first_check_date": "first_check_anniversary",
    "last_check_date": "last_check_anniversary",
}


def date_field(frames: SourceFrames, as_of: AsOf, field: str) -> pl.DataFrame:
    """`customer_id`, `__zone`, `anchor` (a local date) for the trigger's date field, as of D."""
    customers = with_zone(frames.customers.select("customer_id", "timezone"), as_of.program_tz)
    if field == "birth_date":
        return customers.join(
            frames.customers.select("customer_id", pl.col("birth_date").alias("anchor")), on="customer_id"
        )
    if field == "registration_date":
        with_ts = customers.join(frames.customers.select("customer_id", "registered_at"), on="customer_id")
        return add_local_date(with_ts, "registered_at", "anchor").drop("registered_at")
    if field in ("first_check_date", "last_check_date"):
        pick = pl.col("ts").min() if field == "first_check_date" else pl.col("ts").max()
        per_customer = frames.checks.group_by("customer_id").agg(pick.alias("ts"))
        joined = customers.join(per_customer, on="customer_id", how="left")
        return add_local_date(joined, "ts", "anchor").drop("ts")
    if field.startswith("attribute:"):
        name = field.split(":", 1)[1]
        cutoff = as_of.cutoff_literal
        current = (
            frames.customer_attributes.filter(
                (pl.col("name") == name)
                & (pl.col("valid_from") < cutoff)
                & (pl.col("valid_to").is_null() | (pl.col("valid_to") >= cutoff))
            )
            .sort("valid_from")
            .group_by("customer_id")
            .agg(pl.col("value").last())
            .select(
                "customer_id",
                pl.col("value").str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False).alias("anchor"),
            )
        )
        return customers.join(current, on="customer_id", how="left")
    raise ValueError(f"unknown date field {field!r}")


def _prefix(trigger: AnniversaryTrigger | DateArrivalTrigger) -> str:
    if trigger.occasion:
        return trigger.occasion
    if trigger.field.startswith("attribute:"):
        return trigger.field.replace(":", "_", 1)
    return _OCCASION_PREFIX[trigger.field]


def fire(trigger: Trigger, frames: SourceFrames, as_of: AsOf) -> pl.DataFrame:
    """Rows of `TRIGGERED_SCHEMA` for the customers the trigger fires for on `as_of.date`."""
    if isinstance(trigger, FixedDateTrigger):
        return _fixed_date(trigger, frames, as_of)
    event_date = as_of.date - timedelta(days=trigger.offset_days)
    anchors = date_field(frames, as_of, trigger.field)
    if isinstance(trigger, DateArrivalTrigger) and trigger.repeat == "once":
        hit = (pl.col("anchor") == pl.lit(event_date)).fill_null(False)
    else:
        interval = trigger.interval_months if isinstance(trigger, AnniversaryTrigger) else 12
        min_k = 1 if isinstance(trigger, AnniversaryTrigger) else 0
        hit, _ = anniversary_hits(
            pl.col("anchor"),
            event_date,
            interval_months=interval,
            missing_day=trigger.missing_day,
            min_k=min_k,
        )
    fired = anchors.filter(hit).with_columns(
        pl.lit(f"{_prefix(trigger)}:{event_date.isoformat()}").alias("occasion"),
        pl.lit(event_date).alias("event_date"),
        pl.lit(as_of.date).alias("__run_date"),
    )
    return _at(fired, trigger.at)


def _fixed_date(trigger: FixedDateTrigger, frames: SourceFrames, as_of: AsOf) -> pl.DataFrame:
    day = as_of.date
    if trigger.on_date is not None:
        fires = trigger.on_date == day
    else:
        last = calendar.monthrange(day.year, day.month)[1]
        fires = day.day == min(trigger.day_of_month or 1, last)
    if not fires:
        return pl.DataFrame(schema=TRIGGERED_SCHEMA)
    customers = frames.customers.select("customer_id", "timezone")
    if trigger.timezone:
        customers = customers.with_columns(pl.lit(trigger.timezone).alias("timezone"))
    fired = with_zone(customers, as_of.program_tz).with_columns(
        pl.lit(f"{trigger.occasion or 'date'}:{day.isoformat()}").alias("occasion"),
        pl.lit(day).alias("event_date"),
        pl.lit(day).alias("__run_date"),
    )
    return _at(fired, trigger.at)


def _at(fired: pl.DataFrame, at: object) -> pl.DataFrame:
    timed = add_local_instant(fired, "__run_date", at, "triggered_at")  # type: ignore[arg-type]
    return timed.select(list(TRIGGERED_SCHEMA)).sort("customer_id").cast(TRIGGERED_SCHEMA)  # type: ignore[arg-type]


__all__ = ["TRIGGERED_SCHEMA", "ZONE", "date_field", "fire"]
