"""Campaign and segment outputs are stored once, in the warehouse, and load back from it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg

from loyalty_assets.defs.definitions import build_definitions
from loyalty_assets.warehouse.warehouse import Warehouse
from tests.conftest import BIRTHDAY_WRITERS, keep_campaigns, make_settings, run_days

DAY = date(2025, 2, 22)


def test_outputs_live_in_the_warehouse_only(
    birthday_data: Path, catalog_dir: Path, warehouse_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        birthday_data, keep_campaigns(catalog_dir, *BIRTHDAY_WRITERS), warehouse_url, tmp_path / "storage"
    )
    run_days(settings, [DAY])
    stored = {p.relative_to(settings.storage_dir).parts[0] for p in settings.storage_dir.rglob("*.parquet")}
    assert "segment" not in stored  # members: segment_members only
    assert not list((settings.storage_dir / "campaign").rglob("triggered_customers/*.parquet"))
    assert not list((settings.storage_dir / "campaign").rglob("message_outbox/*.parquet"))  # no second body copy

    defs = build_definitions(settings)
    key = dg.AssetKey(["campaign", "birthday_week_early", "triggered_customers"])
    with dg.DagsterInstance.ephemeral() as instance:
        loaded = defs.load_asset_value(key, partition_key=DAY.isoformat(), instance=instance)
        members = defs.load_asset_value(
            dg.AssetKey(["segment", "members_over_a_year", "members"]), partition_key=DAY.isoformat(), instance=instance
        )
    wh = Warehouse(warehouse_url)
    rows = wh.read("triggered_customers", {"campaign_id": "birthday_week_early", "partition_date": DAY})
    assert sorted(loaded["customer_id"]) == sorted(rows["customer_id"]) == [7, 8, 9, 10, 11, 13, 16]
    assert loaded.sort("customer_id").equals(rows.sort("customer_id"))
    assert members.height > 0
