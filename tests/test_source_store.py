"""The validated source store: daily ingests scanned as of D keep exactly what `validate` keeps for D."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty_assets.sources.frames import AsOf
from loyalty_assets.sources.readers import RawTable, coerce
from loyalty_assets.sources.schemas import SCHEMAS
from loyalty_assets.sources.snapshot import load_snapshot
from loyalty_assets.sources.store import KHASH, TABLE_ORDER, SourceStore, StoreError, ingest_all

TZ = "Europe/Moscow"  # UTC+3: 21:00 UTC is already the next local day
NOW = datetime(2025, 6, 30, tzinfo=UTC)
DAY1 = date(2025, 3, 1)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def raw_tables(tables: dict[str, list[dict[str, object]]]) -> Callable[[str], RawTable]:
    """A reader over in-memory rows (tables not given are empty), typed like the file readers."""

    def read(table: str) -> RawTable:
        rows = tables.get(table, [])
        schema = SCHEMAS[table]
        columns = dict(schema.columns)
        if rows and "loaded_at" in rows[0]:
            columns["loaded_at"] = pl.Datetime("us", "UTC")
        frame = pl.DataFrame(rows, schema=columns, orient="row") if rows else pl.DataFrame(schema=columns)
        return RawTable(coerce(schema, frame, origin=f"mem:{table}"), f"mem:{table}")

    return read


def customer(cid: int, registered: datetime | None, timezone: str = TZ) -> dict[str, object]:
    return {
        "customer_id": cid,
        "registered_at": registered,
        "birth_date": None,
        "gender": "F",
        "first_name": None,
        "email": None,
        "phone": None,
        "push_token": None,
        "email_subscribed": True,
        "sms_subscribed": False,
        "push_subscribed": False,
        "email_valid": True,
        "timezone": timezone,
        "city": None,
        "labels": [],
    }


def check(check_id: str, cid: int, ts: datetime, total: str, loaded: datetime | None = None) -> dict[str, object]:
    return {
        "check_id": check_id,
        "customer_id": cid,
        "ts": ts,
        "store_id": "s1",
        "total": Decimal(total),
        "discount": None,
        "bonus_spent": None,
        "loaded_at": loaded,
    }


def item(check_id: str, line: int, quantity: str) -> dict[str, object]:
    return {
        "check_id": check_id,
        "line_no": line,
        "product_id": "p",
        "category_id": "c",
        "quantity": Decimal(quantity),
        "amount": Decimal("1.00"),
    }


def expected_kept(read: Callable[[str], RawTable], day: date) -> dict[str, pl.DataFrame]:
    """What today's full path keeps for `day` (every table, in the pipeline's order)."""
    snap = load_snapshot(read, AsOf(day, TZ), now=NOW)
    return {t: snap.results[t].kept for t in TABLE_ORDER}


def sort_by_key(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    return frame.sort(list(SCHEMAS[table].key))


def run_days(store: SourceStore, read: Callable[[str], RawTable], days: list[date]) -> None:
    for i, day in enumerate(days):
        ingest_all(store, read, day, now=NOW, history=i == 0)


def test_late_rows_unknown_customers_and_duplicates_day_by_day(tmp_path: Path) -> None:
    day2, day3 = DAY1 + timedelta(days=1), DAY1 + timedelta(days=2)
    read = raw_tables(
        {
            "customers": [
                customer(1, at(DAY1, 8)),
                customer(2, at(day3, 9)),  # registers on day 3
            ],
            # file order follows arrival: a late row is appended after the rows of its load day
            "checks": [
                check("a", 1, at(DAY1, 10), "10.00"),
                check("b", 2, at(DAY1, 11), "20.00"),  # customer 2 unknown until day 3
                check("neg", 1, at(DAY1, 12), "-1.00"),  # quarantined at once
                check("c", 1, at(DAY1, 22), "30.00"),  # 01:00 Moscow on day 2
                check("late", 1, at(DAY1, 13), "40.00", loaded=at(day2, 9)),  # arrives on day 2
                check("a", 1, at(day2, 10), "50.00"),  # duplicate of a: quarantined
            ],
            "check_items": [item("a", 1, "1"), item("late", 1, "2"), item("late", 1, "3"), item("b", 1, "1")],
        }
    )
    store = SourceStore(tmp_path / "store", TZ)
    run_days(store, read, [DAY1, day2, day3])

    def kept(table: str, day: date) -> list[object]:
        frame = store.scan_as_of(table, day).collect()
        return sorted(frame.select(pl.struct(SCHEMAS[table].key)).to_series().to_list(), key=str)

    assert [r["check_id"] for r in kept("checks", DAY1)] == ["a"]
    assert [r["check_id"] for r in kept("checks", day2)] == ["a", "c", "late"]
    assert [r["check_id"] for r in kept("checks", day3)] == ["a", "b", "c", "late"]
    a_total = store.scan_as_of("checks", day3).filter(pl.col("check_id") == "a").collect().item(0, "total")
    assert a_total == Decimal("10.00")  # the first row of the key wins, as in `validate`
    # one line of `late` is a duplicate key; lines follow their check's visibility
    assert kept("check_items", day2) == [{"check_id": "a", "line_no": 1}, {"check_id": "late", "line_no": 1}]
    assert len(kept("check_items", day3)) == 3
    for day in (DAY1, day2, day3):
        want = expected_kept(read, day)
        for table in ("customers", "checks", "check_items"):
            got = store.scan_as_of(table, day).collect()
            assert sort_by_key(got, table).equals(sort_by_key(want[table], table)), (table, day)
    counts = store.counts_as_of("checks", day2, rows_read=6)
    # kept a, c, late; quarantined neg, the duplicate a (visible on day 2) and b (unknown customer)
    assert counts == {"rows_read": 6, "rows_kept": 3, "rows_quarantined": 3, "rows_not_yet_visible": 0}
    assert store.counts_as_of("checks", DAY1, rows_read=6)["rows_not_yet_visible"] == 3


def test_reingest_replaces_the_day_and_gaps_are_named(tmp_path: Path) -> None:
    day2, day3 = DAY1 + timedelta(days=1), DAY1 + timedelta(days=2)
    read = raw_tables(
        {"customers": [customer(1, at(DAY1, 8))], "checks": [check("a", 1, at(day2, 10), "10.00", loaded=None)]}
    )
    store = SourceStore(tmp_path / "store", TZ)
    run_days(store, read, [DAY1, day2])
    ingest_all(store, read, day2, now=NOW)  # again: same rows, no second copy
    assert store.scan_as_of("checks", day2).collect().height == 1
    assert len(list((tmp_path / "store" / "checks").glob(f"{day2.isoformat()}.*.parquet"))) == 1  # nothing set aside
    # skipping day 3: the next day stops before computing and names the day that must run first
    with pytest.raises(StoreError, match=f"customers was not ingested for {day3.isoformat()}"):
        ingest_all(store, read, day3 + timedelta(days=1), now=NOW)
    with pytest.raises(StoreError, match=f"checks was not ingested for {day3.isoformat()}"):
        store.scan_as_of("checks", day3 + timedelta(days=1))


def test_scan_pushes_projection_and_predicates_down(tmp_path: Path) -> None:
    read = raw_tables({"customers": [customer(1, at(DAY1, 8))], "checks": [check("a", 1, at(DAY1, 10), "10.00")]})
    store = SourceStore(tmp_path / "store", TZ)
    run_days(store, read, [DAY1])
    plan = store.scan_as_of("checks", DAY1).filter(pl.col("customer_id") == 1).select("total").explain()
    assert "PROJECT" in plan and "SELECTION" in plan  # both reach the Parquet scan


def test_a_filter_reaches_the_files_of_a_store_with_repeats_and_late_customers(tmp_path: Path) -> None:
    """With a repeated key and a check waiting for its customer, the rules that depend on D are in
    the plan: the consumer's filter must still reach the checks' files (no scan shared and read whole)."""
    day2 = DAY1 + timedelta(days=1)
    read = raw_tables(
        {
            "customers": [customer(1, at(DAY1, 8)), customer(2, at(day2, 9))],
            "checks": [
                check("a", 1, at(DAY1, 10), "10.00"),
                check("b", 2, at(DAY1, 11), "20.00"),  # customer 2 registers on day 2
                check("a", 1, at(day2, 10), "50.00"),  # repeats a: the first row wins
                check("c", 1, at(day2, 12), "30.00"),
            ],
        }
    )
    store = SourceStore(tmp_path / "store", TZ)
    run_days(store, read, [DAY1, day2])
    since = pl.lit(at(day2, 0)).cast(pl.Datetime("us", "UTC"))
    scan = store.scan_as_of("checks", day2).filter(pl.col("ts") >= since)
    plan = scan.explain()
    selections = [line for line in plan.splitlines() if "SELECTION" in line]
    assert "CACHE" not in plan and any('col("ts")' in line for line in selections), plan
    assert sorted(scan.collect().get_column("check_id")) == ["c"]  # a's later row lost to its first
    whole = store.scan_as_of("checks", day2).collect().sort("check_id")
    assert whole.get_column("check_id").to_list() == ["a", "b", "c"]
    assert whole.filter(pl.col("check_id") == "a").item(0, "total") == Decimal("10.00")


# ---------------------------------------------------------------- property

DAYS = [DAY1 + timedelta(days=i) for i in range(4)]
HOURS = st.integers(min_value=-30, max_value=4 * 24 + 6)  # hours from 00:00 UTC of day 1; some before/after


def _instant(hours: int, minute: int) -> datetime:
    return at(DAY1, 0) + timedelta(hours=hours, minutes=minute)


@st.composite
def histories(draw: st.DrawFn) -> dict[str, list[dict[str, object]]]:
    """Customers (duplicates, bad zones, late registrations), checks (duplicate ids, unknown
    customers, late loads, negative totals, future timestamps) and lines, in arrival order."""
    customers = []
    for cid in draw(st.lists(st.integers(1, 6), min_size=1, max_size=8)):
        registered = None if draw(st.integers(0, 9)) == 0 else _instant(draw(HOURS), draw(st.integers(0, 59)))
        zone = draw(st.sampled_from([TZ, TZ, "Asia/Vladivostok", "Mars/Olympus"]))
        customers.append(customer(cid, registered, zone))
    checks = []
    for _ in range(draw(st.integers(0, 14))):
        ts = _instant(draw(HOURS), draw(st.integers(0, 59)))
        if draw(st.integers(0, 20)) == 0:
            ts = NOW + timedelta(days=1)  # in the future of the run
        lag = draw(st.sampled_from([None, None, 0, 3, 30, 50]))
        loaded = None if lag is None else ts + timedelta(hours=lag)
        total = draw(st.sampled_from(["10.00", "5.50", "-1.00"]))
        checks.append(check(draw(st.sampled_from("abcdefg")), draw(st.integers(1, 7)), ts, total, loaded))
    items = [
        item(draw(st.sampled_from("abcdefgz")), draw(st.integers(1, 2)), draw(st.sampled_from(["1", "2", "-1"])))
        for _ in range(draw(st.integers(0, 10)))
    ]

    def arrival(row: dict[str, object], stamp: str) -> datetime:
        own = row[stamp]
        loaded = row.get("loaded_at")
        if own is None:
            return datetime.max.replace(tzinfo=UTC)
        return max(own, loaded) if loaded is not None else own  # type: ignore[type-var,return-value]

    return {
        "customers": sorted(customers, key=lambda r: arrival(r, "registered_at")),
        "checks": sorted(checks, key=lambda r: arrival(r, "ts")),
        "check_items": items,
    }


def _check_ids() -> pl.Expr:
    """The check id inside a quarantine row's `row_data`."""
    return pl.col("row_data").str.json_path_match("$.check_id")


