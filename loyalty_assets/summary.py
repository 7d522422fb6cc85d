"""What the pipeline did on one date, per campaign, segment and audience: the operator's overview.

A pure computation over the warehouse's rows for the date (read once by `read_summary_inputs`),
so the CLI (`loyalty summary`), the `daily_summary` asset and the tests share one definition. A
campaign that wrote nothing still gets its line, with the reason: not started, ended, paused, gate
failed or nobody triggered — an empty line is a question an operator would otherwise have to ask.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from loyalty_assets.config.campaigns import Campaign
from loyalty_assets.warehouse.warehouse import Warehouse

#: The warehouse tables the summary reads, each for the date only (segments also the day before), and
#: the columns it needs of each (never the message bodies).
INPUT_TABLES: dict[str, tuple[str, ...]] = {
    "triggered_customers": ("campaign_id", "is_control", "variant"),
    "bonus_accruals": ("campaign_id", "amount"),
    "message_outbox": ("campaign_id", "channel", "batch_no"),
    "activity_events": ("campaign_id", "kind", "details"),
    "target_audiences": ("audience", "customer_id"),
}

#: `activity_events.details` of a skipped message reads "<channel> <step>: <reason> (<occasion>)".
_SKIP_REASON = r"^\S+ \S+: (\w+)"

CAMPAIGN_COLUMNS = (
    "campaign",
    "status",
    "triggered",
    "control",
    "global_control",
    "accruals",
    "amount",
    "messages",
    "skipped",
    "batches",
)


@dataclass(frozen=True)
class DailySummary:
    day: date
    campaigns: pl.DataFrame  # CAMPAIGN_COLUMNS, one row per campaign of the catalog
    segments: pl.DataFrame  # segment, members, entered, left
    audiences: pl.DataFrame  # audience, customers
    global_control: int  # customers held out program-wide in the period containing `day`


def campaign_status(campaign: Campaign, day: date, wrote_anything: bool, gate_failed: bool) -> str:
    """Why a campaign did (or did not) act on `day`, in the operator's words."""
    if campaign.status != "active":
        return campaign.status
    if campaign.start_date is not None and day < campaign.start_date:
        return f"not started (starts {campaign.start_date.isoformat()})"
    if campaign.end_date is not None and day > campaign.end_date:
        return f"ended ({campaign.end_date.isoformat()})"
    if gate_failed:
        return "gate failed"
    return "ok" if wrote_anything else "nobody triggered"


def _counts(frame: pl.DataFrame, column: str) -> str:
    """'email 9, sms 2' — per value, in name order; '' when there are none."""
    if frame.is_empty():
        return ""
    counted = frame.group_by(column).len().sort(column)
    return ", ".join(f"{value} {n}" for value, n in counted.iter_rows())


