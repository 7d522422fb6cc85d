"""Reading and validating sources: clear errors for missing things, quarantine for bad rows."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from loyalty_assets.sources.frames import AsOf
from loyalty_assets.sources.readers import SourceError, read_file_table
from loyalty_assets.sources.schemas import SCHEMAS
from loyalty_assets.sources.snapshot import load_snapshot
from loyalty_assets.sources.validation import validate
from loyalty_assets.warehouse.warehouse import Warehouse
from tests.conftest import make_settings

NOW = datetime(2025, 6, 30, tzinfo=UTC)
AS_OF = AsOf(date(2025, 2, 22), "Europe/Moscow")


def rewrite(path: Path, transform) -> None:
    frame = pl.read_csv(path, infer_schema=False)
    transform(frame).write_csv(path)


def test_missing_table_names_table_and_file(birthday_data: Path) -> None:
    (birthday_data / "checks.csv").unlink()
    with pytest.raises(SourceError) as error:
        read_file_table(birthday_data, "checks")
    assert "table 'checks'" in str(error.value)
    assert str(birthday_data / "checks") in str(error.value)


def test_removed_column_names_table_file_and_column(birthday_data: Path) -> None:
    rewrite(birthday_data / "checks.csv", lambda f: f.drop("customer_id"))
    with pytest.raises(SourceError) as error:
        read_file_table(birthday_data, "checks")
    message = str(error.value)
    assert "table 'checks'" in message
    assert "checks.csv" in message
    assert "column 'customer_id'" in message
    assert error.value.column == "customer_id"


def test_removed_column_fails_the_dagster_asset_with_its_name(
    birthday_data: Path, catalog_dir: Path, tmp_path: Path
) -> None:
    import dagster as dg

    from loyalty_assets.defs.definitions import build_definitions

    rewrite(birthday_data / "customers.csv", lambda f: f.drop("registered_at"))
    settings = make_settings(birthday_data, catalog_dir, f"sqlite:///{tmp_path / 'wh.db'}", tmp_path / "s")
    job = build_definitions(settings).resolve_job_def("ingest_sources")
    result = job.execute_in_process(
        partition_key="2025-02-22", instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    message = failures[0].step_failure_data.error.message
    assert "table 'customers'" in message and "column 'registered_at'" in message


def test_bad_rows_are_quarantined_with_their_rule(birthday_data: Path) -> None:
    checks = birthday_data / "checks.csv"
    checks.write_text(
        checks.read_text()
        + "C3,,2025-01-20 10:00:00,S01,10.00,,\n"  # null customer_id
        + "C4,7,not-a-date,S01,10.00,,\n"  # unparsable timestamp
        + "C1,7,2025-01-21 10:00:00,S01,5.00,,\n"  # duplicate check_id
        + "C5,999,2025-01-22 10:00:00,S01,5.00,,\n"  # unknown customer
        + "C6,7,2099-01-01 10:00:00,S01,5.00,,\n"  # after the moment of the run
        + "C7,7,2025-01-23 10:00:00,S01,-5.00,,\n"  # negative total
    )
    snapshot = load_snapshot(lambda t: read_file_table(birthday_data, t), AS_OF, now=NOW)
    result = snapshot.results["checks"]
    reasons = dict(
        zip(
            result.quarantine["row_data"].str.json_path_match("$.check_id"),
            zip(result.quarantine["rule"], result.quarantine["column_name"], strict=True),
            strict=True,
        )
    )
    assert reasons == {
        "C3": ("null value", "customer_id"),
        "C4": ("unparsable timestamp", "ts"),
        "C1": ("duplicate key", "check_id"),
        "C5": ("unknown customer", "customer_id"),
        "C6": ("timestamp in the future of the run", "ts"),
        "C7": ("negative value", "total"),
    }
    assert sorted(result.kept["check_id"]) == ["C1", "C2"]
    assert result.kept.filter(pl.col("check_id") == "C1")["total"].item() == Decimal("1200.50")
    counts = result.counts
    assert counts["rows_read"] == counts["rows_kept"] + counts["rows_quarantined"] + counts["rows_not_yet_visible"]


def test_point_in_time_hides_later_rows_without_quarantining_them(birthday_data: Path) -> None:
    snapshot = load_snapshot(lambda t: read_file_table(birthday_data, t), AsOf(date(2025, 1, 31)), now=NOW)
    checks = snapshot.results["checks"]
    assert checks.kept["check_id"].to_list() == ["C1"]  # C2 is on 10 Feb
    assert checks.counts["rows_not_yet_visible"] == 1
    assert checks.quarantine.is_empty()
    # C2's line is invisible with its check, and not reported as an unknown check.
    assert snapshot.results["check_items"].kept["check_id"].to_list() == ["C1", "C1"]
    assert snapshot.results["check_items"].quarantine.is_empty()
    # Customer 14 registers on 5 Mar 2025: not a customer yet on 31 Jan.
    assert 14 not in snapshot.frames.customers["customer_id"].to_list()


def test_cutoff_is_the_end_of_the_day_in_the_program_zone(birthday_data: Path) -> None:
    checks = birthday_data / "checks.csv"
    checks.write_text(
        checks.read_text()
        + "C8,7,2025-01-31 20:59:59,S01,1.00,,\n"  # 23:59:59 Moscow on 31 Jan: visible
        + "C9,7,2025-01-31 21:00:00,S01,1.00,,\n"  # 00:00 Moscow on 1 Feb: not yet
    )
    raw = read_file_table(birthday_data, "checks")
    result = validate(SCHEMAS["checks"], raw, AsOf(date(2025, 1, 31), "Europe/Moscow"), now=NOW)
    assert sorted(result.kept["check_id"]) == ["C1", "C8"]


def test_late_arriving_check_is_invisible_until_loaded(birthday_data: Path) -> None:
    rewrite(
        birthday_data / "checks.csv",
        lambda f: f.with_columns(
            pl.when(pl.col("check_id") == "C1")
            .then(pl.lit("2025-02-03 09:00:00"))
            .otherwise(pl.col("ts"))
            .alias("loaded_at")
        ),
    )
    raw = read_file_table(birthday_data, "checks")
    before = validate(SCHEMAS["checks"], raw, AsOf(date(2025, 2, 1)), now=NOW)
    after = validate(SCHEMAS["checks"], raw, AsOf(date(2025, 2, 3)), now=NOW)
    assert before.kept.is_empty()  # C1 happened on 15 Jan but arrived on 3 Feb
    assert after.kept["check_id"].to_list() == ["C1"]


def test_unknown_time_zone_is_quarantined(birthday_data: Path) -> None:
    rewrite(
        birthday_data / "customers.csv",
        lambda f: f.with_columns(
            pl.when(pl.col("customer_id") == "8")
            .then(pl.lit("Mars/Olympus"))
            .otherwise(pl.col("timezone"))
            .alias("timezone")
        ),
    )
    result = validate(SCHEMAS["customers"], read_file_table(birthday_data, "customers"), AS_OF, now=NOW)
    assert result.quarantine.select("rule", "column_name").row(0) == ("unknown time zone", "timezone")
    assert 8 not in result.kept["customer_id"].to_list()


def test_parquet_and_csv_sources_read_the_same(birthday_data: Path, tmp_path: Path) -> None:
    csv = read_file_table(birthday_data, "checks").frame
    parquet_dir = tmp_path / "pq"
    parquet_dir.mkdir()
    # A folder of parts, with amounts as floats and naive timestamps: typed on the way in.
    part = pl.read_csv(birthday_data / "checks.csv", try_parse_dates=True)
    (parquet_dir / "checks").mkdir()
    part.head(1).write_parquet(parquet_dir / "checks" / "part-0.parquet")
    part.tail(1).write_parquet(parquet_dir / "checks" / "part-1.parquet")
    from_parquet = read_file_table(parquet_dir, "checks").frame
    assert from_parquet.select(csv.columns).equals(csv)


def test_quarantine_lands_in_the_warehouse(birthday_data: Path, catalog_dir: Path, tmp_path: Path) -> None:
    from tests.conftest import run_days

    checks = birthday_data / "checks.csv"
    checks.write_text(checks.read_text() + "C3,,2025-01-20 10:00:00,S01,10.00,,\n")
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    run_days(make_settings(birthday_data, catalog_dir, url, tmp_path / "s"), [date(2025, 2, 22)])
    quarantine = Warehouse(url).read("source_quarantine", {"source_table": "checks"})
    assert quarantine.select("rule", "column_name", "partition_date").rows() == [
        ("null value", "customer_id", date(2025, 2, 22))
    ]
    assert '"check_id":"C3"' in quarantine["row_data"].item()


def test_later_rows_of_a_later_customer_are_not_yet_visible_not_bad(birthday_data: Path) -> None:
    # Customer 14 registers on 5 Mar 2025; her check on 6 Mar is simply not visible on 22 Feb.
    checks = birthday_data / "checks.csv"
    checks.write_text(checks.read_text() + "C10,14,2025-03-06 10:00:00,S01,5.00,,\n")
    snapshot = load_snapshot(lambda t: read_file_table(birthday_data, t), AS_OF, now=NOW)
    result = snapshot.results["checks"]
    assert result.quarantine.is_empty()
    assert result.not_yet_visible["check_id"].to_list() == ["C10"]
    # A visible check (20 Feb) by a customer who does not exist yet is inconsistent: quarantined.
    checks.write_text(checks.read_text() + "C11,14,2025-02-20 10:00:00,S01,5.00,,\n")
    again = load_snapshot(lambda t: read_file_table(birthday_data, t), AS_OF, now=NOW).results["checks"]
    assert again.quarantine.select("rule", "column_name").rows() == [("unknown customer", "customer_id")]