def assert_lines_of_bad_checks_quarantined(store: SourceStore, read: Callable[[str], RawTable], day: date) -> None:
    """The lines of a check set aside as of `day` (and with no valid row anywhere in the source) are
    quarantined as `validate` quarantines them, reason by reason; none is left as not yet visible."""
    snap = load_snapshot(read, AsOf(day, TZ), now=NOW)
    checks = snap.results["checks"]
    valid_anywhere = pl.concat([checks.kept.select("check_id"), checks.not_yet_visible.select("check_id")])
    bad = store.quarantine_at("checks", day).select(_check_ids().alias("check_id")).drop_nulls()
    target = bad.join(valid_anywhere, on="check_id", how="anti").unique()

    def lines(quarantine: pl.DataFrame) -> pl.DataFrame:
        with_id = quarantine.with_columns(_check_ids().alias("check_id"))
        return with_id.join(target, on="check_id", how="semi").select("rule", "column_name", "row_data").sort(pl.all())

    want = lines(snap.results["check_items"].quarantine)
    assert lines(store.quarantine_at("check_items", day)).equals(want), day


@pytest.mark.long
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories())
def test_daily_ingests_scanned_as_of_d_equal_validate(tmp_path_factory: pytest.TempPathFactory, history) -> None:
    read = raw_tables(history)
    store = SourceStore(tmp_path_factory.mktemp("store"), TZ)
    run_days(store, read, DAYS)
    before: dict[str, pl.DataFrame] | None = None
    for day in DAYS:
        want = expected_kept(read, day)
        cutoff = AsOf(day, TZ).cutoff
        for table in ("customers", "checks", "check_items"):
            got = store.scan_as_of(table, day).collect()
            assert sort_by_key(got, table).equals(sort_by_key(want[table], table)), (table, day)
            if before is None:
                continue
            # what entered on `day` is what is kept now and was not the day before (when nothing left)
            columns = [c for c in want[table].columns if c != "labels"]
            left = (
                before[table]
                .select(columns)
                .join(want[table].select(columns), on=columns, how="anti", nulls_equal=True)
            )
            if left.is_empty():
                entered = want[table].join(before[table].select(columns), on=columns, how="anti", nulls_equal=True)
                got_entered = store.scan_entered(table, day)
                assert sort_by_key(got_entered, table).equals(sort_by_key(entered, table)), ("entered", table, day)
        before = want
        assert_lines_of_bad_checks_quarantined(store, read, day)
        for table, stamp in (("customers", "registered_at"), ("checks", "ts")):
            rows = history[table]
            counts = store.counts_as_of(table, day, rows_read=len(rows))
            later = sum(
                1
                for r in rows
                if r[stamp] is not None and max(r[stamp], r.get("loaded_at") or r[stamp]) >= cutoff  # type: ignore[type-var]
            )
            # every visible row was kept or quarantined exactly once; the rest is not yet visible
            assert counts["rows_not_yet_visible"] == later, (table, day, counts)
            assert counts["rows_kept"] == want[table].height


