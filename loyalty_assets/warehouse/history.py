"""What earlier runs wrote, read back as inputs of later dates (cross-day state)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import polars as pl

from loyalty_assets.sources.frames import OWN_ACCRUALS_SCHEMA, AsOf
from loyalty_assets.transforms.campaign_day import CampaignHistory, manual_segment_members
from loyalty_assets.transforms.journey import TOKEN_SCHEMA
from loyalty_assets.warehouse.warehouse import Warehouse


def own_accruals_before(warehouse: Warehouse, as_of: AsOf) -> pl.DataFrame:
    """Bonus accruals this project wrote for dates before D and accrued before D's cutoff.

    They count toward balances and "bonuses accrued" next to the loyalty system's own ledger.
    """
    written = warehouse.read("bonus_accruals", before=("partition_date", as_of.date))
    return written.filter(pl.col("accrued_at") < as_of.cutoff_literal).select(list(OWN_ACCRUALS_SCHEMA))


def read_members(
    wh: Warehouse,
    segment_ids: list[str],
    point: AsOf,
    days_back: int = 0,
    manual_ids: Iterable[str] = (),
) -> dict[str, pl.DataFrame]:
    """Members on D − `days_back`: saved segments from `segment_members`, manual segments from their events.

    A manual segment's members on a day are those added before that day began (its latest event
    before the start of the day is an add): what campaigns do *during* D counts from D+1, so no
    campaign's result depends on the order campaigns run on D, and a re-run of D sees what the
    first run saw. A manual segment nobody was added to yet is empty, not unknown.
    """
    day = point.date - timedelta(days=days_back)
    members = {
        sid: wh.read("segment_members", {"segment_id": sid, "partition_date": day}).select("customer_id")
        for sid in segment_ids
    }
    start_of_day = AsOf(day - timedelta(days=1), point.program_tz)
    manual = manual_segment_members(wh.read("manual_segment_events"), start_of_day)
    empty = pl.DataFrame(schema={"customer_id": pl.Int64()})
    return {**{sid: manual.get(sid, empty) for sid in manual_ids}, **manual, **members}


def read_pending_due(wh: Warehouse, campaign_id: str, point: AsOf) -> pl.DataFrame:
    """Tokens of the campaign's chains that earlier dates left waiting until a moment of D."""
    return (
        wh.read("journey_pending", {"campaign_id": campaign_id}, before=("partition_date", point.date))
        .filter((pl.col("due_at") >= point.start_literal) & (pl.col("due_at") < point.cutoff_literal))
        .rename({"due_at": "at"})
        .select(list(TOKEN_SCHEMA))
    )


def read_history(wh: Warehouse, campaign_id: str, point: AsOf) -> CampaignHistory:
    """Earlier entrants, earlier messages and the tokens due on D of one campaign."""
    triggered = wh.read("triggered_customers", {"campaign_id": campaign_id}).select(
        "customer_id", "occasion", "partition_date", "variant", "is_control"
    )
    outbox = wh.read("message_outbox", {"campaign_id": campaign_id}, before=("partition_date", point.date))
    return CampaignHistory(
        triggered=triggered,
        outbox=outbox.select("message_id", "customer_id", "variant", "send_at"),
        pending_due=read_pending_due(wh, campaign_id, point),
    )


def recent_messages(wh: Warehouse, campaign_id: str, point: AsOf, days: int) -> pl.DataFrame:
    """Messages that count toward the frequency cap on D: every campaign's except this one's own for D.

    Only partitions that can hold a `send_at` inside the cap's window are read (a message is written
    by the run of the day it is due; quiet hours and speed limits move it by at most a day), so the
    read does not grow with the outbox's history.
    """
    since = point.date - timedelta(days=days + 1)
    rows = wh.read("message_outbox", since=("partition_date", since))
    return rows.filter(~((pl.col("campaign_id") == campaign_id) & (pl.col("partition_date") == point.date)))
