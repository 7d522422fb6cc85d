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
from tests.conftest import BIRTHDAY_WRITERS, keep_campaigns, make_settings

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
    run_days(
        make_settings(birthday_data, keep_campaigns(catalog_dir, *BIRTHDAY_WRITERS), url, tmp_path / "s"),
        [date(2025, 2, 22)],
    )
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


# --- issue 7: nothing silently wrong (items 1-5) -------------------------------------------------


def reasons_by(result, key: str) -> dict[str, tuple[str, str]]:
    """Quarantined rows keyed by one column of their JSON copy → (rule, column)."""
    return dict(
        zip(
            result.quarantine["row_data"].str.json_path_match(f"$.{key}"),
            zip(result.quarantine["rule"], result.quarantine["column_name"], strict=True),
            strict=True,
        )
    )


def test_quoted_empty_or_blank_key_is_null_not_a_value(birthday_data: Path) -> None:
    checks = birthday_data / "checks.csv"
    checks.write_text(
        checks.read_text() + '"",7,2025-01-20 10:00:00,S01,10.00,,\n' + '"   ",7,2025-01-21 10:00:00,S01,10.00,,\n'
    )
    items = birthday_data / "check_items.csv"
    items.write_text(items.read_text() + '"",1,P1,milk,1.000,10.00\n')
    snapshot = load_snapshot(lambda t: read_file_table(birthday_data, t), AS_OF, now=NOW)
    checks_result = snapshot.results["checks"]
    assert checks_result.quarantine.select("rule", "column_name").rows() == [("null value", "check_id")] * 2
    assert sorted(checks_result.kept["check_id"]) == ["C1", "C2"]
    # The line of the '' check is set aside for its own null key, not as a line of a valid check.
    lines = snapshot.results["check_items"].quarantine
    assert lines.select("rule", "column_name").rows() == [("null value", "check_id")]


def test_blank_optional_text_is_null(birthday_data: Path) -> None:
    rewrite(
        birthday_data / "customers.csv",
        lambda f: f.with_columns(
            pl.when(pl.col("customer_id") == "7").then(pl.lit("  ")).otherwise("city").alias("city")
        ),
    )
    kept = validate(SCHEMAS["customers"], read_file_table(birthday_data, "customers"), AS_OF, now=NOW).kept
    assert kept.filter(pl.col("customer_id") == 7)["city"].item() is None


def test_integer_epoch_where_a_timestamp_is_expected_fails_the_table(birthday_data: Path, tmp_path: Path) -> None:
    frame = pl.read_csv(birthday_data / "customers.csv", infer_schema=False).with_columns(
        pl.lit(1_600_000_000, dtype=pl.Int64()).alias("registered_at")
    )
    target = tmp_path / "pq"
    target.mkdir()
    frame.write_parquet(target / "customers.parquet")
    with pytest.raises(SourceError) as error:
        read_file_table(target, "customers")
    message = str(error.value)
    assert "table 'customers'" in message and "customers.parquet" in message
    assert "column 'registered_at'" in message and "Int64" in message
    # A date column stored as text of numbers is merely unparsable, row by row (not a type error).
    frame.with_columns(pl.lit(20250101, dtype=pl.Int32()).alias("birth_date")).drop("registered_at").write_parquet(
        target / "customers.parquet"
    )
    with pytest.raises(SourceError, match="column 'registered_at': required column missing"):
        read_file_table(target, "customers")


def test_integer_where_a_date_is_expected_fails_the_table(birthday_data: Path, tmp_path: Path) -> None:
    frame = pl.read_csv(birthday_data / "customers.csv", try_parse_dates=True).with_columns(
        pl.lit(20250101, dtype=pl.Int32()).alias("birth_date")
    )
    frame.write_parquet(tmp_path / "customers.parquet")
    with pytest.raises(SourceError, match=r"column 'birth_date': has type Int32 \(integer\), expected date"):
        read_file_table(tmp_path, "customers")


