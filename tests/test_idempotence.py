"""Re-runs and backfills leave exactly what one clean day-by-day run leaves, on both warehouses."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from loyalty_assets.warehouse.warehouse import Warehouse
from tests.conftest import BIRTHDAY_WRITERS, copy_inputs, keep_campaigns, make_settings, run_days

TABLES = {
    "triggered_customers": ["campaign_id", "customer_id", "occasion"],
    "bonus_accruals": ["accrual_id"],
    "message_outbox": ["message_id"],
    "segment_members": ["segment_id", "customer_id", "entered_on"],
    "activity_events": ["event_id"],
    "source_quarantine": ["source_table", "partition_date", "row_data"],
}


def snapshot(url: str) -> dict[str, pl.DataFrame]:
    wh = Warehouse(url)
    return {table: wh.read(table).sort(key) for table, key in TABLES.items()}


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def test_running_a_date_again_changes_nothing(
    birthday_data: Path, catalog_dir: Path, warehouse_url: str, tmp_path: Path
) -> None:
    keep_campaigns(catalog_dir, *BIRTHDAY_WRITERS)
    settings = make_settings(birthday_data, catalog_dir, warehouse_url, tmp_path / "storage")
    run_days(settings, [date(2025, 2, 22)])
    first = snapshot(warehouse_url)
    assert first["bonus_accruals"].height == 7
    run_days(settings, [date(2025, 2, 22)])
    again = snapshot(warehouse_url)
    for table in TABLES:
        assert_frame_equal(first[table], again[table], check_row_order=True)


# 11 days around the fixture's birthdays, holding every occasion with a day to spare (20 Feb – 2 Mar).
MONTH = days(date(2025, 2, 20), date(2025, 3, 2))
# Its first four days (the week-early gifts of 21 and 22 Feb): the other warehouse's shorter backfill.
SHORT = MONTH[:4]


@pytest.fixture(scope="module")
def month_by_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, dict[str, pl.DataFrame]]]:
    """The reference: MONTH run day by day on SQLite, each date as its own run, with the rows after
    SHORT and after MONTH. Shared by both warehouses' backfills (the suite's longest test ran these
    11 daily jobs once per warehouse)."""
    root = tmp_path_factory.mktemp("month_by_day")
    data, catalog = copy_inputs(root, "birthdays")
    keep_campaigns(catalog, *BIRTHDAY_WRITERS)
    url = f"sqlite:///{root / 'daily.db'}"
    daily = make_settings(data, catalog, url, root / "daily-storage")
    after: dict[str, dict[str, pl.DataFrame]] = {}
    for day in MONTH:
        run_days(daily, [day])
        if day == SHORT[-1]:
            after["short"] = snapshot(url)
    after["month"] = snapshot(url)
    return data, catalog, after


@pytest.mark.long
@pytest.mark.parametrize(
    ("warehouse_url", "span"),
    [("sqlite", "month"), pytest.param("postgres", "short", marks=pytest.mark.postgres)],
    indirect=["warehouse_url"],
)
def test_backfill_equals_daily_runs(
    month_by_day: tuple[Path, Path, dict[str, dict[str, pl.DataFrame]]], warehouse_url: str, span: str, tmp_path: Path
) -> None:
    """`loyalty backfill`'s path (every date in order in one process and one instance) on this
    warehouse leaves exactly the rows of day-by-day runs on SQLite: the whole month on SQLite, its
    first four days on PostgreSQL (the warehouse only stores what the same transforms computed, and
    these days already write accruals, messages, members and quarantine rows to compare)."""
    from loyalty_assets.cli import run_dates

    data, catalog, after = month_by_day
    backfill = make_settings(data, catalog, warehouse_url, tmp_path / "backfill-storage")
    assert run_dates(backfill, MONTH if span == "month" else SHORT)

    expected, actual = after[span], snapshot(warehouse_url)
    # Week early: 1 (customer 12) on 21 Feb, 7 on 22 Feb; seed 002: 12 on 28 Feb, 6 on 1 Mar.
    assert expected["bonus_accruals"].height == (1 + 7 + 1 + 6 if span == "month" else 1 + 7)
    assert expected["message_outbox"].height > 0 and expected["segment_members"].height > 0
    for table in TABLES:
        assert_frame_equal(expected[table], actual[table])
    if span == "month":
        assert set(expected["triggered_customers"]["campaign_id"]) == set(BIRTHDAY_WRITERS)


def test_backfill_out_of_order_never_duplicates_an_occasion(
    birthday_data: Path, catalog_dir: Path, warehouse_url: str, tmp_path: Path
) -> None:
    keep_campaigns(catalog_dir, *BIRTHDAY_WRITERS)
    settings = make_settings(birthday_data, catalog_dir, warehouse_url, tmp_path / "storage")
    run_days(settings, [date(2025, 2, 22), date(2025, 2, 21), date(2025, 2, 22)])
    accruals = Warehouse(warehouse_url).read("bonus_accruals", {"campaign_id": "birthday_week_early"})
    assert accruals.height == 8
    assert accruals.select("customer_id", "occasion").is_duplicated().sum() == 0
