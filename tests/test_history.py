"""Reads of earlier runs' state: bounded to what a date can need."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl

from loyalty_assets.sources.frames import AsOf
from loyalty_assets.warehouse.history import recent_messages
from loyalty_assets.warehouse.warehouse import Warehouse


def outbox(campaign: str, customer: int, at: datetime) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "message_id": [f"{campaign}:{customer}:{at:%Y%m%d}"],
            "step_id": ["s"],
            "customer_id": [customer],
            "occasion": ["o"],
            "channel": ["email"],
            "recipient": ["x@example.com"],
            "subject": [None],
            "body": ["b"],
            "template": ["t"],
            "variant": [None],
            "send_at": [at],
            "batch_no": [1],
        },
        schema_overrides={"send_at": pl.Datetime("us", "UTC"), "subject": pl.String(), "variant": pl.String()},
    )


def test_recent_messages_reads_the_cap_window_without_todays_own(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    day = date(2025, 6, 26)
    for campaign, partition, customer in [
        ("a", date(2025, 6, 26), 1),  # this campaign, today: being replaced, not counted
        ("a", date(2025, 6, 24), 2),  # this campaign, an earlier day: counted
        ("b", date(2025, 6, 26), 3),  # a higher-priority campaign today: counted
        ("b", date(2025, 6, 10), 4),  # before the 7-day window (+1 day margin): not even read
    ]:
        at = datetime(partition.year, partition.month, partition.day, 8, tzinfo=UTC)
        wh.replace(
            "message_outbox", outbox(campaign, customer, at), {"campaign_id": campaign, "partition_date": partition}
        )
    recent = recent_messages(wh, "a", AsOf(day), days=7)
    assert sorted(recent["customer_id"]) == [2, 3]
