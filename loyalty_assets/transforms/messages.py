"""Outbound messages for executed send steps: channel rules, rendering, quiet hours, caps, batches.

A message goes only to a present, subscribed (and, for email, deliverable) address; everybody else
is returned in `skipped` with the reason, so the activity log says why a customer got no email.
Quiet hours move a message to the next allowed local time (never drop it); the frequency cap and
the sending-speed limit are applied last, in a stable order, so re-runs plan the same batches.
Rendering is the one per-message Python loop (Jinja2 needs it); everything around it is columnar.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from loyalty_assets.config.campaigns import Campaign, FrequencyCap, NotifyStaff, SendEmail, SendText
from loyalty_assets.sources.frames import AsOf
from loyalty_assets.transforms.ids import step_output_id
from loyalty_assets.transforms.local_time import add_local_date, out_of_quiet_hours, with_zone
from loyalty_assets.transforms.templates import TemplateRenderer

OUTBOX_SCHEMA: dict[str, pl.DataType] = {
    "message_id": pl.String(),
    "campaign_id": pl.String(),
    "step_id": pl.String(),
    "customer_id": pl.Int64(),
    "occasion": pl.String(),
    "channel": pl.String(),
    "recipient": pl.String(),
    "subject": pl.String(),
    "body": pl.String(),
    "template": pl.String(),
    "variant": pl.String(),
    "send_at": pl.Datetime("us", "UTC"),
    "batch_no": pl.Int64(),
}

SKIPPED_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.Int64(),
    "occasion": pl.String(),
    "step_id": pl.String(),
    "channel": pl.String(),
    "reason": pl.String(),
    "triggered_at": pl.Datetime("us", "UTC"),
}


def _blank(column: str) -> pl.Expr:
    return pl.col(column).is_null() | (pl.col(column).str.strip_chars() == "")


#: Per channel: the address column and the rules (reason, broken-when) checked in this order.
CHANNELS: dict[str, tuple[str, list[tuple[str, pl.Expr]]]] = {
    "email": (
        "email",
        [
            ("no_email", _blank("email")),
            ("email_unsubscribed", pl.col("email_subscribed").not_().fill_null(True)),
            ("email_invalid", pl.col("email_valid").not_().fill_null(True)),
        ],
    ),
    "sms": (
        "phone",
        [
            ("no_phone", _blank("phone")),
            ("sms_unsubscribed", pl.col("sms_subscribed").not_().fill_null(True)),
        ],
    ),
    "push": (
        "push_token",
        [
            ("no_push_token", _blank("push_token")),
            ("push_unsubscribed", pl.col("push_subscribed").not_().fill_null(True)),
        ],
    ),
}

_STEP_CHANNEL = {"send_email": "email", "send_sms": "sms", "send_push": "push", "notify_staff": "staff"}


@dataclass(frozen=True)
class MessageBatch:
    outbox: pl.DataFrame
    skipped: pl.DataFrame


def build_messages(
    campaign: Campaign,
    actions: pl.DataFrame,
    accruals: pl.DataFrame,
    customers: pl.DataFrame,
    renderer: TemplateRenderer,
    as_of: AsOf,
    *,
    favourites: pl.DataFrame | None = None,
    recent_messages: pl.DataFrame | None = None,
    frequency_cap: FrequencyCap | None = None,
) -> MessageBatch:
    """Render the messages of the executed send steps in `actions` and plan when they go out.

    `accruals` (this campaign's, any date) supplies `bonus.*` variables; `favourites` (customer_id,
    favourite_categories) the favourite category names; `recent_messages` (customer_id, channel,
    send_at of messages already planned by other campaigns or dates) feeds the frequency cap.
    """
    profile = with_zone(customers, as_of.program_tz)
    people = actions.join(profile, on="customer_id", how="left")
    if favourites is not None:
        people = people.join(favourites, on="customer_id", how="left")
    people = _with_bonus(people, accruals)
    outboxes: list[pl.DataFrame] = []
    skipped: list[pl.DataFrame] = []
    for step in campaign.message_steps():
        channel = _STEP_CHANNEL[step.type]
        mine = people.filter(pl.col("step_id") == step.id)
        if isinstance(step, NotifyStaff):
            outboxes.append(_render(campaign, step, channel, mine, pl.lit(step.recipient), renderer))
            continue
        address, rules = CHANNELS[channel]
        reason = pl.coalesce([pl.when(broken).then(pl.lit(name)) for name, broken in rules])
        checked = mine.with_columns(reason.alias("__reason"))
        skipped.append(_skip(checked.filter(pl.col("__reason").is_not_null()), pl.col("__reason")))
        sendable = checked.filter(pl.col("__reason").is_null())
        outboxes.append(_render(campaign, step, channel, sendable, pl.col(address).str.strip_chars(), renderer))
    outbox = pl.concat(outboxes) if outboxes else pl.DataFrame(schema=OUTBOX_SCHEMA)
    outbox = _quiet_hours(campaign, outbox, profile)
    if frequency_cap is not None:
        outbox, capped = apply_frequency_cap(outbox, recent_messages, frequency_cap, as_of)
        skipped.append(capped)
    outbox = plan_batches(outbox, campaign.settings.max_messages_per_hour)
    outbox = _quiet_hours(campaign, outbox, profile)  # a later batch must not fall into the night either
    skipped_frame = (
        pl.concat([s.select(list(SKIPPED_SCHEMA)).cast(SKIPPED_SCHEMA) for s in skipped])  # type: ignore[arg-type]
        if skipped
        else pl.DataFrame(schema=SKIPPED_SCHEMA)
    )
    return MessageBatch(
        outbox=outbox.cast(OUTBOX_SCHEMA).sort("send_at", "customer_id", "step_id"),  # type: ignore[arg-type]
        skipped=skipped_frame.sort("customer_id", "step_id"),
    )


def _skip(rows: pl.DataFrame, reason: pl.Expr) -> pl.DataFrame:
    return rows.select(
        "customer_id",
        "occasion",
        "step_id",
        pl.col("step_type").replace_strict(_STEP_CHANNEL, default=None).alias("channel"),
        reason.alias("reason"),
        pl.col("at").alias("triggered_at"),
    )


def _with_bonus(people: pl.DataFrame, accruals: pl.DataFrame) -> pl.DataFrame:
    """Attach the occasion's first accrual (amount, expiry as a local date) for the templates."""
    first = (
        accruals.sort("accrued_at", "step_id")
        .group_by("customer_id", "occasion", maintain_order=True)
        .first()
        .select(
            "customer_id",
            "occasion",
            pl.col("amount").alias("bonus_amount"),
            pl.col("expires_at").alias("bonus_expires_at"),
            pl.col("legal_entity").alias("bonus_legal_entity"),
        )
    )
    joined = people.join(first, on=["customer_id", "occasion"], how="left")
    joined = add_local_date(joined, "bonus_expires_at", "bonus_expires_on")
    return add_local_date(joined, "at", "send_date")


