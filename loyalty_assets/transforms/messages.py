"""Outbound messages for executed send steps: channel rules, rendering, quiet hours, caps, batches.

A message goes only to a present, subscribed (and, for email, deliverable) address; everybody else
is returned in `skipped` with the reason, so the activity log says why a customer got no email.
Quiet hours move a message to the next allowed local time (never drop it); the frequency cap and
the sending-speed limit are applied last, in a stable order, so re-runs plan the same batches.
Rendering is columnar too: templates run as compiled Polars expressions over a frame of template
variables (`template_frame`), byte-identical to Jinja2's sandbox, which renders only the templates
or rows the compiler does not cover. A message that cannot be rendered for one customer (say
`bonus.amount` for an occasion without an accrual) is skipped with reason `render_error: …`; the
others go out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from loyalty_assets.config.campaigns import Campaign, FrequencyCap, NotifyStaff, SendEmail, SendText
from loyalty_assets.sources.frames import AsOf
from loyalty_assets.transforms.ids import step_output_id
from loyalty_assets.transforms.local_time import add_local_date, out_of_quiet_hours, with_zone
from loyalty_assets.transforms.template_compiler import VARIABLE_DTYPES, CompiledTemplate
from loyalty_assets.transforms.templates import TemplateRenderer

log = logging.getLogger(__name__)

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
    #: `customer_id, __zone` of the outbox's customers while it is not yet scheduled
    #: (`build_messages(..., schedule=False)`), for `schedule_messages`; None once scheduled
    zones: pl.DataFrame | None = None


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
    schedule: bool = True,
) -> MessageBatch:
    """Render the messages of the executed send steps in `actions` and plan when they go out.

    `accruals` (this campaign's, any date) supplies `bonus.*` variables; `favourites` (customer_id,
    favourite_categories) the favourite category names; `recent_messages` (customer_id, channel,
    send_at of messages already planned by other campaigns or dates) feeds the frequency cap.
    With `schedule=False` the hourly limit is left to `schedule_messages`, which must see every
    message of the campaign's day at once (the customers of one shard are not all of them).
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
            sent, failed = _render(campaign, step, channel, mine, pl.lit(step.recipient), renderer)
            outboxes.append(sent)
            skipped.append(failed)
            continue
        address, rules = CHANNELS[channel]
        reason = pl.coalesce([pl.when(broken).then(pl.lit(name)) for name, broken in rules])
        checked = mine.with_columns(reason.alias("__reason"))
        skipped.append(_skip(checked.filter(pl.col("__reason").is_not_null()), pl.col("__reason")))
        sendable = checked.filter(pl.col("__reason").is_null())
        sent, failed = _render(campaign, step, channel, sendable, pl.col(address).str.strip_chars(), renderer)
        outboxes.append(sent)
        skipped.append(failed)
    outbox = pl.concat(outboxes) if outboxes else pl.DataFrame(schema=OUTBOX_SCHEMA)
    outbox = _quiet_hours(campaign, outbox, profile)
    if frequency_cap is not None:
        outbox, capped = apply_frequency_cap(outbox, recent_messages, frequency_cap, as_of)
        skipped.append(capped)
    skipped_frame = (
        pl.concat([s.select(list(SKIPPED_SCHEMA)).cast(SKIPPED_SCHEMA) for s in skipped])  # type: ignore[arg-type]
        if skipped
        else pl.DataFrame(schema=SKIPPED_SCHEMA)
    )
    zones = profile.select("customer_id", "__zone").join(outbox.select("customer_id"), on="customer_id", how="semi")
    batch = MessageBatch(_in_send_order(outbox), skipped_frame.sort("customer_id", "step_id"), zones)
    return schedule_messages(campaign, batch) if schedule else batch


def _in_send_order(outbox: pl.DataFrame) -> pl.DataFrame:
    return outbox.cast(OUTBOX_SCHEMA).sort("send_at", "customer_id", "step_id", "message_id")  # type: ignore[arg-type]