def test_lines_of_a_quarantined_check_are_quarantined_with_it(tmp_path: Path) -> None:
    """A check set aside at ingest takes its lines with it: each is reported once, by its own rule
    when it breaks one, else `check missing or quarantined`, and none counts as not yet visible;
    when a valid row of the same check arrives later, its lines are kept from that day on."""
    day2 = DAY1 + timedelta(days=1)
    read = raw_tables(
        {
            "customers": [customer(1, at(DAY1, 8))],
            "checks": [
                check("bad", 1, at(DAY1, 10), "-1.00"),  # negative total: quarantined on day 1
                check("late", 1, at(DAY1, 11), "-5.00"),  # quarantined on day 1, a valid row on day 2
                check("late", 1, at(day2, 11), "5.00"),
            ],
            "check_items": [
                item("bad", 1, "1"),
                item("bad", 2, "-1"),  # its own rule first
                item("late", 1, "1"),
                item("nowhere", 1, "1"),  # no check at all: never visible to the store (README)
            ],
        }
    )
    store = SourceStore(tmp_path / "store", TZ)
    run_days(store, read, [DAY1, day2])

    def reported(day: date) -> list[tuple[str, str]]:
        q = store.quarantine_at("check_items", day)
        return sorted(
            zip(
                q["rule"],
                q["row_data"].str.json_path_match("$.check_id") + ":" + q["row_data"].str.json_path_match("$.line_no"),
                strict=True,
            )
        )

    assert reported(DAY1) == [
        ("check missing or quarantined", "bad:1"),
        ("check missing or quarantined", "late:1"),
        ("negative value", "bad:2"),
    ]
    assert reported(day2) == [("check missing or quarantined", "bad:1"), ("negative value", "bad:2")]
    assert store.scan_as_of("check_items", day2).select("check_id", "line_no").collect().rows() == [("late", 1)]
    counts = store.counts_as_of("check_items", DAY1, rows_read=4)
    assert counts == {"rows_read": 4, "rows_kept": 0, "rows_quarantined": 3, "rows_not_yet_visible": 1}
    counts = store.counts_as_of("check_items", day2, rows_read=4)
    assert counts == {"rows_read": 4, "rows_kept": 1, "rows_quarantined": 2, "rows_not_yet_visible": 1}


