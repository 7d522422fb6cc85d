"""Target-audience export semantics: replace per label, never overwritten by an older backfill."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl

from loyalty_assets.warehouse.audiences import export_audiences
from loyalty_assets.warehouse.warehouse import Warehouse

AT = datetime(2025, 6, 26, 6, tzinfo=UTC)


def ids(*values: int) -> pl.DataFrame:
    return pl.DataFrame({"customer_id": list(values)}, schema={"customer_id": pl.Int64()})


def audience(wh: Warehouse, label: str) -> list[int]:
    return sorted(wh.read("target_audiences", {"audience": label})["customer_id"].to_list())


def test_an_empty_newest_export_still_blocks_an_older_backfill(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    export_audiences(wh, ids(1, 2), labels=("promo",), segment_id="s", partition_date=date(2025, 6, 25), exported_at=AT)
    export_audiences(wh, ids(), labels=("promo",), segment_id="s", partition_date=date(2025, 6, 26), exported_at=AT)
    outcome = export_audiences(
        wh, ids(7), labels=("promo",), segment_id="s", partition_date=date(2025, 5, 1), exported_at=AT
    )
    assert outcome["promo"] == "skipped: holds the newer export of 2025-06-26"
    assert audience(wh, "promo") == []  # the newest (empty) export stands


def test_a_label_no_longer_exported_is_emptied(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    export_audiences(wh, ids(1, 2), labels=("a", "b"), segment_id="s", partition_date=date(2025, 6, 25), exported_at=AT)
    outcome = export_audiences(
        wh, ids(1), labels=("a",), segment_id="s", partition_date=date(2025, 6, 26), exported_at=AT
    )
    assert outcome == {"a": 1, "b": "emptied: no longer exported by this segment"}
    assert audience(wh, "a") == [1]
    assert audience(wh, "b") == []