def compute_summary(
    campaigns: Mapping[str, Campaign],
    day: date,
    tables: Mapping[str, pl.DataFrame],
    *,
    members_today: pl.DataFrame,
    members_yesterday: pl.DataFrame,
    global_control: int = 0,
    gate_failed: Collection[str] = (),
) -> DailySummary:
    """The summary of `day` from that day's rows of `INPUT_TABLES` (`tables`) and segment memberships.

    `members_*` hold (segment_id, customer_id) on `day` and the day before; `gate_failed` names the
    campaigns whose gate stopped them (known to the run, not to the warehouse, which stays empty).
    Entrants held out by the global control group are recorded with variant `global_control`.
    """
    triggered = tables["triggered_customers"]
    accruals = tables["bonus_accruals"]
    outbox = tables["message_outbox"]
    log = tables["activity_events"]
    skipped = log.filter(pl.col("kind") == "message_skipped").with_columns(
        pl.col("details").str.extract(_SKIP_REASON, 1).fill_null("other").alias("reason")
    )
    global_held = pl.col("variant").eq("global_control").fill_null(False)
    rows = []
    for campaign_id in sorted(campaigns):
        mine = pl.col("campaign_id") == campaign_id
        c_triggered = triggered.filter(mine)
        c_accruals = accruals.filter(mine)
        c_outbox = outbox.filter(mine)
        c_skipped = skipped.filter(mine)
        wrote = c_triggered.height + c_accruals.height + c_outbox.height + log.filter(mine).height > 0
        amount = c_accruals["amount"].sum() if c_accruals.height else Decimal("0.00")
        rows.append(
            {
                "campaign": campaign_id,
                "status": campaign_status(campaigns[campaign_id], day, wrote, campaign_id in gate_failed),
                "triggered": c_triggered.height,
                "control": c_triggered.filter(pl.col("is_control") & ~global_held).height,
                "global_control": c_triggered.filter(global_held).height,
                "accruals": c_accruals.height,
                "amount": Decimal(amount).quantize(Decimal("0.01")),
                "messages": _counts(c_outbox, "channel"),
                "skipped": _counts(c_skipped, "reason"),
                "batches": c_outbox["batch_no"].n_unique() if c_outbox.height else 0,
            }
        )
    schema: dict[str, pl.DataType] = {
        "campaign": pl.String(),
        "status": pl.String(),
        "triggered": pl.Int64(),
        "control": pl.Int64(),
        "global_control": pl.Int64(),
        "accruals": pl.Int64(),
        "amount": pl.Decimal(14, 2),
        "messages": pl.String(),
        "skipped": pl.String(),
        "batches": pl.Int64(),
    }
    campaign_frame = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    return DailySummary(
        day=day,
        campaigns=campaign_frame,
        segments=_segment_changes(members_today, members_yesterday),
        audiences=tables["target_audiences"]
        .group_by("audience")
        .agg(pl.len().cast(pl.Int64).alias("customers"))
        .sort("audience"),
        global_control=global_control,
    )


def _segment_changes(today: pl.DataFrame, yesterday: pl.DataFrame) -> pl.DataFrame:
    """Members on the day, and who entered or left since the day before, per segment."""
    keys = ["segment_id", "customer_id"]
    today = today.select(keys).unique()
    yesterday = yesterday.select(keys).unique()
    entered = today.join(yesterday, on=keys, how="anti").group_by("segment_id").len("entered")
    left = yesterday.join(today, on=keys, how="anti").group_by("segment_id").len("left")
    members = today.group_by("segment_id").len("members")
    ids = pl.concat([today.select("segment_id"), yesterday.select("segment_id")]).unique()
    return (
        ids.join(members, on="segment_id", how="left")
        .join(entered, on="segment_id", how="left")
        .join(left, on="segment_id", how="left")
        .select(
            pl.col("segment_id").alias("segment"),
            *(pl.col(c).fill_null(0).cast(pl.Int64) for c in ("members", "entered", "left")),
        )
        .sort("segment")
    )


def read_summary(
    warehouse: Warehouse,
    campaigns: Mapping[str, Campaign],
    day: date,
    *,
    gate_failed: Collection[str] = (),
) -> DailySummary:
    """Read the day's rows from the warehouse and summarise them (`compute_summary`)."""
    tables = {
        name: warehouse.read(name, {"partition_date": day}, columns=columns) for name, columns in INPUT_TABLES.items()
    }
    from loyalty_assets.warehouse.membership import members_by_date

    members_today = members_by_date(warehouse, day)
    members_yesterday = members_by_date(warehouse, day - timedelta(days=1))
    held = warehouse.read("global_control_group", before=("period_start", day + timedelta(days=1)))
    held = held.filter(pl.col("period_end") >= day)
    return compute_summary(
        campaigns,
        day,
        tables,
        members_today=members_today,
        members_yesterday=members_yesterday,
        global_control=held.height,
        gate_failed=gate_failed,
    )


def to_markdown(summary: DailySummary) -> str:
    """The summary as Markdown tables (the `daily_summary` asset's metadata in the UI)."""
    parts = [f"### Campaigns on {summary.day.isoformat()}", _markdown_table(summary.campaigns)]
    parts += ["### Segments", _markdown_table(summary.segments) if summary.segments.height else "(none saved)"]
    parts += ["### Audiences exported", _markdown_table(summary.audiences) if summary.audiences.height else "(none)"]
    parts.append(f"Global control group this period: {summary.global_control} customers.")
    return "\n\n".join(parts)


def _markdown_table(frame: pl.DataFrame) -> str:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|") if value not in (None, "") else "–"

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * frame.width]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)