@pytest.mark.parametrize(
    ("total", "amount", "quantity", "rule", "column"),
    [
        ("1999.995", "1.00", "1.000", "more than 2 decimal places", "total"),
        ("10.00", "0.125", "1.000", "more than 2 decimal places", "amount"),
        ("10.00", "1.005", "1.000", "more than 2 decimal places", "amount"),
        ("10.00", "1.00", "1.2345", "more than 3 decimal places", "quantity"),
    ],
)
def test_amounts_with_too_many_decimals_are_quarantined_never_rounded(
    birthday_data: Path, total: str, amount: str, quantity: str, rule: str, column: str
) -> None:
    (birthday_data / "checks.csv").write_text(
        "check_id,customer_id,ts,store_id,total,discount,bonus_spent\n"
        f"C1,7,2025-01-15 10:00:00,S01,{total},,\n"
        "C2,7,2025-01-16 10:00:00,S01,12.300,,\n"  # trailing zeros are not extra places
    )
    (birthday_data / "check_items.csv").write_text(
        f"check_id,line_no,product_id,category_id,quantity,amount\nC1,1,P1,milk,{quantity},{amount}\n"
    )
    snapshot = load_snapshot(lambda t: read_file_table(birthday_data, t), AS_OF, now=NOW)
    table = "checks" if column == "total" else "check_items"
    quarantine = snapshot.results[table].quarantine
    assert quarantine.select("rule", "column_name").rows() == [(rule, column)]
    # The quarantine keeps the value as written, not a rounded one.
    assert (
        quarantine["row_data"].str.json_path_match(f"$.{column}").item()
        == {"total": total, "amount": amount, "quantity": quantity}[column]
    )
    assert snapshot.results["checks"].kept.filter(pl.col("check_id") == "C2")["total"].item() == Decimal("12.30")


def test_float_amounts_with_too_many_decimals_are_quarantined(tmp_path: Path) -> None:
    pl.DataFrame(
        {
            "check_id": ["A", "B", "C", "D"],
            "customer_id": [7, 7, 7, 7],
            "ts": [datetime(2025, 1, 15, 10)] * 4,
            "total": [1999.995, 0.125, 12.34, 100.0],
        }
    ).write_parquet(tmp_path / "checks.parquet")
    result = validate(SCHEMAS["checks"], read_file_table(tmp_path, "checks"), AS_OF, now=NOW)
    assert reasons_by(result, "check_id") == {
        "A": ("more than 2 decimal places", "total"),
        "B": ("more than 2 decimal places", "total"),
    }
    assert dict(result.kept.select("check_id", "total").iter_rows()) == {"C": Decimal("12.34"), "D": Decimal("100.00")}


def test_fractional_float_id_is_unparsable_not_truncated(tmp_path: Path) -> None:
    pl.DataFrame(
        {"check_id": ["A", "B"], "customer_id": [7.0, 7.5], "ts": [datetime(2025, 1, 15, 10)] * 2, "total": [1.0, 1.0]}
    ).write_parquet(tmp_path / "checks.parquet")
    result = validate(SCHEMAS["checks"], read_file_table(tmp_path, "checks"), AS_OF, now=NOW)
    assert reasons_by(result, "check_id") == {"B": ("unparsable integer", "customer_id")}
    assert result.quarantine["row_data"].str.json_path_match("$.customer_id").item() == "7.5"


def test_a_bad_byte_or_a_ragged_line_is_quarantined_with_its_line_number(birthday_data: Path) -> None:
    checks = birthday_data / "checks.csv"
    checks.write_bytes(
        checks.read_bytes()
        + b"C3,7,2025-01-20 10:00:00,S\xff1,10.00,,\n"  # line 4: not UTF-8
        + b"C4,7,2025-01-20 10:00:00,S01,10.00,,,extra\n"  # line 5: one field too many
        + b"C5,7,2025-01-21 10:00:00,S01,7.00,,\n"  # line 6: fine
    )
    raw = read_file_table(birthday_data, "checks")
    result = validate(SCHEMAS["checks"], raw, AS_OF, now=NOW)
    assert sorted(result.kept["check_id"]) == ["C1", "C2", "C5"]
    assert result.quarantine.select("rule", "column_name").rows() == [
        ("not UTF-8", None),
        ("8 fields, the header has 7", None),
    ]
    assert result.quarantine["row_data"].str.json_path_match("$.line").to_list() == ["4", "5"]
    # The undecodable byte is shown escaped, so the line can be found and fixed.
    assert result.quarantine["row_data"].str.json_path_match("$.text")[0] == "C3,7,2025-01-20 10:00:00,S\\xff1,10.00,,"
    counts = result.counts
    assert (counts["rows_read"], counts["rows_kept"], counts["rows_quarantined"]) == (5, 3, 2)


