"""`warehouse.lots.write_lots`: a day's changes written over the day before's lots leave exactly what a
full replace leaves, on both warehouses; when the table does not hold the given day before, it is
replaced whole."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl
import sqlalchemy as sa
from polars.testing import assert_frame_equal

from loyalty_assets.transforms.ledger import LOT_SCHEMA
from loyalty_assets.warehouse.lots import write_lots
from loyalty_assets.warehouse.warehouse import Warehouse

D1, D2 = date(2025, 6, 10), date(2025, 6, 11)


def lots(*rows: tuple[int, str, str, str, str | None]) -> pl.DataFrame:
    """(customer, lot, amount, remaining, legal entity) → lots with the rest derived."""
    return pl.DataFrame(
        [
            {
                "customer_id": c,
                "lot_id": lot,
                "source": lot.split(":")[1],
                "amount": Decimal(amount),
                "remaining": Decimal(remaining),
                "redeemed": Decimal(amount) - Decimal(remaining),
                "expired": Decimal("0.00"),
                "accrued_at": datetime(2025, 6, 1, tzinfo=UTC),
                "expires_at": None,
                "legal_entity": entity,
            }
            for c, lot, amount, remaining, entity in rows
        ],
        schema=LOT_SCHEMA,
    )


def table(url: str) -> pl.DataFrame:
    return Warehouse(url).read("bonus_lots").sort("customer_id", "lot_id")


def held(url: str) -> list[date]:
    """The date the table as a whole holds (`bonus_lots_as_of`, one row)."""
    return Warehouse(url).read("bonus_lots_as_of").get_column("as_of_date").to_list()


DAY1 = lots(
    (1, "ledger:T1", "40.00", "40.00", "LE-A"),
    (2, "ledger:T2", "10.00", "10.00", None),
    (3, "ledger:T3", "5.00", "5.00", None),
)
# customer 1 spends 15, customer 2's lot is gone (not expected in practice; the write must still be exact),
# customer 4 gets a new lot, customer 3 is untouched
DAY2 = lots(
    (1, "ledger:T1", "40.00", "25.00", "LE-A"),
    (3, "ledger:T3", "5.00", "5.00", None),
    (4, "accrual:a4", "7.50", "7.50", None),
)


def test_the_days_changes_only(warehouse_url: str) -> None:
    assert write_lots(Warehouse(warehouse_url), DAY1, D1) == 3
    assert write_lots(Warehouse(warehouse_url), DAY2, D2, DAY1) == 2  # customer 1's lot and customer 4's
    got = table(warehouse_url)
    assert_frame_equal(got, DAY2.sort("customer_id", "lot_id"), check_dtypes=False)
    assert held(warehouse_url) == [D2]


def test_the_changes_are_looked_for_among_the_touched_customers_only(warehouse_url: str) -> None:
    """With `touched` (customers 1, 2 and 4: an entry or a closing lot), customer 3 is not compared."""
    assert write_lots(Warehouse(warehouse_url), DAY1, D1) == 3
    touched = pl.Series([1, 2, 4])
    assert write_lots(Warehouse(warehouse_url), DAY2, D2, DAY1, touched) == 2
    assert_frame_equal(table(warehouse_url), DAY2.sort("customer_id", "lot_id"), check_dtypes=False)
    assert Warehouse(warehouse_url).read("bonus_lots_as_of")["lots_digest"].to_list() == ["3:52.50:37.50:15.00:0.00"]


def test_a_day_before_the_table_does_not_hold_replaces_it(warehouse_url: str) -> None:
    other = lots((9, "ledger:T9", "1.00", "1.00", None))
    assert write_lots(Warehouse(warehouse_url), other, D1) == 1
    assert write_lots(Warehouse(warehouse_url), DAY2, D2, DAY1) == 3  # DAY1 is not what the table holds
    got = table(warehouse_url)
    assert_frame_equal(got, DAY2.sort("customer_id", "lot_id"), check_dtypes=False)
    assert held(warehouse_url) == [D2]
    assert write_lots(Warehouse(warehouse_url), DAY1, D1, None) == "skipped: holds the newer state of 2025-06-11"
    assert held(warehouse_url) == [D2]


def test_a_table_of_an_earlier_release_moves_its_date_to_bonus_lots_as_of(warehouse_url: str) -> None:
    """Earlier releases stamped the date on every lot; opening such a warehouse moves it to the marker."""
    wh = Warehouse(warehouse_url)
    assert write_lots(wh, DAY1, D1) == 3
    with wh.transaction() as conn:
        conn.execute(sa.text("DELETE FROM bonus_lots_as_of"))
        conn.execute(sa.text("ALTER TABLE bonus_lots ADD COLUMN as_of_date DATE"))
        conn.execute(sa.text("UPDATE bonus_lots SET as_of_date = :d"), {"d": D1})
    reopened = Warehouse(warehouse_url)
    assert "as_of_date" not in reopened.table("bonus_lots").c
    assert held(warehouse_url) == [D1]
    assert write_lots(reopened, DAY2, D2, DAY1) == 2  # the day before is recognised: only the changes
    assert_frame_equal(table(warehouse_url), DAY2.sort("customer_id", "lot_id"), check_dtypes=False)


def test_the_marker_keeps_a_digest_and_a_marker_without_one_is_checked_once(warehouse_url: str) -> None:
    """The next day recognises the day before's lots by the marker's digest (no scan of the table);
    a warehouse of the release before (marker without `lots_digest`) gets the column on open, its
    table is checked by its sums once, and the write stores the digest from then on."""
    wh = Warehouse(warehouse_url)
    assert write_lots(wh, DAY1, D1) == 3
    assert Warehouse(warehouse_url).read("bonus_lots_as_of")["lots_digest"].to_list() == ["3:55.00:55.00:0.00:0.00"]
    with wh.transaction() as conn:
        conn.execute(sa.text("DROP TABLE bonus_lots_as_of"))
        conn.execute(sa.text("CREATE TABLE bonus_lots_as_of (as_of_date DATE NOT NULL)"))
        conn.execute(sa.text("INSERT INTO bonus_lots_as_of (as_of_date) VALUES (:d)"), {"d": D1})
    reopened = Warehouse(warehouse_url)
    assert write_lots(reopened, DAY2, D2, DAY1) == 2  # recognised by the table's sums: only the changes
    assert held(warehouse_url) == [D2]
    assert Warehouse(warehouse_url).read("bonus_lots_as_of")["lots_digest"].to_list() == ["3:52.50:37.50:15.00:0.00"]
