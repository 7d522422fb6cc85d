"""Outbound messages for a campaign's entrants: channel rules, rendering, send time and batches.

A message goes only to a present, subscribed (and, for email, deliverable) address; everybody else
is returned in `skipped` with the reason, so the activity log says why a customer got no email.
Rendering is the one per-message Python loop (Jinja2 needs it); everything around it is columnar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from loyalty_assets.config.campaigns import Campaign, SendEmail, SendText
from loyalty_assets.sources.frames import AsOf
from loyalty_assets.transforms.local_time import add_local_date, with_zone
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

_STEP_CHANNEL = {"send_email": "email", "send_sms": "sms", "send_push": "push"}


@dataclass(frozen=True)
class MessageBatch:
    outbox: pl.DataFrame
    skipped: pl.DataFrame


def build_messages(
    campaign: Campaign,
    entrants: pl.DataFrame,
    accruals: pl.DataFrame,
    customers: pl.DataFrame,
    renderer: TemplateRenderer,
    as_of: AsOf,
) -> MessageBatch:
    """Render every message step for the non-control entrants and plan its send time."""
    receiving = entrants.filter(pl.col("is_control").not_())
    profile = with_zone(customers, as_of.program_tz)
    people = receiving.join(profile, on="customer_id", how="left")
    people = _with_bonus(people, accruals, as_of)
    outboxes: list[pl.DataFrame] = []
    skipped: list[pl.DataFrame] = []
    for step in campaign.message_steps():
        channel = _STEP_CHANNEL[step.type]
        address, rules = CHANNELS[channel]
        reason = pl.coalesce([pl.when(broken).then(pl.lit(name)) for name, broken in rules])
        checked = people.with_columns(reason.alias("__reason"))
        skipped.append(
            checked.filter(pl.col("__reason").is_not_null()).select(
                "customer_id",
                "occasion",
                pl.lit(step.id).alias("step_id"),
                pl.lit(channel).alias("channel"),
                pl.col("__reason").alias("reason"),
                "triggered_at",
            )
        )
        sendable = checked.filter(pl.col("__reason").is_null())
        outboxes.append(_render(campaign, step, channel, sendable, address, renderer))
    outbox = pl.concat(outboxes) if outboxes else pl.DataFrame(schema=OUTBOX_SCHEMA)
    outbox = plan_batches(outbox, campaign.settings.max_messages_per_hour)
    skipped_frame = pl.concat(skipped) if skipped else pl.DataFrame(schema=SKIPPED_SCHEMA)
    return MessageBatch(
        outbox=outbox.cast(OUTBOX_SCHEMA).sort("send_at", "customer_id", "step_id"),  # type: ignore[arg-type]
        skipped=skipped_frame.cast(SKIPPED_SCHEMA).sort("customer_id", "step_id"),  # type: ignore[arg-type]
    )


def _with_bonus(people: pl.DataFrame, accruals: pl.DataFrame, as_of: AsOf) -> pl.DataFrame:
    """Attach the first accrual step's amount and expiry (as a local date) for the templates."""
    first = (
        accruals.sort("step_id")
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
    return add_local_date(joined, "triggered_at", "send_date")


def _render(
    campaign: Campaign,
    step: SendEmail | SendText,
    channel: str,
    sendable: pl.DataFrame,
    address: str,
    renderer: TemplateRenderer,
) -> pl.DataFrame:
    if isinstance(step, SendEmail):
        body_template, template_name = renderer.file(step.template), step.template
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
        pl.concat_str(
            pl.lit(f"{campaign.id}:{step.id}:{channel}:"),
            pl.col("customer_id").cast(pl.String()),
            pl.lit(":"),
            pl.col("occasion"),
        ).alias("message_id"),
        pl.lit(campaign.id).alias("campaign_id"),
        pl.lit(step.id).alias("step_id"),
        "customer_id",
        "occasion",
        pl.lit(channel).alias("channel"),
        pl.col(address).str.strip_chars().alias("recipient"),
        pl.Series("subject", subjects, dtype=pl.String()),
        pl.Series("body", bodies, dtype=pl.String()),
        pl.lit(template_name).alias("template"),
        "variant",
        pl.col("triggered_at").alias("send_at"),
        pl.lit(1, dtype=pl.Int64()).alias("batch_no"),
    )


def template_variables(campaign: Campaign, row: dict[str, Any]) -> dict[str, Any]:
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
            k: row.get(k)
            for k in ("customer_id", "first_name", "email", "phone", "city", "gender", "birth_date")
        },
        "bonus": bonus,
        "campaign": {"id": campaign.id, "name": campaign.name},
        "occasion": row["occasion"],
        "event_date": row["event_date"],
        "send_date": row.get("send_date"),
    }


def plan_batches(outbox: pl.DataFrame, per_hour: int | None) -> pl.DataFrame:
    """Spread messages to at most `per_hour` per hour: batch n is sent n-1 hours after the trigger time.

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
