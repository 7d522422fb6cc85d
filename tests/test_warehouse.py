"""The warehouse's write contract: a scope is replaced atomically, and concurrent writers serialise."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl
import pytest

from loyalty_assets.warehouse.warehouse import Warehouse, ddl_statements

SCOPE = {"campaign_id": "c1", "partition_date": date(2025, 2, 22)}


def accruals(*customers: int, amount: str = "500.00") -> pl.DataFrame:
    n = len(customers)
    at = datetime(2025, 2, 22, 7, tzinfo=UTC)
    return pl.DataFrame(
        {
            "accrual_id": [f"c1:s:{c}:o" for c in customers],
            "step_id": ["s"] * n,
            "customer_id": list(customers),
            "occasion": ["o"] * n,
            "amount": pl.Series([Decimal(amount)] * n, dtype=pl.Decimal(14, 2)),
            "accrued_at": pl.Series([at] * n, dtype=pl.Datetime("us", "UTC")),
            "expires_at": pl.Series([None] * n, dtype=pl.Datetime("us", "UTC")),
            "legal_entity": ["X"] * n,
            "reason": ["r"] * n,
        }
    )


def test_ddl_is_idempotent_and_lives_in_sql_folder(warehouse_url: str) -> None:
    assert any("CREATE TABLE IF NOT EXISTS message_outbox" in s for s in ddl_statements())
    first = Warehouse(warehouse_url)
    first.ensure_schema()
    second = Warehouse(warehouse_url)
    second.ensure_schema()  # applying it again is harmless
    assert second.count("bonus_accruals") == 0


def test_replace_round_trips_exact_decimals(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    wh.replace("bonus_accruals", accruals(1, 2, amount="0.10"), SCOPE)
    wh.replace("bonus_accruals", accruals(3, amount="0.20"), {**SCOPE, "campaign_id": "c2"})
    rows = wh.read("bonus_accruals")
    assert rows.schema["amount"] == pl.Decimal(14, 2)
    assert rows["amount"].sum() == Decimal("0.40")  # not 0.4000000000000001
    assert (
        rows.filter(pl.col("campaign_id") == "c1")["accrued_at"].to_list() == [datetime(2025, 2, 22, 7, tzinfo=UTC)] * 2
    )


def test_replace_only_touches_its_scope(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    wh.replace("bonus_accruals", accruals(1, 2), SCOPE)
    other = {"campaign_id": "c1", "partition_date": date(2025, 2, 23)}
    wh.replace("bonus_accruals", accruals(3).with_columns(pl.lit("c1:s:3:o2").alias("accrual_id")), other)
    wh.replace("bonus_accruals", accruals(2), SCOPE)
    assert sorted(wh.read("bonus_accruals")["customer_id"]) == [2, 3]


def test_crash_mid_write_leaves_the_previous_state(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    wh.replace("bonus_accruals", accruals(1, 2), SCOPE)
    broken = pl.concat(
        [accruals(5, 6), accruals(7).with_columns(pl.lit(None, dtype=pl.String()).alias("legal_entity"))]
    )
    with pytest.raises(Exception, match=r"(?i)null|not-null|NOT NULL"):
        wh.replace("bonus_accruals", broken, SCOPE)  # the delete ran, two inserts ran, the third fails
    assert sorted(wh.read("bonus_accruals")["customer_id"]) == [1, 2]
    wh.replace("bonus_accruals", accruals(5, 6, 7), SCOPE)  # the re-run completes it
    assert sorted(wh.read("bonus_accruals")["customer_id"]) == [5, 6, 7]


def test_concurrent_writers_of_one_scope_leave_one_runs_rows(warehouse_url: str) -> None:
    frame = accruals(*range(1, 401))
    errors: list[BaseException] = []

    def write() -> None:
        try:
            Warehouse(warehouse_url).replace("bonus_accruals", frame, SCOPE)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    Warehouse(warehouse_url).ensure_schema()
    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = Warehouse(warehouse_url).read("bonus_accruals")
    assert rows.height == 400
    assert rows["accrual_id"].n_unique() == 400


def test_primary_key_refuses_a_second_accrual_for_the_same_occasion(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    wh.replace("bonus_accruals", accruals(1), SCOPE)
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        wh.replace("bonus_accruals", accruals(1), {**SCOPE, "partition_date": date(2025, 2, 23)})
    assert wh.count("bonus_accruals") == 1
