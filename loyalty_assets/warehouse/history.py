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


def read_history(wh: Warehouse, campaign_id: str, point: AsOf) -> CampaignHistory:
    triggered = wh.read("triggered_customers", {"campaign_id": campaign_id}).select(
        "customer_id", "occasion", "partition_date", "variant", "is_control"
    )
    outbox = wh.read("message_outbox", {"campaign_id": campaign_id}).filter(pl.col("partition_date") < point.date)
    pending = (
        wh.read("journey_pending", {"campaign_id": campaign_id})
        .filter(
            (pl.col("partition_date") < point.date)
            & (pl.col("due_at") >= point.start_literal)
            & (pl.col("due_at") < point.cutoff_literal)
        )
        .rename({"due_at": "at"})
        .select(list(TOKEN_SCHEMA))
    )
    return CampaignHistory(
        triggered=triggered,
        outbox=outbox.select("message_id", "customer_id", "variant", "send_at"),
        pending_due=pending,
    )
