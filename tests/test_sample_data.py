"""The sample-data generator: contract schemas, determinism, believable edge cases and bad rows.

Small runs (300 customers over 120 days) keep this fast; the chunked path that the 1M-customer
benchmark takes is exercised by shrinking the chunk size.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, available_timezones

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from loyalty_assets import sample_data
from loyalty_assets.sample_data import CHECKS_COLUMNS, generate, main
from loyalty_assets.sources.schemas import ENUMS, NON_NEGATIVE, SCHEMAS

SMALL = {"customers": 300, "days": 120, "end_date": date(2025, 6, 30), "progress": False}
END_CUTOFF = datetime.combine(date(2025, 7, 1), time(0), ZoneInfo("Europe/Moscow"))


def _columns(table: str) -> dict[str, pl.DataType]:
    return CHECKS_COLUMNS if table == "checks" else SCHEMAS[table].columns


def _read(out: Path, table: str) -> pl.DataFrame:
    """One table as written: a single Parquet file, a folder of parts, or CSV cast to the contract."""
    if (out / f"{table}.parquet").is_file():
        return pl.read_parquet(out / f"{table}.parquet")
    if (out / table).is_dir():
        return pl.read_parquet(sorted((out / table).glob("part-*.parquet")))
    return _cast_csv(pl.read_csv(out / f"{table}.csv", infer_schema=False), _columns(table))


def _cast_csv(raw: pl.DataFrame, columns: dict[str, pl.DataType]) -> pl.DataFrame:
    """Text columns -> contract types, the way a CSV consumer would."""
    exprs: list[pl.Expr] = []
    for name, dtype in columns.items():
        col = pl.when(pl.col(name) == "").then(None).otherwise(pl.col(name))
        if isinstance(dtype, pl.Datetime):
            expr = col.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", time_unit="us").dt.convert_time_zone("UTC")
        elif dtype == pl.Date():
            expr = col.str.to_date("%Y-%m-%d")
        elif dtype == pl.Boolean():
            expr = pl.col(name).replace_strict({"true": True, "false": False}, return_dtype=pl.Boolean())
        elif isinstance(dtype, pl.List):
            expr = pl.when(col.is_null()).then(pl.lit([], dtype=dtype)).otherwise(col.str.split("|"))
        else:
            expr = col.cast(dtype)
        exprs.append(expr.cast(dtype).alias(name))
    return raw.select(exprs)


def _all(out: Path) -> dict[str, pl.DataFrame]:
    return {table: _read(out, table) for table in SCHEMAS}


def _digest(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def _not_bad(frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """The tables without the deliberately bad rows."""
    out = dict(frames)
    out["customers"] = frames["customers"].filter(pl.col("timezone").fill_null("") != sample_data.BAD_TIMEZONE)
    out["checks"] = frames["checks"].filter(~pl.col("check_id").str.starts_with("BAD-"))
    out["check_items"] = frames["check_items"].filter(~pl.col("check_id").str.starts_with("BAD-"))
    return out


@pytest.fixture(scope="module")
def with_bad(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("with_bad")
    return out, generate(out, seed=42, **SMALL)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    generate(out, seed=42, bad_rows=False, **SMALL)
    return out


def test_writes_every_table_with_exactly_the_contract_columns(with_bad: tuple[Path, dict[str, int]]) -> None:
    out, rows = with_bad
    assert set(rows) == set(SCHEMAS)
    for table in SCHEMAS:
        assert (out / f"{table}.parquet").is_file(), table
        frame = _read(out, table)
        assert dict(frame.schema) == _columns(table), table
        assert frame.height == rows[table], table
        assert frame.height > 0, table
    assert not (out / sample_data._STAGING).exists()


def test_same_seed_gives_identical_files_and_another_seed_differs(
    with_bad: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    out, _ = with_bad
    again, other = tmp_path / "again", tmp_path / "other"
    generate(again, seed=42, **SMALL)
    generate(other, seed=43, **SMALL)
    assert _digest(again) == _digest(out)
    first, second, third = _all(out), _all(again), _all(other)
    for table in SCHEMAS:
        assert_frame_equal(first[table], second[table])
    assert not first["checks"].equals(third["checks"])
    assert not first["customers"].equals(third["customers"])
    assert_frame_equal(first["categories"], third["categories"])  # reference data, not random


def test_check_totals_are_exactly_the_sum_of_their_items(with_bad: tuple[Path, dict[str, int]]) -> None:
    out, _ = with_bad
    checks, items = _read(out, "checks"), _read(out, "check_items")
    sums = items.group_by("check_id").agg(pl.col("amount").sum().alias("items_total"))
    joined = checks.join(sums, on="check_id", how="left")
    assert joined["items_total"].null_count() == 0  # every check has lines
    assert (joined["total"] == joined["items_total"]).all()
    assert items.join(checks, on="check_id", how="anti").is_empty()  # every line has a check
    assert (checks["discount"] + checks["bonus_spent"] <= checks["total"]).all()


def test_line_numbers_run_from_one_without_gaps(with_bad: tuple[Path, dict[str, int]]) -> None:
    items = _read(with_bad[0], "check_items")
    stats = items.group_by("check_id").agg(
        pl.len().alias("n"), pl.col("line_no").min().alias("lo"), pl.col("line_no").max().alias("hi")
    )
    assert (stats["lo"] == 1).all()
    assert (stats["hi"] == stats["n"]).all()


def test_edge_cases_the_scenarios_need_are_present(with_bad: tuple[Path, dict[str, int]]) -> None:
    frames = _not_bad(_all(with_bad[0]))
    customers, checks = frames["customers"], frames["checks"]
    born = customers["birth_date"]
    assert customers.filter((born.dt.month() == 2) & (born.dt.day() == 29)).height >= 3
    assert 0 < born.null_count() < customers.height
    assert customers["timezone"].null_count() > 0  # program zone applies
    buyers = checks["customer_id"].unique()
    assert 0 < customers.filter(~pl.col("customer_id").is_in(buyers.implode())).height < customers.height // 2
    assert checks.filter(pl.col("loaded_at") - pl.col("ts") > timedelta(days=1)).height > 0
    assert checks.filter(pl.col("loaded_at") - pl.col("ts") < timedelta(hours=7)).height > checks.height * 0.9
    tenure = date(2025, 6, 30) - customers["registered_at"].dt.date()
    assert 0 < (tenure >= timedelta(days=365)).sum() < customers.height
    assert customers["labels"].list.len().sum() > 0
    accrued = (
        frames["bonus_transactions"]
        .filter(pl.col("kind") == "accrual")
        .group_by("customer_id")
        .agg(pl.col("amount").sum())
    )
    assert accrued.filter(pl.col("amount") > 1000).height > 0
    assert set(frames["bonus_transactions"]["kind"]) == {"accrual", "redemption", "expiry"}
    assert "aquarium_fish" in set(frames["check_items"]["category_id"])
    june = frames["favourite_categories"].filter(pl.col("period_start") == date(2025, 6, 1))
    assert 0 < june["customer_id"].n_unique() < customers.height


def test_clean_data_breaks_no_contract_rule(clean: Path) -> None:
    frames = _all(clean)
    customers = frames["customers"]
    ids = customers["customer_id"].implode()
    for table, schema in SCHEMAS.items():
        frame = frames[table]
        for column in schema.not_null:
            assert frame[column].null_count() == 0, (table, column)
        assert frame.select(schema.key).is_duplicated().sum() == 0, table
        if schema.customer_column:
            assert frame.filter(~pl.col("customer_id").is_in(ids)).is_empty(), table
        if schema.visible_at:
            assert frame[schema.visible_at].max() < END_CUTOFF, table
        for column in NON_NEGATIVE.get(table, ()):
            assert frame.filter(pl.col(column) < 0).is_empty(), (table, column)
    for (table, column), allowed in ENUMS.items():
        assert set(frames[table][column].drop_nulls()) <= set(allowed), (table, column)
    assert (frames["check_items"]["quantity"] > 0).all()
    assert (frames["check_items"]["amount"] > 0).all()
    assert set(customers["timezone"].drop_nulls()) <= available_timezones()
    categories = frames["categories"]
    assert categories.filter(
        pl.col("parent_id").is_not_null() & ~pl.col("parent_id").is_in(categories["category_id"].implode())
    ).is_empty()
    assert set(frames["check_items"]["category_id"]) <= set(categories["category_id"])
    # Nothing a customer does comes before they registered.
    registered = customers.select("customer_id", "registered_at")
    for table, column in (("checks", "ts"), ("site_visits", "ts"), ("favourite_categories", "chosen_at")):
        early = frames[table].join(registered, on="customer_id").filter(pl.col(column) < pl.col("registered_at"))
        assert early.is_empty(), table


def test_attribute_history_is_contiguous(clean: Path) -> None:
    attributes = _read(clean, "customer_attributes").sort("customer_id", "name", "valid_from")
    chained = attributes.with_columns(pl.col("valid_from").shift(-1).over("customer_id", "name").alias("next_from"))
    assert (chained["valid_to"].is_null() == chained["next_from"].is_null()).all()
    closed = chained.filter(pl.col("valid_to").is_not_null())
    assert (closed["valid_to"] == closed["next_from"]).all()
    assert (closed["valid_to"] > closed["valid_from"]).all()


def test_message_events_agree_with_subscriptions(clean: Path) -> None:
    messages, customers = _read(clean, "communications"), _read(clean, "customers")
    assert (messages["event_at"] >= messages["sent_at"]).all()
    assert messages.filter(pl.col("event") == "sent").height == messages["message_id"].n_unique()
    opted_out = messages.filter(pl.col("event") == "unsubscribed").select(
        "customer_id", pl.col("sent_at").alias("opt_out_sent_at")
    )
    assert opted_out.height > 0
    assert opted_out.join(customers, on="customer_id").filter(pl.col("email_subscribed")).is_empty()
    emails = messages.filter((pl.col("event") == "sent") & (pl.col("channel") == "email"))
    assert emails.join(opted_out, on="customer_id").filter(pl.col("sent_at") > pl.col("opt_out_sent_at")).is_empty()
    to_unsubscribed = emails.join(customers, on="customer_id").filter(~pl.col("email_subscribed"))
    assert to_unsubscribed.join(opted_out, on="customer_id", how="anti").is_empty()


def test_activity_happens_in_local_daytime(clean: Path) -> None:
    """Catches time-zone conversion mistakes: checks are rung up between 08:00 and 21:59 local time."""
    checks = _read(clean, "checks").join(_read(clean, "customers"), on="customer_id")
    for zone, group in checks.group_by(pl.col("timezone").fill_null("Europe/Moscow")):
        hours = group["ts"].dt.convert_time_zone(str(zone[0])).dt.hour()
        assert hours.min() >= 8 and hours.max() <= 21, zone


def test_bad_rows_are_present_and_are_the_only_difference(with_bad: tuple[Path, dict[str, int]], clean: Path) -> None:
    frames = _all(with_bad[0])
    checks, items, customers = frames["checks"], frames["check_items"], frames["customers"]
    bad = checks.filter(pl.col("check_id").str.starts_with("BAD-"))
    assert bad.filter(pl.col("customer_id").is_null()).height >= 1
    assert bad.filter(pl.col("customer_id") == sample_data.UNKNOWN_CUSTOMER_ID).height >= 1
    assert (
        not bad.filter(pl.col("customer_id") == sample_data.UNKNOWN_CUSTOMER_ID)["customer_id"]
        .is_in(customers["customer_id"].implode())
        .any()
    )
    assert checks["check_id"].is_duplicated().sum() >= 2
    assert checks.filter(pl.col("check_id").is_duplicated())["check_id"].str.starts_with("BAD-DUP-").all()
    assert items.filter(pl.col("quantity") < 0)["check_id"].str.starts_with("BAD-NEGQTY-").all()
    assert items.filter(pl.col("quantity") < 0).height >= 1
    mars = customers.filter(pl.col("timezone") == sample_data.BAD_TIMEZONE)
    assert mars.height >= 1 and (mars["customer_id"] > sample_data.BAD_CUSTOMER_ID_BASE).all()
    good = _not_bad(frames)
    reference = _all(clean)
    for table in SCHEMAS:
        assert_frame_equal(good[table], reference[table])


def test_if_absent_leaves_existing_data_untouched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data"
    base = ["--out", str(out), "--customers", "200", "--days", "60", "--no-progress"]
    assert main([*base, "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "check_items" in printed and "total" in printed
    before = _digest(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert main([*base, "--seed", "2", "--if-absent"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert _digest(out) == before
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == mtimes
    assert main([*base, "--seed", "2"]) == 0  # without the flag the data is replaced
    assert _digest(out) != before


def test_if_absent_sees_csv_data_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data"
    base = ["--out", str(out), "--customers", "50", "--days", "30", "--no-progress"]
    assert main([*base, "--format", "csv"]) == 0
    before = _digest(out)
    capsys.readouterr()
    assert main([*base, "--if-absent"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert _digest(out) == before


def test_csv_round_trips_to_the_same_data(with_bad: tuple[Path, dict[str, int]], tmp_path: Path) -> None:
    rows = generate(tmp_path, seed=42, fmt="csv", **SMALL)
    assert rows == with_bad[1]
    for table in SCHEMAS:
        path = tmp_path / f"{table}.csv"
        assert path.is_file(), table
        assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(_columns(table)), table
        assert_frame_equal(_read(tmp_path, table), _read(with_bad[0], table))
    labels = pl.read_csv(tmp_path / "customers.csv", infer_schema=False)["labels"]
    assert labels.str.contains("|", literal=True).any() or (labels == "vip").any()


def test_chunked_run_writes_parts_and_stays_consistent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark-scale path (several chunks, check_items as parts), shrunk to small chunks."""
    monkeypatch.setattr(sample_data, "CHUNK_CUSTOMERS", 100)
    rows = generate(tmp_path, seed=7, **SMALL)
    parts = sorted((tmp_path / "check_items").glob("part-*.parquet"))
    assert len(parts) >= 3 and not (tmp_path / "check_items.parquet").exists()
    frames = _all(tmp_path)
    for table in SCHEMAS:
        assert dict(frames[table].schema) == _columns(table), table
        assert frames[table].height == rows[table], table
    good = _not_bad(frames)
    for table, schema in SCHEMAS.items():
        assert good[table].select(schema.key).is_duplicated().sum() == 0, table
    sums = frames["check_items"].group_by("check_id").agg(pl.col("amount").sum().alias("items_total"))
    joined = frames["checks"].join(sums, on="check_id")
    assert joined.height == frames["checks"].height
    assert (joined["total"] == joined["items_total"]).all()

    # A later single-file run into the same folder removes the parts, so readers never mix runs.
    monkeypatch.setattr(sample_data, "CHUNK_CUSTOMERS", 50_000)
    generate(tmp_path, seed=7, **SMALL)
    assert (tmp_path / "check_items.parquet").is_file() and not (tmp_path / "check_items").exists()


def test_volume_follows_customers_and_days(with_bad: tuple[Path, dict[str, int]]) -> None:
    """~20 check lines per customer per 400 days: 300 customers over 120 days give ~1,800 lines."""
    rows = with_bad[1]
    expected_lines = 20 * 300 * 120 / 400
    assert 0.6 * expected_lines < rows["check_items"] < 1.6 * expected_lines
    assert 2.5 < rows["check_items"] / rows["checks"] < 6


def test_rejects_nonsense_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        generate(tmp_path, customers=0, progress=False)
    with pytest.raises(ValueError, match="format"):
        generate(tmp_path, customers=10, fmt="json", progress=False)  # type: ignore[arg-type]
