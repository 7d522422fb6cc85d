"""`loyalty explain`: why one customer did or did not enter a campaign on a date, and what followed.

It runs the campaign's day through the very functions the assets run (`dry_run.day_inputs` →
`transforms.campaign_day.run_day`:
`campaign_entrants` → `campaign_journeys` → `campaign_accruals` → `campaign_messages`), on the same
inputs, then reads this customer's rows out of each stage. The per-condition view evaluates each
audience or filter condition alone with `compile_filter`, the compiler the segments use. Personal
data (addresses, names) is masked in the output.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from loyalty_assets.config.campaigns import (
    AnniversaryTrigger,
    Campaign,
    DateArrivalTrigger,
    EventTrigger,
    FilterStep,
)
from loyalty_assets.config.catalog import Catalog
from loyalty_assets.config.filters import Condition, Filter, ValueType, iter_conditions
from loyalty_assets.dry_run import DayInputs, DayOutputs, campaign_outputs, day_inputs
from loyalty_assets.transforms.entry import select_entrants
from loyalty_assets.transforms.features import column_for
from loyalty_assets.transforms.segments import compile_filter
from loyalty_assets.transforms.triggers import date_field

PERSONAL = {"email", "phone", "push_token", "first_name", "last_name", "recipient"}

RULES = {
    "not_in_audience": "not in the campaign's audience on this date",
    "occasion_already_handled": "this occasion was already handled on another date",
    "already_entered_once": "once_per_customer: entered before",
    "reentry_blocked": "reentry_days: entered within the re-entry interval",
    "same_day_repeat": "another occasion of the same day entered first",
}

SKIPS = {
    "no_email": "no e-mail address",
    "email_unsubscribed": "unsubscribed from e-mail",
    "email_invalid": "e-mail address not deliverable (email_valid = false)",
    "no_phone": "no phone number",
    "sms_unsubscribed": "unsubscribed from SMS",
    "no_push_token": "no push token",
    "push_unsubscribed": "unsubscribed from push",
    "frequency_cap": "the programme's frequency cap was reached",
}


def _describe(cond: Condition) -> str:
    params = cond.model_dump(exclude_none=True, by_alias=True, exclude={"field", "op", "value"})
    extra = f" {params}" if params else ""
    op = getattr(cond.op, "value", cond.op)
    return f"{cond.field} {op or ''} {cond.value if cond.value is not None else ''}{extra}".replace("  ", " ").strip()


def _value(row: pl.DataFrame, cond: Condition) -> Any:
    if cond.value_type in (ValueType.SAMPLE, ValueType.SEGMENT):
        return None
    column = column_for(cond)
    if column not in row.columns or row.is_empty():
        return "(not computed)"
    if column in PERSONAL or column.removeprefix("customer.") in PERSONAL:
        return "***"
    return row.get_column(column)[0]


def condition_lines(
    filter: Filter, features_row: pl.DataFrame, members: dict[str, pl.DataFrame], salt: str, indent: str = "    "
) -> list[str]:
    """One line per condition: met or not, the condition, and the customer's own value."""
    lines = []
    for _, cond in iter_conditions(filter):
        try:
            met = bool(features_row.select(compile_filter(cond, members, sample_salt=salt)).item())
        except pl.exceptions.ColumnNotFoundError:
            lines.append(f"{indent}?   {_describe(cond)} — not computed for this date")
            continue
        theirs = _value(features_row, cond)
        own = "" if theirs is None else f" — the customer's value: {theirs}"
        lines.append(f"{indent}{'yes' if met else 'NO '} {_describe(cond)}{own}")
    return lines