def schedule_messages(campaign: Campaign, batch: MessageBatch) -> MessageBatch:
    """The campaign's hourly limit over all of a day's messages (`plan_batches`), then quiet hours
    again: a later batch must not fall into the night either."""
    if batch.zones is None:
        raise ValueError("these messages are scheduled already")
    outbox = plan_batches(batch.outbox, campaign.settings.max_messages_per_hour)
    outbox = _quiet_hours(campaign, outbox, batch.zones)
    return MessageBatch(outbox=_in_send_order(outbox), skipped=batch.skipped)


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
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(outbox rows, skipped rows): the body first, then the subject, as the sandbox rendered them."""
    body: CompiledTemplate
    subject: CompiledTemplate | None
    if isinstance(step, SendEmail):
        body, template_name = renderer.compiled_file(step.template), step.template
        subject = renderer.compiled_text(step.subject)
    elif isinstance(step, NotifyStaff):
        body, template_name = renderer.compiled_text(step.text), "<inline>"
        subject = renderer.compiled_text(step.subject)
    else:
        body = renderer.compiled_file(step.template) if step.template else renderer.compiled_text(step.text or "")
        template_name, subject = step.template or "<inline>", None
    variables = template_frame(campaign, sendable)
    bodies = body.render(variables)
    subjects = subject.render(variables) if subject is not None else None
    error = (
        pl.coalesce(bodies.get_column("error"), subjects.get_column("error"))
        if subjects is not None
        else bodies.get_column("error")
    )
    rendered = sendable.with_columns(
        bodies.get_column("text").alias("__body"),
        (subjects.get_column("text") if subjects is not None else pl.lit(None, dtype=pl.String())).alias("__subject"),
        error.alias("__error"),
    )
    failed = _skip(rendered.filter(pl.col("__error").is_not_null()), render_error_reason(pl.col("__error")))
    if failed.height:
        log.warning(
            "%s/%s: %d message(s) not rendered, e.g. %s", campaign.id, step.id, failed.height, failed["reason"][0]
        )
    sent = rendered.filter(pl.col("__error").is_null()).select(
        step_output_id(campaign.id, step.id, channel=channel).alias("message_id"),
        pl.lit(campaign.id).alias("campaign_id"),
        pl.lit(step.id).alias("step_id"),
        "customer_id",
        "occasion",
        pl.lit(channel).alias("channel"),
        recipient.alias("recipient"),
        pl.col("__subject").alias("subject"),
        pl.col("__body").alias("body"),
        pl.lit(template_name).alias("template"),
        "variant",
        pl.col("at").alias("send_at"),
        pl.lit(1, dtype=pl.Int64()).alias("batch_no"),
    )
    return sent, failed


#: Contact details (e-mail addresses, phone and card numbers) never reach the log from an error text.
_EMAIL_LIKE = r"[^\s'\"<>@]+@[^\s'\"<>@]+"
_NUMBER_LIKE = r"\+?\d[\d\s()-]{3,}\d"
_REASON_CHARS = 200


def render_error_reason(error: pl.Expr) -> pl.Expr:
    """`render_error: <Type>: <message>`, masked and cut to a readable length, for the activity log."""
    masked = error.str.replace_all(_EMAIL_LIKE, "***@***").str.replace_all(_NUMBER_LIKE, "***")
    return pl.concat_str(pl.lit("render_error: "), masked.str.slice(0, _REASON_CHARS))


def template_frame(campaign: Campaign, people: pl.DataFrame) -> pl.DataFrame:
    """The variables of `template_variables`, one column per path (`bonus.amount`), for compiled templates."""

    def col(name: str, path: str) -> pl.Expr:
        dtype = VARIABLE_DTYPES[path]
        source = pl.col(name) if name in people.columns else pl.lit(None)
        return source.cast(dtype, strict=True).alias(path)

    has_bonus = (pl.col("bonus_amount").is_not_null() if "bonus_amount" in people.columns else pl.lit(False)).alias(
        "bonus"
    )
    favourites = (
        pl.col("favourite_categories").fill_null(pl.lit([], dtype=pl.List(pl.String())))
        if "favourite_categories" in people.columns
        else pl.lit([], dtype=pl.List(pl.String()))
    )
    return people.select(
        pl.lit(True).alias("customer"),
        *(
            col(k, f"customer.{k}")
            for k in ("customer_id", "first_name", "email", "phone", "city", "gender", "birth_date")
        ),
        has_bonus,
        col("bonus_amount", "bonus.amount"),
        col("bonus_expires_at", "bonus.expires_at"),
        col("bonus_expires_on", "bonus.expires_on"),
        col("bonus_legal_entity", "bonus.legal_entity"),
        pl.lit(True).alias("check"),
        col("check_id", "check.check_id"),
        col("check_total", "check.total"),
        pl.lit(True).alias("event"),
        col("event_amount", "event.amount"),
        col("event_date", "event.date"),
        favourites.cast(VARIABLE_DTYPES["favourite_categories"]).alias("favourite_categories"),
        pl.lit(True).alias("favourite"),
        *(
            col(f"favourite_{k}", f"favourite.{k}")
            for k in ("earned", "percent", "period_end", "days_left", "could_earn_per_1000")
        ),
        pl.lit(True).alias("campaign"),
        pl.lit(campaign.id, dtype=pl.String()).alias("campaign.id"),
        pl.lit(campaign.name, dtype=pl.String()).alias("campaign.name"),
        col("variant", "variant"),
        col("occasion", "occasion"),
        col("event_date", "event_date"),
        col("send_date", "send_date"),
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
        # favourite-category cashback of the period containing D (transforms.cashback.favourite_period_summary)
        "favourite": {
            "earned": row.get("favourite_earned"),
            "percent": row.get("favourite_percent"),
            "period_end": row.get("favourite_period_end"),
            "days_left": row.get("favourite_days_left"),
            "could_earn_per_1000": row.get("favourite_could_earn_per_1000"),
        },
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

    Order is by planned time then customer id (then step and message id), so the plan is the same
    on every re-run.
    """
    if per_hour is None or outbox.is_empty():
        return outbox
    keys = [c for c in ("send_at", "customer_id", "step_id", "message_id") if c in outbox.columns]
    ordered = outbox.sort(keys, maintain_order=True).with_row_index("__n")
    batch = (pl.col("__n") // per_hour).cast(pl.Int64)
    return ordered.with_columns(
        (batch + 1).alias("batch_no"),
        (pl.col("send_at") + pl.duration(hours=batch)).alias("send_at"),
    ).drop("__n")