def test_day_reader_on_sample_data_equals_the_full_path(tmp_path: Path) -> None:
    """On generated data (its bad rows, late loads, duplicates, unknown customers included), ingesting
    day by day with `read_visible` keeps what `load_snapshot` keeps, table by table."""
    from loyalty_assets.sample_data import generate
    from loyalty_assets.sources.readers import read_file_table
    from loyalty_assets.sources.store import read_visible

    data = tmp_path / "data"
    last = date(2025, 6, 30)
    generate(data, customers=300, days=30, end_date=last, progress=False)
    days = [last - timedelta(days=3 - i) for i in range(4)]
    store = SourceStore(tmp_path / "store", TZ)
    for i, day in enumerate(days):
        first = i == 0

        def read_day(t: str, day: date = day, first: bool = first) -> RawTable:
            return read_visible(data, t, day, program_tz=TZ, history=first)

        ingest_all(store, read_day, day, now=NOW, history=first)

    def read_all(t: str) -> RawTable:
        return read_file_table(data, t)

    for day in (days[0], days[-1]):
        want = expected_kept(read_all, day)
        for table in TABLE_ORDER:
            got = store.scan_as_of(table, day).collect()
            assert sorted(got.columns) == sorted(want[table].columns), table
            expected = want[table].select(got.columns)
            assert got.height > 0 or table in ("communications", "favourite_categories"), table
            assert sort_by_key(got, table).equals(sort_by_key(expected, table)), (table, day)