def test_a_bad_header_names_its_line(birthday_data: Path) -> None:
    (birthday_data / "checks.csv").write_bytes(b"check_id,customer_id,t\xffs,total\nC1,7,2025-01-15,1.00\n")
    with pytest.raises(SourceError, match=r"table 'checks' \(.*checks.csv\): line 1 \(the header\) is not UTF-8"):
        read_file_table(birthday_data, "checks")


def test_a_duplicated_header_fails_naming_the_column(birthday_data: Path) -> None:
    (birthday_data / "checks.csv").write_text(
        "check_id,customer_id,ts,total,total\nC1,7,2025-01-15 10:00:00,1.00,2.00\n"
    )
    with pytest.raises(SourceError) as error:
        read_file_table(birthday_data, "checks")
    assert error.value.column == "total"
    assert "fields 4 and 5" in str(error.value) and "checks.csv" in str(error.value)


def test_birth_date_in_the_future_is_quarantined(birthday_data: Path) -> None:
    rewrite(
        birthday_data / "customers.csv",
        lambda f: f.with_columns(
            pl.when(pl.col("customer_id") == "8").then(pl.lit("2025-07-02")).otherwise("birth_date").alias("birth_date")
        ),
    )
    result = validate(SCHEMAS["customers"], read_file_table(birthday_data, "customers"), AS_OF, now=NOW)
    assert reasons_by(result, "customer_id") == {"8": ("birth date in the future", "birth_date")}
    # The run is at 30 Jun 00:00 UTC = 30 Jun 14:00 in UTC+14: a birth on 30 Jun is already possible.
    rewrite(
        birthday_data / "customers.csv",
        lambda f: f.with_columns(
            pl.when(pl.col("customer_id") == "8").then(pl.lit("2025-06-30")).otherwise("birth_date").alias("birth_date")
        ),
    )
    assert validate(
        SCHEMAS["customers"], read_file_table(birthday_data, "customers"), AS_OF, now=NOW
    ).quarantine.is_empty()


def test_labels_are_trimmed_and_empty_labels_dropped(birthday_data: Path, tmp_path: Path) -> None:
    rewrite(
        birthday_data / "customers.csv",
        lambda f: f.with_columns(
            pl.when(pl.col("customer_id") == "7")
            .then(pl.lit(" vip | promo_q1 "))
            .when(pl.col("customer_id") == "8")
            .then(pl.lit("a||b|"))
            .otherwise(pl.lit(None))
            .alias("labels")
        ),
    )
    kept = validate(SCHEMAS["customers"], read_file_table(birthday_data, "customers"), AS_OF, now=NOW).kept
    labels = dict(kept.select("customer_id", "labels").iter_rows())
    assert labels[7] == ["vip", "promo_q1"]
    assert labels[8] == ["a", "b"]
    # The same normalisation applies to a Parquet list column.
    frame = pl.read_csv(birthday_data / "customers.csv", try_parse_dates=True)
    frame = frame.with_columns(
        pl.Series("labels", [[" x ", ""]] + [[]] * (frame.height - 1), dtype=pl.List(pl.String()))
    )
    frame.write_parquet(tmp_path / "customers.parquet")
    from_parquet = read_file_table(tmp_path, "customers").frame
    assert from_parquet["labels"][0].to_list() == ["x"]


def test_a_sql_source_returning_a_column_twice_fails_naming_it(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from loyalty_assets.sources.readers import read_sql_table

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'src.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE raw_checks (check_id TEXT, customer_id INT, ts TEXT, total TEXT)"))
        conn.execute(sa.text("INSERT INTO raw_checks VALUES ('C1', 7, '2025-01-15 10:00:00', '1.00')"))
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "checks.sql").write_text("SELECT check_id, customer_id, ts, total, total FROM raw_checks")
    with pytest.raises(SourceError, match=r"column 'total': the query returns this column twice"):
        read_sql_table(engine, tmp_path, "checks", {})
    engine.dispose()