def _trigger_lines(campaign: Campaign, inputs: DayInputs, customer_id: int, fired: pl.DataFrame) -> list[str]:
    trigger = campaign.trigger
    lines = [f"trigger: {trigger.type}" + (f" on {trigger.field}" if hasattr(trigger, "field") else "")]
    if isinstance(trigger, AnniversaryTrigger | DateArrivalTrigger):
        anchor = date_field(inputs.frames, inputs.point, trigger.field).filter(pl.col("customer_id") == customer_id)
        value = anchor.get_column("anchor")[0] if anchor.height else None
        lines.append(f"  the customer's {trigger.field}: {value if value is not None else '(none)'}")
    if isinstance(trigger, EventTrigger):
        lines.append(f"  event: {trigger.event}")
    if fired.is_empty():
        lines.append(f"  did NOT fire for this customer on {inputs.point.date}")
    for occasion, at in fired.select("occasion", "triggered_at").rows():
        lines.append(f"  fired: occasion {occasion} at {at:%Y-%m-%d %H:%M} UTC")
    return lines


def explain(
    catalog: Catalog,
    customer_id: int,
    campaign_id: str,
    day: date,
    *,
    data_dir: Path,
    database_url: str | None = None,
    source_database_url: str | None = None,
    storage_dir: Path | None = None,
) -> list[str]:
    """The explanation as printable lines (from the state D−1's run stored in `storage_dir`)."""
    inputs = day_inputs(
        catalog, campaign_id, day, data_dir=data_dir, source_database_url=source_database_url, storage_dir=storage_dir
    )
    campaign = catalog.campaigns[campaign_id]
    lines = [f"customer {customer_id} · campaign {campaign_id} ({campaign.name}) · {day}"]
    if inputs.frames.customers.filter(pl.col("customer_id") == customer_id).is_empty():
        return [*lines, "not a known customer as of this date (not registered by then, or set aside in quarantine)"]
    if not campaign.is_live_on(day):
        window = f"start_date {campaign.start_date or '–'}, end_date {campaign.end_date or '–'}"
        return [*lines, f"the campaign is not live on {day}: status {campaign.status}, {window}"]
    out = campaign_outputs(inputs, campaign_id)
    lines += _entry_lines(catalog, campaign, inputs, out, customer_id)
    lines += _journey_lines(campaign, inputs, out, customer_id)
    return lines


def _entry_lines(
    catalog: Catalog, campaign: Campaign, inputs: DayInputs, out: DayOutputs, customer_id: int
) -> list[str]:
    entered = out.entered
    mine = pl.col("customer_id") == customer_id
    fired = entered.fired.filter(mine) if entered.fired is not None else pl.DataFrame()
    lines = ["", "ENTRY", *_trigger_lines(campaign, inputs, customer_id, fired)]
    features_row = inputs.features.filter(mine)
    audience = campaign.audience
    if audience is not None:
        allowed = entered.audience is None or customer_id in entered.audience.to_list()
        lines.append(f"audience: {'the customer is in it' if allowed else 'the customer is NOT in it'}")
        if audience.segment:
            member = inputs.members_today.get(audience.segment, pl.DataFrame(schema={"customer_id": pl.Int64()}))
            inside = customer_id in member.get_column("customer_id").to_list()
            lines.append(f"    {'yes' if inside else 'NO '} member of segment {audience.segment}")
            saved = catalog.segments.get(audience.segment)
            if saved is not None and not inside:
                lines += condition_lines(saved.filter, features_row, inputs.members_today, audience.segment, "      ")
        if audience.filter is not None:
            lines += condition_lines(audience.filter, features_row, inputs.members_today, campaign.id)
    history = inputs.history.triggered.filter(mine & (pl.col("partition_date") != inputs.point.date))
    for occasion, on in history.select("occasion", "partition_date").sort("partition_date").rows():
        lines.append(f"earlier entry: {occasion} on {on}")
    if fired.height:
        _, counts = select_entrants(
            campaign,
            fired,
            run_date=inputs.point.date,
            audience=entered.audience,
            history=inputs.history.triggered,
            global_control=entered.global_control,
            winner=entered.decision.winner if entered.decision else None,
        )
        lines += [f"kept out: {text}" for rule, text in RULES.items() if counts.get(rule)]
    row = entered.entrants.filter(mine)
    for variant, is_control, occasion in row.select("variant", "is_control", "occasion").rows():
        if is_control and variant == "global_control":
            lines.append(f"entered ({occasion}) in the GLOBAL control group: recorded, no accrual, no message")
        elif is_control:
            pct = campaign.settings.control_group_percent
            lines.append(f"entered ({occasion}) in the campaign's control group ({pct}%): recorded, nothing sent")
        else:
            lines.append(f"entered ({occasion})" + (f", variant {variant}" if variant else ""))
    if row.is_empty():
        lines.append("result: did not enter on this date")
    if entered.decision is not None:
        lines.append(f"A/B decision: {entered.decision.winner or 'none'} ({entered.decision.reason})")
    return lines


