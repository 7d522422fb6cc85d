"""Which customers a campaign's trigger fires for on run date D, and at what instant.

A trigger yields one row per (customer, occasion): the occasion names what is being celebrated or
reminded (e.g. `birthday:2025-03-01`), so the same occasion can never be handled twice, whichever
date's run sees it. Dates are compared in the customer's local calendar.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, time, timedelta

import polars as pl

from loyalty_assets.config.campaigns import (
    AnniversaryTrigger,
    DateArrivalTrigger,
    EventTrigger,
    FixedDateTrigger,
    Trigger,
)
from loyalty_assets.sources.frames import AsOf, SourceFrames, utc_literal
from loyalty_assets.sources.schemas import MONEY
from loyalty_assets.transforms.anniversaries import anniversary_hits
from loyalty_assets.transforms.cashback import favourite_cashback
from loyalty_assets.transforms.ledger import lots_as_of
from loyalty_assets.transforms.local_time import (
    ZONE,
    add_local_date,
    add_local_instant,
    next_local_time,
    with_zone,
)

TRIGGERED_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.Int64(),
    "occasion": pl.String(),
    "event_date": pl.Date(),
    "triggered_at": pl.Datetime("us", "UTC"),
    "check_id": pl.String(),
    "check_total": MONEY,
    "event_amount": MONEY,
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


def fire(
    trigger: Trigger,
    frames: SourceFrames,
    as_of: AsOf,
    *,
    segment_today: pl.DataFrame | None = None,
    segment_yesterday: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Rows of `TRIGGERED_SCHEMA` for the customers the trigger fires for on `as_of.date`.

    Segment events compare the segment's members today with yesterday's (`segment_today`,
    `segment_yesterday`, `customer_id` frames).
    """
    if isinstance(trigger, EventTrigger):
        return fire_event(trigger, frames, as_of, segment_today=segment_today, segment_yesterday=segment_yesterday)
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


def _at(fired: pl.DataFrame, at: time) -> pl.DataFrame:
    timed = add_local_instant(fired, "__run_date", at, "triggered_at")
    return _shape(timed)


def _shape(fired: pl.DataFrame) -> pl.DataFrame:
    """Select the triggered columns (absent event columns as nulls), sorted for stable output."""
    columns = [
        pl.col(c) if c in fired.columns else pl.lit(None, dtype=dtype).alias(c) for c, dtype in TRIGGERED_SCHEMA.items()
    ]
    return fired.select(columns).cast(TRIGGERED_SCHEMA).sort("customer_id", "occasion")  # type: ignore[arg-type]


def descendants(categories: pl.DataFrame, root: str) -> list[str]:
    """`root` and every category below it in the tree (a handful of joins, not a per-row loop)."""
    found = {root}
    frontier = {root}
    while frontier:
        children = categories.filter(pl.col("parent_id").is_in(list(frontier)))["category_id"].to_list()
        frontier = set(children) - found
        found |= frontier
    return sorted(found)