def _render(
    campaign: Campaign,
    step: SendEmail | SendText | NotifyStaff,
    channel: str,
    sendable: pl.DataFrame,
    recipient: pl.Expr,
    renderer: TemplateRenderer,
) -> pl.DataFrame:
    if isinstance(step, SendEmail):
        body_template, template_name = renderer.file(step.template), step.template
        subject_template = renderer.text(step.subject)
    elif isinstance(step, NotifyStaff):
        body_template, template_name = renderer.text(step.text), "<inline>"
        subject_template = renderer.text(step.subject)
    else:
        body_template = renderer.file(step.template) if step.template else renderer.text(step.text or "")
        template_name, subject_template = step.template or "<inline>", None
    bodies: list[str] = []
    subjects: list[str | None] = []
    for row in sendable.iter_rows(named=True):
        variables = template_variables(campaign, row)
        bodies.append(body_template.render(**variables))
        subjects.append(subject_template.render(**variables) if subject_template is not None else None)
    return sendable.select(
        step_output_id(campaign.id, step.id, channel=channel).alias("message_id"),
        pl.lit(campaign.id).alias("campaign_id"),
        pl.lit(step.id).alias("step_id"),
        "customer_id",
        "occasion",
        pl.lit(channel).alias("channel"),
        recipient.alias("recipient"),
        pl.Series("subject", subjects, dtype=pl.String()),
        pl.Series("body", bodies, dtype=pl.String()),
        pl.lit(template_name).alias("template"),
        "variant",
        pl.col("at").alias("send_at"),
        pl.lit(1, dtype=pl.Int64()).alias("batch_no"),
    )