def _journey_lines(campaign: Campaign, inputs: DayInputs, out: DayOutputs, customer_id: int) -> list[str]:
    mine = pl.col("customer_id") == customer_id
    lines = ["", "JOURNEY"]
    if out.journey is None or out.accruals is None or out.batch is None:
        return [*lines, "the campaign's audience gate failed on this date: no steps ran (see `loyalty summary`)"]
    resumed = inputs.history.pending_due.filter(mine)
    for node, at in resumed.select("node", "at").rows():
        lines.append(f"resumed at step {node} (waiting since an earlier day, due {at:%Y-%m-%d %H:%M} UTC)")
    actions = out.journey.actions.filter(mine)
    if (
        actions.is_empty()
        and resumed.is_empty()
        and out.entered.entrants.filter(mine & ~pl.col("is_control")).is_empty()
    ):
        return [*lines, "no steps on this date"]
    for step_id, step_type, at in actions.select("step_id", "step_type", "at").rows():
        lines.append(f"step {step_id} ({step_type}) at {at:%Y-%m-%d %H:%M} UTC")
    steps = {s.id: s for s in campaign.all_steps()}
    for step_id, reason in out.journey.exits.filter(mine).select("step_id", "reason").rows():
        if reason == "filtered_out":
            lines.append(f"left at filter {step_id}: its condition was not met")
            step = steps.get(step_id)
            if isinstance(step, FilterStep) and step.filter is not None:
                lines += condition_lines(
                    step.filter, inputs.features.filter(mine), inputs.members_today, f"{campaign.id}:{step_id}"
                )
        elif reason == "completed":
            lines.append("journey completed")
        else:
            lines.append(f"left at {step_id}: {reason}")
    for node, at in out.journey.pending.filter(mine).select("node", "at").rows():
        lines.append(f"waiting at step {node} until {at:%Y-%m-%d %H:%M} UTC (continues in that day's run)")
    for amount, expires in out.accruals.filter(mine).select("amount", "expires_at").rows():
        lines.append(f"bonus accrued: {amount}, expires {expires:%Y-%m-%d %H:%M} UTC")
    planned = dict(actions.select("step_id", "at").rows())
    quiet = campaign.settings.quiet_hours
    for step_id, channel, send_at, batch in (
        out.batch.outbox.filter(mine).select("step_id", "channel", "send_at", "batch_no").rows()
    ):
        why = []
        if planned.get(step_id) is not None and send_at != planned[step_id]:
            if quiet is not None and channel in quiet.channels:
                why.append(f"quiet hours {quiet.start:%H:%M}–{quiet.end:%H:%M}")
            if batch > 1:
                why.append(f"sending-speed limit: batch {batch}")
            why = why or ["moved"]
        moved = f" (moved from {planned[step_id]:%Y-%m-%d %H:%M}: {', '.join(why)})" if why else ""
        lines.append(f"message {step_id} by {channel} at {send_at:%Y-%m-%d %H:%M} UTC, batch {batch}{moved}")
    for step_id, channel, reason in out.batch.skipped.filter(mine).select("step_id", "channel", "reason").rows():
        lines.append(f"message {step_id} by {channel} SKIPPED: {SKIPS.get(reason, reason)}")
    return lines
