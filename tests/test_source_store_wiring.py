"""The source assets wired to the validated source store: a date stores only its own rows, any order
of dates (first run, backfill of older dates, gaps, re-runs) sees what day-by-day runs see, and a
late-arriving row is seen from its arrival day on."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from loyalty_assets.defs.resources import SOURCE_STORE_DIR
from loyalty_assets.settings import Settings
from loyalty_assets.sources.frames import AsOf
from loyalty_assets.sources.readers import read_file_table
from loyalty_assets.sources.schemas import SCHEMAS
from loyalty_assets.sources.snapshot import load_snapshot
from loyalty_assets.sources.store import TABLE_ORDER, VDAY, SourceStore
from loyalty_assets.warehouse.warehouse import Warehouse
from tests.conftest import BIRTHDAY_WRITERS, keep_campaigns, make_settings, run_days

TZ = "Europe/Moscow"
LAST = date(2025, 6, 30)
DAYS = [date(2025, 6, 26), date(2025, 6, 27), date(2025, 6, 28)]


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated Parquet sources (late loads, bad rows, duplicates, unknown customers included)."""
    from loyalty_assets.sample_data import generate

    data = tmp_path_factory.mktemp("sample") / "data"
    generate(data, customers=200, days=20, end_date=LAST, progress=False)
    return data


def ingest(settings: Settings, days: Sequence[date]) -> None:
    """Run the sources job (the nine source assets and their check) for each date, in this order."""
    import dagster as dg

    from loyalty_assets.defs.definitions import build_definitions

    job = build_definitions(settings).resolve_job_def("ingest_sources")
    with dg.DagsterInstance.ephemeral() as instance:
        for day in days:
            result = job.execute_in_process(partition_key=day.isoformat(), instance=instance, raise_on_error=True)
            assert result.success, day


def store_of(settings: Settings) -> SourceStore:
    return SourceStore(settings.storage_dir / SOURCE_STORE_DIR, TZ)


