"""Which checks a campaign may claim, and over which window each customer is measured.

Two questions, kept apart on purpose:

- **Attribution** (Loymax's report): a check counts for a message when it falls within
  `attribution_days` after the message's *qualifying event* — by default an email or push once
  opened, an SMS once delivered (`settings.attribution_from`; `sent` counts from the send). A check
  is credited to one message per campaign (that campaign's latest qualifying touch before it). When
  several campaigns touched the customer, the *last touch* across campaigns gets the check
  (`last_touch = true`); the overlapping view keeps every campaign's claim.
- **Measurement windows** (the uplift): test and control must be measured over the same windows,
  and control customers get no message. Each control customer gets a *virtual send time*: the
  moment they would have been messaged, computed by the run's own functions (the chain's waits from
  `journey`, quiet hours and batches from `messages`). Test customers are measured from their real
  first message (or the same virtual time when none went out). Every entrant is measured over
  `[start, start + attribution_days)`, whether they opened anything or not (intention to treat).
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from loyalty_assets.config.campaigns import ABSplit, Campaign, FilterStep, SendEmail, SendText, Step, Wait
from loyalty_assets.transforms.ab_testing import assign_variants
from loyalty_assets.transforms.journey import _waited
from loyalty_assets.transforms.local_time import ZONE, with_zone
from loyalty_assets.transforms.messages import _quiet_hours, plan_batches

UTC_TS = pl.Datetime("us", "UTC")

TOUCH_SCHEMA: dict[str, pl.DataType] = {
    "message_id": pl.String(),
    "campaign_id": pl.String(),
    "customer_id": pl.Int64(),
    "channel": pl.String(),
    "variant": pl.String(),
    "touch_at": UTC_TS,
}

WINDOW_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.Int64(),
    "occasion": pl.String(),
    "partition_date": pl.Date(),
    "group": pl.String(),
    "variant": pl.String(),
    "start_at": UTC_TS,
    "end_at": UTC_TS,
}

_CHANNEL_OF = {"send_email": "email", "send_sms": "sms", "send_push": "push"}


def touches(outbox: pl.DataFrame, communications: pl.DataFrame, rules: Mapping[str, str]) -> pl.DataFrame:
    """One row per outbox message that reached its channel's qualifying event, with its first instant.

    `rules` maps channel → event (`sent`, `delivered`, `opened`, `clicked`). For `sent`, a message
    without a recorded `sent` event counts from its planned `send_at`. Staff notifications never
    count (they go to staff, not to the customer).
    """
    messages = outbox.filter(pl.col("channel").is_in(list(rules))).with_columns(
        pl.col("channel").replace_strict(dict(rules), default=None).alias("__wanted")
    )
    events = (
        communications.select("message_id", "event", "event_at")
        .join(messages.select("message_id", "__wanted"), on="message_id", how="inner")
        .filter(pl.col("event") == pl.col("__wanted"))
        .group_by("message_id")
        .agg(pl.col("event_at").min().alias("__first"))
    )
    joined = messages.join(events, on="message_id", how="left")
    touch_at = (
        pl.when(pl.col("__wanted") == "sent")
        .then(pl.coalesce("__first", "send_at"))
        .otherwise(pl.col("__first"))
        .alias("touch_at")
    )
    return (
        joined.with_columns(touch_at)
        .filter(pl.col("touch_at").is_not_null())
        .select(list(TOUCH_SCHEMA))
        .cast(TOUCH_SCHEMA)  # type: ignore[arg-type]
        .sort("customer_id", "touch_at", "message_id")
    )


def attribute_checks(touches_frame: pl.DataFrame, checks: pl.DataFrame, days: Mapping[str, int]) -> pl.DataFrame:
    """Every (check, campaign) claim: the campaign's latest touch in the `days[campaign]` before the check.

    A check at instant `ts` counts for a touch at `t` when `t <= ts < t + N days`. Per check and
    campaign one message is credited (the latest touch; ties by message id). `last_touch` marks the
    one campaign whose touch is the latest across campaigns (ties by campaign id); `campaigns`
    counts how many campaigns claim the check (the overlapping view).
    """
    window_days = touches_frame.get_column("campaign_id").replace_strict(dict(days), default=0, return_dtype=pl.Int64)
    candidates = (
        touches_frame.with_columns(window_days.alias("__days"))
        .join(checks.select("check_id", "customer_id", "ts", "total"), on="customer_id", how="inner")
        .filter(
            (pl.col("ts") >= pl.col("touch_at"))
            & (pl.col("ts") < pl.col("touch_at") + pl.duration(days=pl.col("__days")))
        )
    )
    per_campaign = (
        candidates.sort("touch_at", "message_id", descending=[True, True])
        .group_by("check_id", "campaign_id", maintain_order=True)
        .first()
    )
    ranked = per_campaign.sort("touch_at", "campaign_id", descending=[True, False]).with_columns(
        (pl.int_range(pl.len()).over("check_id") == 0).alias("last_touch"),
        pl.len().over("check_id").cast(pl.Int64).alias("campaigns"),
    )
    return ranked.select(
        "check_id",
        "customer_id",
        "ts",
        "total",
        "campaign_id",
        "message_id",
        "channel",
        "variant",
        "touch_at",
        "last_touch",
        "campaigns",
    ).sort("check_id", "campaign_id")


def _path_to_first_message(steps: list[Step], variant: str | None) -> tuple[list[Wait], str | None, str | None]:
    """The waits before the first customer message on the main path (filters taken as passed), its
    channel and step id; inside an A/B split, the customer's (or would-be) variant's branch."""
    waits: list[Wait] = []
    for step in steps:
        if isinstance(step, Wait):
            waits.append(step)
        elif isinstance(step, SendEmail | SendText):
            return waits, _CHANNEL_OF[step.type], step.id
        elif isinstance(step, ABSplit):
            branch = next((v for v in step.variants if v.name == variant), None)
            if branch is None:
                return waits, None, None
            more, channel, step_id = _path_to_first_message(branch.steps, variant)
            return waits + more, channel, step_id
        elif isinstance(step, FilterStep):
            continue
    return waits, None, None


def planned_send_times(
    campaign: Campaign, entrants: pl.DataFrame, customers: pl.DataFrame, program_tz: str
) -> pl.DataFrame:
    """When each entrant's first message would go out if nobody were held back (`customer_id,
    occasion, variant, channel, planned_at`).

    Control customers get the variant the split would have given them (the same stable buckets).
    Waits use the journey's function, quiet hours and the sending-speed limit the message builder's,
    over all of a day's entrants together (the control group would have taken places in the batches
    too). A chain without a customer message is measured from the trigger instant.
    """
    split = campaign.ab_split()
    frame = entrants.select("customer_id", "occasion", "partition_date", "triggered_at", "variant", "is_control")
    if split is not None:
        would_be = assign_variants(split, campaign.id, frame.get_column("customer_id"))
        frame = frame.with_columns(
            pl.when(pl.col("variant").is_null() | (pl.col("variant") == "global_control"))
            .then(would_be)
            .otherwise(pl.col("variant"))
            .alias("__path_variant")
        )
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String()).alias("__path_variant"))
    profile = with_zone(customers.select("customer_id", "timezone"), program_tz).select("customer_id", ZONE)
    parts = []
    for (path_variant,), group in frame.partition_by("__path_variant", as_dict=True, maintain_order=True).items():
        waits, channel, step_id = _path_to_first_message(campaign.steps, path_variant)
        tokens = group.with_columns(pl.col("triggered_at").alias("at"))
        for wait in waits:
            tokens = _waited(tokens, wait, profile, program_tz)
        parts.append(
            tokens.with_columns(
                pl.lit(channel, dtype=pl.String()).alias("channel"),
                pl.lit(step_id or "", dtype=pl.String()).alias("step_id"),
                pl.col("at").alias("send_at"),
                pl.lit(1, dtype=pl.Int64()).alias("batch_no"),
            )
        )
    if not parts:
        return pl.DataFrame(
            schema={
                "customer_id": pl.Int64(),
                "occasion": pl.String(),
                "channel": pl.String(),
                "planned_at": UTC_TS,
            }
        )
    planned = pl.concat(parts, how="vertical_relaxed")
    messaged = planned.filter(pl.col("channel").is_not_null())
    days = []
    for _, day in messaged.partition_by("partition_date", as_dict=True, maintain_order=True).items():
        timed = _quiet_hours(campaign, day, profile)
        timed = plan_batches(timed, campaign.settings.max_messages_per_hour)
        days.append(_quiet_hours(campaign, timed, profile))
    unmessaged = planned.filter(pl.col("channel").is_null())
    done = pl.concat([*days, unmessaged], how="vertical_relaxed") if days else unmessaged
    return done.select("customer_id", "occasion", "channel", pl.col("send_at").cast(UTC_TS).alias("planned_at"))


def group_of(entrants: pl.DataFrame) -> pl.Expr:
    """`test`, `control` (the campaign's) or `global_control` for `triggered_customers` rows."""
    return (
        pl.when(pl.col("is_control").not_())
        .then(pl.lit("test"))
        .when(pl.col("variant") == "global_control")
        .then(pl.lit("global_control"))
        .otherwise(pl.lit("control"))
    )


def measurement_windows(
    campaign: Campaign, entrants: pl.DataFrame, outbox: pl.DataFrame, customers: pl.DataFrame, program_tz: str
) -> pl.DataFrame:
    """Per entrant (`triggered_customers` row): group, variant and `[start_at, end_at)` (`WINDOW_SCHEMA`).

    Test: from the first real message of the occasion (else the planned time); control and global
    control: from the virtual send time. Control rows carry their would-be variant, so a variant
    can be compared with the control customers who would have received it.
    """
    if entrants.is_empty():
        return pl.DataFrame(schema=WINDOW_SCHEMA)
    planned = planned_send_times(campaign, entrants, customers, program_tz)
    first_real = (
        outbox.filter(pl.col("campaign_id") == campaign.id)
        .filter(pl.col("channel").is_in(list(_CHANNEL_OF.values())))
        .group_by("customer_id", "occasion")
        .agg(pl.col("send_at").min().alias("__sent"))
    )
    split = campaign.ab_split()
    would_be = (
        assign_variants(split, campaign.id, entrants.get_column("customer_id"))
        if split is not None
        else pl.Series("variant", [None] * entrants.height, dtype=pl.String())
    )
    windows = (
        entrants.with_columns(group_of(entrants).alias("group"), would_be.alias("__would_be"))
        .join(planned.select("customer_id", "occasion", "planned_at"), on=["customer_id", "occasion"], how="left")
        .join(first_real, on=["customer_id", "occasion"], how="left")
        .with_columns(
            pl.when(pl.col("group") == "test")
            .then(pl.coalesce("__sent", "planned_at", "triggered_at"))
            .otherwise(pl.coalesce("planned_at", "triggered_at"))
            .alias("start_at"),
            pl.when(pl.col("group") == "test").then(pl.col("variant")).otherwise(pl.col("__would_be")).alias("variant"),
        )
        .with_columns((pl.col("start_at") + pl.duration(days=campaign.settings.attribution_days)).alias("end_at"))
    )
    return windows.select(list(WINDOW_SCHEMA)).cast(WINDOW_SCHEMA).sort("partition_date", "customer_id", "occasion")  # type: ignore[arg-type]
