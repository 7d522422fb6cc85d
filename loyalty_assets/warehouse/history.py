"""What earlier runs wrote, read back as inputs of later dates (cross-day state)."""

from __future__ import annotations

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


def read_members(wh: Warehouse, segment_ids: list[str], point: AsOf, days_back: int = 0) -> dict[str, pl.DataFrame]:
    """Saved segments' members on D − `days_back`, plus campaign-kept (manual) segments at D's cutoff."""
    day = point.date - timedelta(days=days_back)
    members = {
        sid: wh.read("segment_members", {"segment_id": sid, "partition_date": day}).select("customer_id")
        for sid in segment_ids
    }
    if days_back == 0:
        manual = manual_segment_members(wh.read("manual_segment_events"), point)
        members = {**manual, **members}
    return members


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