def fire_event(
    trigger: EventTrigger,
    frames: SourceFrames,
    as_of: AsOf,
    *,
    segment_today: pl.DataFrame | None = None,
    segment_yesterday: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Events of day D (program day: [start of D, cutoff)), one occasion each, at event time + delay."""
    in_day = lambda col: (pl.col(col) >= as_of.start_literal) & (pl.col(col) < as_of.cutoff_literal)  # noqa: E731
    delay = pl.lit(trigger.delay.timedelta)
    day = as_of.date
    event = trigger.event
    if event == "purchase":
        checks = frames.checks.filter(in_day("ts"))
        if trigger.min_total is not None:
            checks = checks.filter(pl.col("total") >= pl.lit(str(trigger.min_total)).cast(MONEY))
        if trigger.category is not None or trigger.product is not None:
            items = frames.check_items
            if trigger.category is not None:
                items = items.filter(pl.col("category_id").is_in(descendants(frames.categories, trigger.category)))
            if trigger.product is not None:
                items = items.filter(pl.col("product_id") == trigger.product)
            checks = checks.join(items.select("check_id").unique(), on="check_id", how="semi")
        fired = checks.select(
            "customer_id",
            pl.concat_str(pl.lit("purchase:"), pl.col("check_id")).alias("occasion"),
            pl.lit(day).alias("event_date"),
            (pl.col("ts") + delay).alias("triggered_at"),
            "check_id",
            pl.col("total").alias("check_total"),
        )
        return _shape(fired)
    if event == "favourite_purchase":
        earned = favourite_cashback(frames, as_of, frames.checks.filter(in_day("ts"))).filter(pl.col("cashback") > 0)
        fired = earned.select(
            "customer_id",
            pl.concat_str(pl.lit("purchase:"), pl.col("check_id")).alias("occasion"),
            pl.lit(day).alias("event_date"),
            (pl.col("ts") + delay).alias("triggered_at"),
            "check_id",
            pl.col("total").alias("check_total"),
            pl.col("cashback").alias("event_amount"),
        )
        return _shape(fired)
    if event == "registration":
        fired = frames.customers.filter(in_day("registered_at")).select(
            "customer_id",
            pl.lit(f"registration:{day.isoformat()}").alias("occasion"),
            pl.lit(day).alias("event_date"),
            (pl.col("registered_at") + delay).alias("triggered_at"),
        )
        return _shape(fired)
    if event == "bonus_accrual":
        fired = frames.bonus_transactions.filter((pl.col("kind") == "accrual") & in_day("ts")).select(
            "customer_id",
            pl.concat_str(pl.lit("accrual:"), pl.col("txn_id")).alias("occasion"),
            pl.lit(day).alias("event_date"),
            (pl.col("ts") + delay).alias("triggered_at"),
            pl.col("amount").alias("event_amount"),
        )
        return _shape(fired)
    if event in ("message_opened", "message_clicked"):
        wanted = event.removeprefix("message_")
        events = frames.communications.filter((pl.col("event") == wanted) & in_day("event_at"))
        if trigger.campaign is not None:
            events = events.filter(pl.col("campaign_id") == trigger.campaign)
        if trigger.channel is not None:
            events = events.filter(pl.col("channel") == trigger.channel)
        fired = events.select(
            "customer_id",
            pl.concat_str(pl.lit(f"{event}:"), pl.col("message_id")).alias("occasion"),
            pl.lit(day).alias("event_date"),
            (pl.col("event_at") + delay).alias("triggered_at"),
        ).unique(["customer_id", "occasion"], keep="first", maintain_order=True)
        return _shape(fired)
    if event in ("segment_entered", "segment_left"):
        today = segment_today if segment_today is not None else pl.DataFrame(schema={"customer_id": pl.Int64()})
        if segment_yesterday is None:
            # Yesterday unknown (never run): nobody "enters", rather than the whole segment at once.
            return pl.DataFrame(schema=TRIGGERED_SCHEMA)
        before = segment_yesterday
        changed = (
            today.join(before, on="customer_id", how="anti")
            if event == "segment_entered"
            else before.join(today, on="customer_id", how="anti")
        )
        return _on_day(changed.select("customer_id"), frames, as_of, f"{event}:{trigger.segment}:{day}", trigger)
    return _bonus_expiry(trigger, frames, as_of)


def _on_day(
    customers: pl.DataFrame, frames: SourceFrames, as_of: AsOf, occasion: str, trigger: EventTrigger
) -> pl.DataFrame:
    """Events without an instant of their own happen at the trigger's local `at` on D (+ delay)."""
    zoned = with_zone(
        customers.join(frames.customers.select("customer_id", "timezone"), on="customer_id", how="left"),
        as_of.program_tz,
    ).with_columns(
        pl.lit(occasion).alias("occasion"),
        pl.lit(as_of.date).alias("event_date"),
        pl.lit(as_of.date).alias("__run_date"),
    )
    timed = add_local_instant(zoned, "__run_date", trigger.at, "triggered_at")
    return _shape(timed.with_columns(pl.col("triggered_at") + pl.lit(trigger.delay.timedelta)))


def _bonus_expiry(trigger: EventTrigger, frames: SourceFrames, as_of: AsOf) -> pl.DataFrame:
    """Expiry warnings and notices from the ledger's lots as of D's cutoff (`transforms.ledger`).

    - `bonus_expiring`: lots with something left whose customer-local expiry day is D +
      `days_before`; `event_amount` is what remains of them (net of redemptions, FIFO), one occasion
      per customer and expiry day; at the trigger's `at` (default 10:00) customer time on D.
    - `bonus_expired`: lots that expired during D (the run's window, like every event trigger)
      with something left; `event_amount` is what expired. The event has its own instant, so it
      fires at the latest of the day's expiry instants (+ `delay`), never before: a default time of
      day never moves it earlier. With an explicit `at`, it fires at the first such local time at or
      after that instant (e.g. `at: "10:00"`: the next morning for bonuses expiring at 23:30).
    """
    lots = lots_as_of(frames, as_of.cutoff)
    people = frames.customers.select("customer_id", "timezone")
    delay = pl.lit(trigger.delay.timedelta)
    if trigger.event == "bonus_expiring":
        target = as_of.date + timedelta(days=trigger.days_before or 0)
        # a local date lies within a day of the same UTC date in every zone (UTC−12…UTC+14): only
        # the lots expiring near the target get a zone and a local date, not every live lot
        near = datetime.combine(target, time(0), UTC)
        live = lots.filter(
            (pl.col("remaining") > 0)
            & (pl.col("expires_at") >= utc_literal(near - timedelta(days=1)))
            & (pl.col("expires_at") < utc_literal(near + timedelta(days=2)))
        )
        zoned = with_zone(live.join(people, on="customer_id", how="inner"), as_of.program_tz)
        due = (
            add_local_date(zoned, "expires_at", "expiry_date")
            .filter(pl.col("expiry_date") == target)
            .group_by("customer_id", ZONE)
            .agg(pl.col("remaining").sum().alias("event_amount"))
            .with_columns(
                pl.lit(f"bonus_expiring:{target.isoformat()}").alias("occasion"),
                pl.lit(target).alias("event_date"),
                pl.lit(as_of.date).alias("__run_date"),
            )
        )
        timed = add_local_instant(due, "__run_date", trigger.at, "triggered_at")
        return _shape(timed.with_columns(pl.col("triggered_at") + delay))
    in_day = (pl.col("expires_at") >= as_of.start_literal) & (pl.col("expires_at") < as_of.cutoff_literal)
    expired = lots.filter(in_day & (pl.col("expired") > 0))
    per_customer = (
        expired.join(people, on="customer_id", how="inner")
        .group_by("customer_id", "timezone")
        .agg(pl.col("expired").sum().alias("event_amount"), pl.col("expires_at").max().alias("__expired_at"))
        .with_columns(
            # the occasion is the run's day (two run days can share a customer-local date); the
            # event date the customer reads is the local date of the expiry
            pl.lit(f"bonus_expired:{as_of.date.isoformat()}").alias("occasion"),
            (pl.col("__expired_at") + delay).alias("__instant"),
        )
    )
    due = add_local_date(with_zone(per_customer, as_of.program_tz), "__expired_at", "event_date")
    if "at" in trigger.model_fields_set:
        timed = next_local_time(due, "__instant", trigger.at, "triggered_at")
    else:
        timed = due.with_columns(pl.col("__instant").alias("triggered_at"))
    return _shape(timed)


__all__ = ["TRIGGERED_SCHEMA", "ZONE", "date_field", "fire"]