@pytest.mark.long
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories())
def test_a_history_ingest_answers_for_every_earlier_day(tmp_path_factory: pytest.TempPathFactory, history) -> None:
    """The first run on an empty store stores each row on its own visible day: a store first run for
    the last day answers for every earlier day as `validate` and day-by-day ingests do."""
    read = raw_tables(history)
    first_run_last = SourceStore(tmp_path_factory.mktemp("last"), TZ)
    ingest_all(first_run_last, read, DAYS[-1], now=NOW, history=True)
    daily = SourceStore(tmp_path_factory.mktemp("daily"), TZ)
    run_days(daily, read, DAYS)
    for day in [DAYS[0] - timedelta(days=1), *DAYS]:
        want = expected_kept(read, day)
        for table in ("customers", "checks", "check_items"):
            got = first_run_last.scan_as_of(table, day).collect()
            assert sort_by_key(got, table).equals(sort_by_key(want[table], table)), (table, day)
            if day < DAYS[0]:
                continue
            assert (
                first_run_last.quarantine_at(table, day)
                .sort(pl.all())
                .equals(daily.quarantine_at(table, day).sort(pl.all()))
            ), ("quarantine", table, day)
            rows = len(history.get(table, []))
            assert first_run_last.counts_as_of(table, day, rows) == daily.counts_as_of(table, day, rows), (table, day)