def by_key(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    return frame.sort(list(SCHEMAS[table].key), nulls_last=True)


def view(settings: Settings, day: date) -> dict[str, pl.DataFrame]:
    """Every table as the downstream assets load it for `day`, and the day's source_quarantine."""
    store = store_of(settings)
    tables = {t: by_key(store.scan_as_of(t, day).collect(), t) for t in TABLE_ORDER}
    quarantine = Warehouse(settings.database_url).read("source_quarantine", {"partition_date": day})
    tables["quarantine"] = quarantine.select("source_table", "rule", "column_name", "row_data").sort(pl.all())
    return tables


def same(got: pl.DataFrame, want: pl.DataFrame, label: object) -> None:
    try:
        assert_frame_equal(got, want)
    except AssertionError as exc:
        raise AssertionError(f"{label}: {exc}") from exc


def settings_for(data: Path, catalog_dir: Path, tmp_path: Path, name: str) -> Settings:
    return make_settings(data, catalog_dir, f"sqlite:///{tmp_path / f'{name}.db'}", tmp_path / f"{name}-storage")


def test_a_date_stores_only_its_own_rows(sample_data: Path, catalog_dir: Path, tmp_path: Path) -> None:
    settings = settings_for(sample_data, catalog_dir, tmp_path, "grow")
    ingest(settings, DAYS[:1])
    root = settings.storage_dir / SOURCE_STORE_DIR
    before = {p: p.stat().st_size for p in root.rglob("*") if p.is_file()}
    ingest(settings, DAYS[1:2])
    after = {p: p.stat().st_size for p in root.rglob("*") if p.is_file()}
    # no full copy of a table per date anywhere under the storage dir: only the store
    assert sorted(p.name for p in settings.storage_dir.iterdir()) == [SOURCE_STORE_DIR]
    new = {p: size for p, size in after.items() if p not in before}
    assert all(before[p] == after[p] for p in before)  # earlier days untouched
    day = DAYS[1].isoformat()
    for table in TABLE_ORDER:
        files = sorted(p.name.removeprefix(f"{day}.").split(".", 1)[-1] for p in new if p.parent.name == table)
        # D's manifest and its parts: the rows, and the rows quarantined at ingest and the undated
        # rows when there are any (the manifest names each part it has)
        manifest = json.loads((root / table / f"{day}.json").read_text(encoding="utf8"))
        parts = [f"{kind}.parquet" for kind in ("quarantine", "undated") if manifest[kind] is not None]
        assert files == ["json", "parquet", *parts], (table, files)

    def rows(files: dict[Path, int]) -> int:
        return sum(
            pl.scan_parquet(p).select(pl.len()).collect().item()
            for p in files
            if p.parent.name == "checks" and p.suffix == ".parquet"
        )

    assert 0 < rows(new) < rows(before) / 5  # a day's rows, not the table (20 days of history)
    store = store_of(settings)
    for table in TABLE_ORDER:
        if table == "categories":
            continue  # no history: the table as read, each day
        part = pl.read_parquet(next(p for p in new if p.parent.name == table and p.name.count(".") == 2))
        assert part.get_column(VDAY).unique().to_list() in ([], [DAYS[1]]), table
    entered = (
        store.scan_as_of("checks", DAYS[1]).collect().height - store.scan_as_of("checks", DAYS[0]).collect().height
    )
    assert entered > 0
    assert store.manifest("checks", DAYS[1])["counts"]["rows_stored"] >= entered  # type: ignore[index]
    assert not (root / "checks" / f"{day}.json").read_text().count('"history": true')


def test_any_order_of_dates_sees_what_day_by_day_runs_see(sample_data: Path, catalog_dir: Path, tmp_path: Path) -> None:
    daily = settings_for(sample_data, catalog_dir, tmp_path, "daily")
    ingest(daily, DAYS)
    newest_first = settings_for(sample_data, catalog_dir, tmp_path, "newest")
    ingest(newest_first, [DAYS[2], DAYS[0], DAYS[1]])  # history holds the older dates: a backfill of them
    with_gap = settings_for(sample_data, catalog_dir, tmp_path, "gap")
    ingest(with_gap, [DAYS[0], DAYS[2], DAYS[1]])  # the gap is caught up, then its day run again
    assert store_of(with_gap).history_days("checks") == [DAYS[0] - timedelta(days=1)]
    now = datetime.now(UTC)
    for day in DAYS:
        want = view(daily, day)
        for other in (newest_first, with_gap):
            got = view(other, day)
            for name, frame in want.items():
                same(got[name], frame, (name, day))
        # and exactly what validating the whole history as of D keeps
        snapshot = load_snapshot(lambda t: read_file_table(sample_data, t), AsOf(day, TZ), now=now)
        for table in TABLE_ORDER:
            kept = snapshot.results[table].kept
            same(want[table], by_key(kept.select(want[table].columns), table), (table, day))
        quarantine = want["quarantine"]
        for table in TABLE_ORDER:
            if table == "check_items":
                continue  # lines are judged with their check (README, "Validated source store")
            expected = snapshot.results[table].quarantine.select(quarantine.columns).sort(pl.all())
            same(quarantine.filter(pl.col("source_table") == table), expected, ("quarantine", table, day))


def add_late_check(data: Path) -> None:
    """A check of 20 Feb loaded only on 21 Feb, and a bad row loaded on 21 Feb."""
    path = data / "checks.csv"
    frame = pl.read_csv(path, infer_schema=False).with_columns(pl.col("ts").alias("loaded_at"))
    late = pl.DataFrame(
        {
            "check_id": ["C9", "C10"],
            "customer_id": ["7", "8"],
            "ts": ["2025-02-20 10:00:00", "2025-02-20 11:00:00"],
            "store_id": ["S01", "S01"],
            "total": ["99.00", "-5.00"],
            "discount": [None, None],
            "bonus_spent": [None, None],
            "loaded_at": ["2025-02-21 10:00:00", "2025-02-21 10:00:00"],
        }
    )
    pl.concat([frame, late]).write_csv(path)
    items = data / "check_items.csv"
    items.write_text(items.read_text() + "C9,1,P1,milk,1.000,99.00\n")


def test_a_late_row_is_seen_by_the_later_date_only(
    birthday_data: Path, catalog_dir: Path, warehouse_url: str, tmp_path: Path
) -> None:
    add_late_check(birthday_data)
    keep_campaigns(catalog_dir, *BIRTHDAY_WRITERS)
    day1, day2 = date(2025, 2, 20), date(2025, 2, 21)
    in_order = make_settings(birthday_data, catalog_dir, warehouse_url, tmp_path / "in-order")
    run_days(in_order, [day1, day2])
    later_first_dir = tmp_path / "later-first"
    later_first = make_settings(birthday_data, catalog_dir, f"sqlite:///{tmp_path / 'l.db'}", later_first_dir)
    ingest(later_first, [day2, day1])  # the first run's history holds the late row on its arrival day
    for settings in (in_order, later_first):
        store = store_of(settings)
        checks = {d: store.scan_as_of("checks", d).collect().get_column("check_id").to_list() for d in (day1, day2)}
        assert "C9" not in checks[day1] and "C9" in checks[day2]
        lines = store.scan_as_of("check_items", day1).collect().get_column("check_id").to_list()
        assert "C9" not in lines and "C9" in store.scan_as_of("check_items", day2).collect().get_column("check_id")
        wh = Warehouse(settings.database_url)
        for day, want in ((day1, []), (day2, ["C10"])):
            quarantine = wh.read("source_quarantine", {"source_table": "checks", "partition_date": day})
            assert quarantine.get_column("row_data").str.json_path_match("$.check_id").to_list() == want
    # in day-by-day runs the late row is part of the day it arrived
    part = store_of(in_order).manifest("checks", day2)
    stored = pl.read_parquet(in_order.storage_dir / SOURCE_STORE_DIR / "checks" / str(part["data"]))
    assert "C9" in stored.get_column("check_id").to_list()
    # and the pipeline saw it on 21 Feb: the day's features count it (customer 7: C1 and C9)
    features = pl.read_parquet(in_order.storage_dir / "customer_features" / f"{day2.isoformat()}.parquet")
    assert features.height > 0


@pytest.mark.long
def test_a_backfill_of_older_dates_after_newer_ones_equals_day_by_day_runs(
    birthday_data: Path, catalog_dir: Path, tmp_path: Path
) -> None:
    days = [date(2025, 2, 20), date(2025, 2, 21), date(2025, 2, 22)]
    keep_campaigns(catalog_dir, *BIRTHDAY_WRITERS)
    daily = make_settings(birthday_data, catalog_dir, f"sqlite:///{tmp_path / 'd.db'}", tmp_path / "d")
    run_days(daily, days)
    other_data = tmp_path / "other-data"
    shutil.copytree(birthday_data, other_data)
    backfilled = make_settings(other_data, catalog_dir, f"sqlite:///{tmp_path / 'b.db'}", tmp_path / "b")
    run_days(backfilled, [days[2], days[0], days[1]])
    for day in days:
        want, got = view(daily, day), view(backfilled, day)
        for name in want:
            same(got[name], want[name], (name, day))
    for day in days[:2]:  # computed on the same previous state in both orders
        key = f"{day.isoformat()}.parquet"
        assert_frame_equal(
            pl.read_parquet(backfilled.storage_dir / "customer_features" / key),
            pl.read_parquet(daily.storage_dir / "customer_features" / key),
        )


def test_sql_sources_fill_the_store_as_files_do(birthday_data: Path, catalog_dir: Path, tmp_path: Path) -> None:
    """From `LOYALTY_SOURCE_DATABASE_URL` the query is read as today and the store picks each day's rows."""
    from dataclasses import replace

    from tests.test_sql_source import csv_folder_to_sqlite

    database = tmp_path / "source.db"
    csv_folder_to_sqlite(birthday_data, database)
    days = [date(2025, 2, 22), date(2025, 2, 20), date(2025, 2, 25)]  # first run, a date it holds, a gap
    files = settings_for(birthday_data, catalog_dir, tmp_path, "files")
    sql = replace(
        settings_for(birthday_data, catalog_dir, tmp_path, "sql"), source_database_url=f"sqlite:///{database}"
    )
    ingest(files, days)
    ingest(sql, days)
    for day in [date(2025, 2, 20) + timedelta(days=i) for i in range(6)]:
        want, got = view(files, day), view(sql, day)
        for name, frame in want.items():
            same(got[name].select(frame.columns), frame, (name, day))


@pytest.mark.long
def test_the_daily_features_carried_from_day_to_day_equal_a_full_recomputation(
    sample_data: Path, catalog_dir: Path, tmp_path: Path
) -> None:
    """The shipped catalog on generated sources (late loads, bad rows, duplicates): each date's
    stored `customer_features` — advanced from the day before's carried state, from the rows that
    entered the store that day — equal `compute_features` over the whole store as of that date,
    and each date's state carries every family and the bonus lots as of itself."""
    from loyalty_assets.config.catalog import load_catalog
    from loyalty_assets.sources.frames import SourceFrames
    from loyalty_assets.transforms.campaign_day import catalog_filters, day_features
    from loyalty_assets.transforms.day_state import DayState
    from loyalty_assets.warehouse.history import read_state

    settings = settings_for(sample_data, catalog_dir, tmp_path, "carried")
    run_days(settings, DAYS)
    catalog = load_catalog(catalog_dir)
    assert catalog_filters(catalog)  # the shipped catalog's conditions (purchases, bonuses, favourites)
    store = store_of(settings)
    for day in DAYS:
        point = AsOf(day, TZ)
        before = DayState.from_frames(read_state(settings.storage_dir, day - timedelta(days=1)) or {})
        full = SourceFrames.from_tables(
            {t: store.scan_as_of(t, day).collect() for t in SCHEMAS} | {"own_accruals": before.own_accruals(point)}
        )
        stored = pl.read_parquet(settings.storage_dir / "customer_features" / f"{day.isoformat()}.parquet")
        assert_frame_equal(stored, day_features(catalog, full, point))
        meta = (read_state(settings.storage_dir, day) or {})["features.meta"]
        assert sorted(meta.get_column("family").to_list()) == ["bonuses", "lots", "purchases"]
        assert set(meta.get_column("day").to_list()) == {day}
