"""The `bonus_ledger` asset end to end: lots in `bonus_lots`, incremental runs == re-runs == backfills.

Fixture `fish_chain` (its README: customer 1 Moscow, 2 Vladivostok, 3 Moscow; the chain accrues 100
bonuses for 14 days at the fish purchase, 10 Jun 12:00 UTC) plus this ledger:

| txn | customer | when (UTC) | what | FIFO |
|---|---|---|---|---|
| T1 | 1 | 1 Jun 10:00 | accrual 40, expires 11 Jun 10:00, LE-A | nothing spent before it expires: 40 expire |
| T4 | 1 | 11 Jun 10:00 | expiry 40 (the loyalty system agrees) | not applied, no mismatch |
| T3 | 1 | 12 Jun 08:00 | redemption 50 | T1 is gone: 50 of the chain's 100 |
| T2 | 2 | 10 Jun 13:00 | redemption 30 (an hour after the chain's accrual) | 30 of the chain's 100 |
| T5 | 3 | 11 Jun 09:00 | redemption 10, nothing accrued | overdraft −10 |
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from loyalty_assets.warehouse.warehouse import Warehouse
from tests.conftest import keep_campaigns, make_settings, run_days
from tests.test_chain_campaigns import FISH, copy_fixture, days

LEDGER = """txn_id,customer_id,ts,kind,amount,expires_at,legal_entity,source
T1,1,2025-06-01 10:00:00,accrual,40.00,2025-06-11 10:00:00,LE-A,promo
T4,1,2025-06-11 10:00:00,expiry,40.00,,LE-A,ledger
T3,1,2025-06-12 08:00:00,redemption,50.00,,LE-A,S01
T2,2,2025-06-10 13:00:00,redemption,30.00,,LE-A,S01
T5,3,2025-06-11 09:00:00,redemption,10.00,,LE-A,S01
"""
WEEK = days(date(2025, 6, 10), date(2025, 6, 12))


def lots_of(url: str) -> pl.DataFrame:
    return Warehouse(url).read("bonus_lots").sort("customer_id", "lot_id")


@pytest.mark.long
def test_lots_day_by_day_rerun_and_backfill(tmp_path: Path, catalog_dir: Path, warehouse_url: str) -> None:
    from loyalty_assets.cli import run_dates

    data = copy_fixture("fish_chain", tmp_path)
    (data / "bonus_transactions.csv").write_text(LEDGER, encoding="utf8")
    keep_campaigns(catalog_dir, FISH)
    settings = make_settings(data, catalog_dir, warehouse_url, tmp_path / "storage")
    run_days(settings, WEEK)

    lots = lots_of(warehouse_url)
    accruals = Warehouse(warehouse_url).read("bonus_accruals").sort("customer_id")
    chain = dict(zip(accruals["customer_id"], accruals["accrual_id"], strict=True))
    money = lambda v: Decimal(v).quantize(Decimal("0.01"))  # noqa: E731
    assert lots.select("customer_id", "lot_id", "amount", "remaining", "redeemed", "expired").rows() == [
        (1, f"accrual:{chain[1]}", money(100), money(50), money(50), money(0)),
        (1, "ledger:T1", money(40), money(0), money(0), money(40)),
        (2, f"accrual:{chain[2]}", money(100), money(70), money(30), money(0)),
        (3, "overdraft:T5", money(0), money(-10), money(10), money(0)),
    ]
    assert Warehouse(warehouse_url).read("bonus_lots_as_of")["as_of_date"].to_list() == [date(2025, 6, 12)]
    assert lots.filter(pl.col("lot_id") == "ledger:T1")["legal_entity"].to_list() == ["LE-A"]

    # a re-run of an older date leaves the newer state; a re-run of the latest date rewrites the same
    run_days(settings, [date(2025, 6, 11), date(2025, 6, 12)])
    assert_frame_equal(lots_of(warehouse_url), lots)

    # a backfill into a fresh warehouse equals the day-by-day runs (once: the backfill writes to SQLite)
    if not warehouse_url.startswith("sqlite"):
        return
    fresh = f"sqlite:///{tmp_path / 'backfill.db'}"
    assert run_dates(make_settings(data, catalog_dir, fresh, tmp_path / "storage2"), WEEK)
    assert_frame_equal(lots_of(fresh), lots)


def test_a_late_accrual_becomes_a_lot_on_the_day_it_arrives(tmp_path: Path, catalog_dir: Path) -> None:
    """T6 (customer 3: accrual 25 stamped 9 Jun 10:00 UTC) is loaded on 11 Jun 10:00: D−1's lots of
    10 June cannot hold it, so the run of 11 June adds it — and T5's redemption of 10 that day is taken
    from it (FIFO by time: the accrual is older) instead of an overdraft."""
    data = copy_fixture("fish_chain", tmp_path)
    rows = [line + ("," if i else ",loaded_at") for i, line in enumerate(LEDGER.strip().splitlines())]
    rows.append("T6,3,2025-06-09 10:00:00,accrual,25.00,,LE-A,promo,2025-06-11 10:00:00")
    (data / "bonus_transactions.csv").write_text("\n".join(rows) + "\n", encoding="utf8")
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    run_days(make_settings(data, keep_campaigns(catalog_dir, FISH), url, tmp_path / "storage"), WEEK[:2])
    three = lots_of(url).filter(pl.col("customer_id") == 3)
    assert three.select("lot_id", "amount", "remaining", "redeemed").rows() == [
        ("ledger:T6", Decimal("25.00"), Decimal("15.00"), Decimal("10.00"))
    ]