def _as_if_written_by_another_polars(root: Path, table: str) -> None:
    """Parts whose `__khash` came from another hash function (the manifest's `hash_probe` differs)."""
    import json

    from loyalty_assets.sources import store as store_module

    for manifest_path in (root / table).glob("*.json"):
        manifest = json.loads(manifest_path.read_text())
        part = root / table / manifest["data"]
        pl.read_parquet(part).with_columns((pl.col(KHASH) ^ 0x5A5A5A5A).alias(KHASH)).write_parquet(part)
        manifest["hash_probe"] = manifest["hash_probe"] ^ 1
        manifest_path.write_text(json.dumps(manifest, sort_keys=True))
    store_module._MANIFESTS.clear()
    store_module._CONTESTED.clear()


def test_a_repeated_key_survives_a_store_hashed_by_another_polars(tmp_path: Path) -> None:
    """The contested keys' first rows are found by the stored key hash only when every part's hashes
    are this Polars' (found by the review: the key vanished from the scan and the count)."""
    day2 = DAY1 + timedelta(days=1)
    read = raw_tables(
        {
            "customers": [customer(1, at(DAY1, 8))],
            "checks": [
                check("a", 1, at(DAY1, 10), "10.00"),
                check("a", 1, at(day2, 10), "50.00"),  # repeats a: the first row wins
                check("c", 1, at(day2, 12), "30.00"),
            ],
        }
    )
    run_days(SourceStore(tmp_path / "store", TZ), read, [DAY1, day2])
    _as_if_written_by_another_polars(tmp_path / "store", "checks")
    store = SourceStore(tmp_path / "store", TZ)
    kept = store.scan_as_of("checks", day2).collect().sort("check_id")
    assert kept.get_column("check_id").to_list() == ["a", "c"]
    assert kept.filter(pl.col("check_id") == "a").item(0, "total") == Decimal("10.00")
    count, quarantine = store.split_at("checks", day2)
    assert count == 2 and quarantine.get_column("rule").to_list() == ["duplicate key"]


def test_a_customer_registered_later_on_a_rerun_of_an_earlier_day(tmp_path: Path) -> None:
    """Day 2 run again after day 3 with a corrected customers source (customer 2 now registers on
    day 4): day 3's check of customer 2, stored while she was known, is quarantined as of day 3 and
    not counted as kept (found by the review)."""
    day2, day3 = DAY1 + timedelta(days=1), DAY1 + timedelta(days=2)
    rows = {
        "customers": [customer(1, at(DAY1, 8)), customer(2, at(day2, 9))],
        "checks": [check("p", 9, at(DAY1, 10), "1.00"), check("b", 2, at(day3, 11), "20.00")],  # 9: never
    }
    store = SourceStore(tmp_path / "s", TZ)
    run_days(store, raw_tables(rows), [DAY1, day2, day3])
    rows["customers"] = [customer(1, at(DAY1, 8)), customer(2, at(day3 + timedelta(days=1), 9))]
    for table in ("customers", "checks"):
        store.ingest_day(table, day2, raw_tables(rows)(table), now=NOW)
    fresh = SourceStore(tmp_path / "s", TZ)
    assert fresh.scan_as_of("checks", day3).collect().is_empty()
    count, quarantine = fresh.split_at("checks", day3)
    assert count == 0
    assert sorted(quarantine.get_column("rule").to_list()) == ["unknown customer", "unknown customer"]