def template_variables(campaign: Campaign, row: Mapping[str, Any]) -> dict[str, Any]:
    """The variables a template sees (documented in the README; sampled at catalog load)."""
    bonus = None
    if row.get("bonus_amount") is not None:
        bonus = {
            "amount": row["bonus_amount"],
            "expires_at": row.get("bonus_expires_at"),
            "expires_on": row.get("bonus_expires_on"),
            "legal_entity": row.get("bonus_legal_entity"),
        }
    return {
        "customer": {
            k: row.get(k) for k in ("customer_id", "first_name", "email", "phone", "city", "gender", "birth_date")
        },
        "bonus": bonus,
        "check": {"check_id": row.get("check_id"), "total": row.get("check_total")},
        "event": {"amount": row.get("event_amount"), "date": row.get("event_date")},
        "favourite_categories": list(row.get("favourite_categories") or []),
        "campaign": {"id": campaign.id, "name": campaign.name},
        "variant": row.get("variant"),
        "occasion": row["occasion"],
        "event_date": row["event_date"],
        "send_date": row.get("send_date"),
    }


def _quiet_hours(campaign: Campaign, outbox: pl.DataFrame, profile: pl.DataFrame) -> pl.DataFrame:
    quiet = campaign.settings.quiet_hours
    if quiet is None or outbox.is_empty():
        return outbox
    affected = pl.col("channel").is_in(list(quiet.channels))
    zoned = outbox.join(profile.select("customer_id", "__zone"), on="customer_id", how="left").with_columns(
        pl.col("__zone").fill_null("UTC")
    )
    moved = out_of_quiet_hours(zoned, "send_at", quiet.start, quiet.end, "__moved")
    return moved.with_columns(
        pl.when(affected).then(pl.col("__moved")).otherwise(pl.col("send_at")).alias("send_at")
    ).drop("__moved", "__zone")


def apply_frequency_cap(
    outbox: pl.DataFrame, recent: pl.DataFrame | None, cap: FrequencyCap, as_of: AsOf
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep at most `cap.max_messages` per customer in the rolling window, counting `recent` first.

    `recent` are messages already planned (higher-priority campaigns today, any campaign earlier)
    with `send_at` in the `cap.days` days ending with D. Today's messages are admitted in send
    order; the rest are skipped with reason `frequency_cap`.
    """
    counted = pl.col("channel").is_in(list(cap.channels))
    window_start = as_of.cutoff_literal - pl.duration(days=cap.days)
    already = (
        recent.filter(counted & (pl.col("send_at") >= window_start) & (pl.col("send_at") < as_of.cutoff_literal))
        .group_by("customer_id")
        .agg(pl.len().cast(pl.Int64).alias("__already"))
        if recent is not None
        else pl.DataFrame(schema={"customer_id": pl.Int64(), "__already": pl.Int64()})
    )
    ranked = (
        outbox.sort("send_at", "step_id")
        .join(already, on="customer_id", how="left")
        .with_columns(
            pl.when(counted).then(pl.int_range(pl.len()).over("customer_id", counted)).otherwise(0).alias("__rank"),
            pl.col("__already").fill_null(0),
        )
    )
    over = counted & ((pl.col("__rank") + pl.col("__already")) >= cap.max_messages)
    kept = ranked.filter(over.not_()).drop("__rank", "__already")
    capped = ranked.filter(over).select(
        "customer_id",
        "occasion",
        "step_id",
        "channel",
        pl.lit("frequency_cap").alias("reason"),
        pl.col("send_at").alias("triggered_at"),
    )
    return kept, capped


def plan_batches(outbox: pl.DataFrame, per_hour: int | None) -> pl.DataFrame:
    """Spread messages to at most `per_hour` per hour: batch n is sent n-1 hours after its planned time.

    Order is by planned time then customer id, so the plan is the same on every re-run.
    """
    if per_hour is None or outbox.is_empty():
        return outbox
    ordered = outbox.sort("send_at", "customer_id", "step_id").with_row_index("__n")
    batch = (pl.col("__n") // per_hour).cast(pl.Int64)
    return ordered.with_columns(
        (batch + 1).alias("batch_no"),
        (pl.col("send_at") + pl.duration(hours=batch)).alias("send_at"),
    ).drop("__n")
