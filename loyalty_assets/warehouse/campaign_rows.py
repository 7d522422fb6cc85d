"""A campaign's rows for one date, and their write: the one owner of "what a campaign day stores".

The daily asset and the pipeline benchmark both call `write_campaign_day`, so the benchmark measures the
writes the run does. Every table is replaced in the scope (campaign, date), all in one transaction: a
crash leaves the previous run's rows or this run's, never a mix. `activity_events` holds only what no
other table records (skips with their reason from the message stage, waits and the ends of journeys
entered on an earlier day from the journey stage; a journey ended by the run that entered it is on its
`triggered_customers` row; the view `activity_log` adds the rest, see `transforms.activity`).
"""

from __future__ import annotations

from datetime import date

import polars as pl

from loyalty_assets.transforms.activity import ended_activity, skipped_activity, split_ends, waiting_activity
from loyalty_assets.transforms.campaign_day import CampaignDay
from loyalty_assets.warehouse.warehouse import Warehouse


def campaign_rows(result: CampaignDay) -> dict[str, pl.DataFrame] | None:
    """The rows a campaign writes for its date, by table; None when its gate failed (nothing written)."""
    if result.journey is None or result.accruals is None or result.messages is None:
        return None
    cid = result.campaign.id
    journey, batch = result.journey, result.messages
    assert result.segment_events is not None  # set together with journey (gate passed)
    triggered, later_ends = split_ends(result.entered.entrants, journey.exits)
    activity = pl.concat(
        [
            ended_activity(cid, later_ends).with_columns(pl.lit("journey").alias("stage")),
            waiting_activity(cid, journey.pending).with_columns(pl.lit("journey").alias("stage")),
            skipped_activity(cid, batch.skipped).with_columns(pl.lit("messages").alias("stage")),
        ]
    )
    return {
        "triggered_customers": triggered,
        "journey_pending": journey.pending.rename({"at": "due_at"}),
        "manual_segment_events": result.segment_events,
        "bonus_accruals": result.accruals,
        "message_outbox": batch.outbox,
        "activity_events": activity,
    }


def write_campaign_day(wh: Warehouse, day: date, result: CampaignDay) -> dict[str, int] | None:
    """Write the campaign's rows for `day` in one transaction; rows written per table (None: gate failed)."""
    tables = campaign_rows(result)
    if tables is None:
        return None
    scope = {"campaign_id": result.campaign.id, "partition_date": day}
    with wh.transaction() as conn:
        return {table: wh.replace(table, frame, scope, conn=conn) for table, frame in tables.items()}
