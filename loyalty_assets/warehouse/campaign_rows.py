"""A campaign's rows for one date, and their write: the one owner of "what a campaign day stores".

The daily asset and the pipeline benchmark both call `write_campaign_day`, so the benchmark measures the
writes the run does. Each stage's tables are replaced in the scope (campaign, date), and the stage's
`activity_events` rows in (campaign, date, stage), all in one transaction: a crash leaves the previous
run's rows or this run's, never a mix. `activity_events` holds only what no other table records (skips
with their reason, waits, journey ends; the view `activity_log` adds the rest, see
`transforms.activity`): the stages `triggered` and `accruals` replace their scope with no rows.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from loyalty_assets.transforms.activity import ACTIVITY_SCHEMA, journey_activity, skipped_activity
from loyalty_assets.transforms.campaign_day import CampaignDay
from loyalty_assets.warehouse.warehouse import Warehouse

#: stage → ({table: rows}, activity-log rows of the stage)
CampaignRows = dict[str, tuple[dict[str, pl.DataFrame], pl.DataFrame]]


def campaign_rows(result: CampaignDay) -> CampaignRows | None:
    """The tables a campaign writes for its date, by stage; None when its gate failed (nothing written)."""
    if result.journey is None or result.accruals is None or result.messages is None:
        return None
    cid = result.campaign.id
    entrants, journey, accruals, batch = result.entered.entrants, result.journey, result.accruals, result.messages
    assert result.segment_events is not None  # set together with journey (gate passed)
    no_activity = pl.DataFrame(schema=ACTIVITY_SCHEMA)
    return {
        "triggered": ({"triggered_customers": entrants}, no_activity),
        "journey": (
            {
                "journey_pending": journey.pending.rename({"at": "due_at"}),
                "manual_segment_events": result.segment_events,
            },
            journey_activity(cid, journey),
        ),
        "accruals": ({"bonus_accruals": accruals}, no_activity),
        "messages": ({"message_outbox": batch.outbox}, skipped_activity(cid, batch.skipped)),
    }


def write_campaign_day(wh: Warehouse, day: date, result: CampaignDay) -> dict[str, int] | None:
    """Write the campaign's rows for `day` in one transaction; rows written per table (None: gate failed)."""
    stages = campaign_rows(result)
    if stages is None:
        return None
    scope = {"campaign_id": result.campaign.id, "partition_date": day}
    written: dict[str, int] = {}
    with wh.transaction() as conn:
        for stage, (outputs, activity) in stages.items():
            for table, frame in outputs.items():
                wh.replace(table, frame, scope, conn=conn)
                written[table] = written.get(table, 0) + frame.height
            wh.replace("activity_events", activity, {**scope, "stage": stage}, conn=conn)
            written["activity_events"] = written.get("activity_events", 0) + activity.height
    return written
