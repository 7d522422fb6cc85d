"""Property-based tests of reading and validating sources: nothing is lost, changed or unexplained.

Hypothesis writes `checks` tables as CSV files with random mutations per row (empty keys, extra
decimals, bad bytes, ragged lines, nulls, duplicates, unknown customers, unparsable and future
timestamps, negative totals, time zones) and Parquet files with random physical column types. A
small oracle written here, independently of the code, says what must happen to each row. For
every generated table:

- rows read = kept + quarantined + not yet visible, and every row of the file is one of them;
- every kept value round-trips unchanged (the text written is the value typed, exactly);
- every quarantined row has the rule its mutation breaks;
- a table that cannot be read fails with a message naming table, file and column.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty_assets.sources.frames import AsOf
from loyalty_assets.sources.readers import SourceError, read_file_table
from loyalty_assets.sources.schemas import SCHEMAS
from loyalty_assets.sources.validation import validate

AS_OF = AsOf(date(2025, 2, 28), "Europe/Moscow")  # cutoff: 28 Feb 21:00 UTC
CUTOFF = datetime(2025, 2, 28, 21, 0, tzinfo=UTC)
NOW = datetime(2025, 6, 30, tzinfo=UTC)
KNOWN_CUSTOMERS = pl.Series("customer_id", [1, 2, 3], dtype=pl.Int64())
HEADER = "check_id,customer_id,ts,store_id,total,discount,row_no"

MUTATIONS = (
    None,
    "empty_key",
    "extra_decimals",
    "bad_byte",
    "ragged",
    "null_customer",
    "unknown_customer",
    "unparsable_ts",
    "future_ts",
    "negative",
    "duplicate",
)
#: The rule (and column) each mutation breaks; `unknown customer` and `duplicate key` depend on
#: visibility and on earlier rows, and are decided by the oracle.
RULES = {
    "empty_key": ("null value", "check_id"),
    "extra_decimals": ("more than 2 decimal places", "total"),
    "bad_byte": ("not UTF-8", None),
    "ragged": ("8 fields, the header has 7", None),
    "null_customer": ("null value", "customer_id"),
    "unparsable_ts": ("unparsable timestamp", "ts"),
    "future_ts": ("timestamp in the future of the run", "ts"),
    "negative": ("negative value", "total"),
}


@dataclass(frozen=True)
class Row:
    """One generated check and the values a kept row must have."""

    row_no: int
    mutation: str | None
    check_id: str
    customer_id: int
    ts: datetime
    ts_text: str
    store_id: str | None
    total_text: str

    def line(self) -> bytes:
        check_id = {"empty_key": '"  "'}.get(self.mutation or "", self.check_id)
        customer = "" if self.mutation == "null_customer" else str(self.customer_id)
        store = _csv_field(self.store_id)
        fields = [check_id, customer, self.ts_text, store, self.total_text, "", str(self.row_no)]
        if self.mutation == "ragged":
            fields.append("surplus")
        text = ",".join(fields).encode()
        if self.mutation == "bad_byte":
            text = text.replace(b",", b",\xff", 1)
        return text + b"\n"


def _csv_field(value: str | None) -> str:
    if value is None:
        return ""
    if any(c in value for c in ',"') or value != value.strip() or value == "":
        return '"' + value.replace('"', '""') + '"'
    return value


def _ts_text(moment: datetime, style: int) -> str:
    """The same instant written three ways: naive UTC, `Z`, or a +03:00 local time."""
    if style == 0:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if style == 1:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (moment + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S+03:00")


@st.composite
def rows(draw: st.DrawFn) -> list[Row]:
    count = draw(st.integers(min_value=1, max_value=25))
    out: list[Row] = []
    for i in range(count):
        mutation = draw(st.sampled_from(MUTATIONS))
        if mutation == "duplicate" and not out:
            mutation = None
        moment = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 90 * 24 * 60)))
        if mutation == "future_ts":
            moment = datetime(2099, 1, 1, tzinfo=UTC)
        ts_text = _ts_text(moment, draw(st.integers(0, 2)))
        if mutation == "unparsable_ts":
            ts_text = draw(st.sampled_from(["yesterday", "2025-02-30 10:00:00", "31.01.2025"]))
        cents = draw(st.integers(0, 10**7))
        total = Decimal(cents).scaleb(-2)
        total_text = draw(st.sampled_from([f"{total}", f"{total}0", f"{total:.1f}" if cents % 10 == 0 else f"{total}"]))
        if mutation == "extra_decimals":
            total_text = f"{total}{draw(st.integers(1, 9))}"
        if mutation == "negative":
            total_text = f"-{total + Decimal('0.01')}"
        check_id = draw(st.sampled_from([r.check_id for r in out])) if mutation == "duplicate" else f"K{i}"
        store = draw(st.one_of(st.none(), st.text(alphabet='ab, "Мв', max_size=6)))
        customer = 99 if mutation == "unknown_customer" else draw(st.sampled_from([1, 2, 3]))
        out.append(Row(i, mutation, check_id, customer, moment, ts_text, store, total_text))
    return out


def oracle(generated: list[Row]) -> tuple[dict[int, tuple[str, str | None]], set[int], set[int]]:
    """What must happen: quarantined row → (rule, column); kept rows; rows not yet visible."""
    quarantined: dict[int, tuple[str, str | None]] = {}
    kept: set[int] = set()
    later: set[int] = set()
    seen: set[str] = set()
    for row in generated:
        visible = row.ts < CUTOFF
        if row.mutation in RULES:
            quarantined[row.row_no] = RULES[row.mutation]
        elif row.mutation == "unknown_customer" and visible:
            quarantined[row.row_no] = ("unknown customer", "customer_id")
        elif row.check_id in seen:
            quarantined[row.row_no] = ("duplicate key", "check_id")
        else:
            seen.add(row.check_id)
            (kept if visible else later).add(row.row_no)
    return quarantined, kept, later


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=rows())
def test_every_csv_row_is_kept_unchanged_quarantined_with_its_rule_or_not_yet_visible(
    tmp_path: Path, generated: list[Row]
) -> None:
    folder = tmp_path / uuid.uuid4().hex  # one folder per example: the fixture is shared by all
    folder.mkdir()
    (folder / "checks.csv").write_bytes((HEADER + "\n").encode() + b"".join(r.line() for r in generated))
    raw = read_file_table(folder, "checks")
    result = validate(SCHEMAS["checks"], raw, AS_OF, now=NOW, known_customers=KNOWN_CUSTOMERS)
    counts = result.counts
    assert counts["rows_read"] == len(generated)
    assert counts["rows_read"] == counts["rows_kept"] + counts["rows_quarantined"] + counts["rows_not_yet_visible"]

    want_quarantined, want_kept, want_later = oracle(generated)
    got: dict[int, tuple[str, str | None]] = {}
    for rule, column, data in result.quarantine.select("rule", "column_name", "row_data").iter_rows():
        row = json.loads(data)
        row_no = int(row["row_no"]) if "row_no" in row else int(row["line"]) - 2  # line 2 is row 0
        got[row_no] = (rule, column)
        assert result.quarantine["source_file"][0] == str(folder / "checks.csv")
    assert got == want_quarantined
    assert set(result.kept["row_no"].cast(pl.Int64)) == want_kept
    assert set(result.not_yet_visible["row_no"].cast(pl.Int64)) == want_later

    by_no = {r.row_no: r for r in generated}
    for kept in pl.concat([result.kept, result.not_yet_visible]).iter_rows(named=True):
        row = by_no[int(kept["row_no"])]
        assert kept["check_id"] == row.check_id
        assert kept["customer_id"] == row.customer_id
        assert kept["ts"] == row.ts
        assert kept["total"] == Decimal(row.total_text)  # exactly: nothing rounded
        assert kept["store_id"] == (row.store_id if row.store_id and row.store_id.strip() else None)
        assert kept["discount"] is None


#: Physical types a Parquet column may arrive in, with a few values of each.
PHYSICAL = {
    "int": pl.Series([1, 2, 1_600_000_000], dtype=pl.Int64()),
    "float": pl.Series([1.5, 2.0, 3.25], dtype=pl.Float64()),
    "bool": pl.Series([True, False, True], dtype=pl.Boolean()),
    "date": pl.Series([date(2025, 1, 1), date(2025, 1, 2), date(2025, 1, 3)], dtype=pl.Date()),
    "datetime": pl.Series([datetime(2025, 1, 1, 10), datetime(2025, 1, 2), datetime(2025, 1, 3, 9)]),
    "text": pl.Series(["7", " ", "x"], dtype=pl.String()),
    "categorical": pl.Series(["7", " ", "x"], dtype=pl.Categorical()),
    "int_list": pl.Series([[1], [2], []], dtype=pl.List(pl.Int64())),
}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    table=st.sampled_from(["checks", "customers", "check_items", "bonus_transactions"]),
    column_index=st.integers(0, 20),
    physical=st.sampled_from(sorted(PHYSICAL)),
)
def test_a_parquet_column_of_any_physical_type_is_read_exactly_or_fails_naming_it(
    tmp_path: Path, table: str, column_index: int, physical: str
) -> None:
    schema = SCHEMAS[table]
    column = list(schema.columns)[column_index % len(schema.columns)]
    base = {
        "checks": {"check_id": ["A", "B", "C"], "customer_id": [1, 2, 3], "ts": ["2025-01-05"] * 3, "total": ["1"] * 3},
        "customers": {
            "customer_id": [1, 2, 3],
            "registered_at": ["2024-01-01"] * 3,
            **{c: ["true"] * 3 for c in ("email_subscribed", "sms_subscribed", "push_subscribed", "email_valid")},
        },
        "check_items": {
            "check_id": ["A", "B", "C"],
            "line_no": [1, 1, 1],
            "product_id": ["p"] * 3,
            "category_id": ["c"] * 3,
            "quantity": ["1"] * 3,
            "amount": ["1"] * 3,
        },
        "bonus_transactions": {
            "txn_id": ["A", "B", "C"],
            "customer_id": [1, 2, 3],
            "ts": ["2025-01-05"] * 3,
            "kind": ["accrual"] * 3,
            "amount": ["1"] * 3,
        },
    }[table]
    frame = pl.DataFrame(base).with_columns(PHYSICAL[physical].alias(column))
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    frame.write_parquet(folder / f"{table}.parquet")
    try:
        raw = read_file_table(folder, table)
    except SourceError as error:
        message = str(error)
        assert error.column == column
        assert f"table '{table}'" in message and f"{table}.parquet" in message and f"column '{column}'" in message
        assert "has type" in message  # the type found is named
        return
    result = validate(schema, raw, AS_OF, now=NOW)
    counts = result.counts
    assert counts["rows_read"] == 3 == counts["rows_kept"] + counts["rows_quarantined"] + counts["rows_not_yet_visible"]
    # Whatever was accepted is the value written, never a reinterpretation of it.
    dtype = schema.columns[column]
    for value, original in zip(raw.frame[column].to_list(), PHYSICAL[physical].to_list(), strict=True):
        if value is None:  # not typed: flagged (and quarantined) or blank, checked by the rules
            continue
        if dtype == pl.String() and physical in ("int", "text", "categorical"):
            assert value == str(original)
        elif isinstance(dtype, pl.Decimal):
            assert value == Decimal(str(original))
        elif dtype.is_integer():
            assert value == (int(original) if isinstance(original, str) else original)
        elif dtype == pl.Boolean():
            assert value == original
        elif dtype == pl.Date():
            assert value == (original.date() if isinstance(original, datetime) else original)
        elif isinstance(dtype, pl.Datetime):
            start = original if isinstance(original, datetime) else datetime.combine(original, datetime.min.time())
            assert value == start.replace(tzinfo=UTC)
        elif isinstance(dtype, pl.List):
            assert value == ([str(original)] if str(original).strip() else [])


@pytest.mark.parametrize("physical", ["int", "float", "bool"])
def test_a_number_where_a_timestamp_is_expected_is_never_guessed(tmp_path: Path, physical: str) -> None:
    frame = pl.DataFrame({"check_id": ["A", "B", "C"], "customer_id": [1, 2, 3], "total": ["1"] * 3}).with_columns(
        PHYSICAL[physical].alias("ts")
    )
    frame.write_parquet(tmp_path / "checks.parquet")
    with pytest.raises(SourceError, match=r"column 'ts': has type"):
        read_file_table(tmp_path, "checks")


CUSTOMER_HEADER = (
    "customer_id,registered_at,birth_date,email_subscribed,sms_subscribed,push_subscribed,email_valid,timezone,labels"
)


@st.composite
def customer_rows(draw: st.DrawFn) -> list[dict[str, object]]:
    count = draw(st.integers(min_value=1, max_value=15))
    label = st.text(alphabet="ab_ ", max_size=4)
    return [
        {
            "customer_id": i + 1,
            "timezone": draw(
                st.sampled_from(["Europe/Moscow", "Asia/Vladivostok", "UTC", "Mars/Base", "europe/moscow", "", "  "])
            ),
            "labels": draw(st.lists(label, max_size=4)),
            "birth_date": draw(st.sampled_from([date(1990, 5, 1), date(2025, 6, 30), date(2025, 7, 2), None])),
            "flag": draw(st.sampled_from(["true", "FALSE", "1", "no", "maybe", ""])),
        }
        for i in range(count)
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=customer_rows())
def test_customer_zones_labels_birth_dates_and_booleans_follow_their_rules(
    tmp_path: Path, generated: list[dict[str, object]]
) -> None:
    lines = [CUSTOMER_HEADER]
    for row in generated:
        birth = row["birth_date"].isoformat() if row["birth_date"] else ""  # type: ignore[attr-defined]
        labels = _csv_field("|".join(row["labels"]))  # type: ignore[arg-type]
        flag = row["flag"]
        lines.append(
            f"{row['customer_id']},2024-01-01 10:00:00,{birth},{flag},true,false,true,{row['timezone']},{labels}"
        )
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    (folder / "customers.csv").write_text("\n".join(lines) + "\n", encoding="utf8")
    result = validate(SCHEMAS["customers"], read_file_table(folder, "customers"), AS_OF, now=NOW)
    counts = result.counts
    assert counts["rows_read"] == len(generated) == counts["rows_kept"] + counts["rows_quarantined"]

    expected_quarantine: dict[int, tuple[str, str]] = {}
    for row in generated:
        cid = int(row["customer_id"])  # type: ignore[call-overload]
        if row["flag"] == "maybe":
            expected_quarantine[cid] = ("unparsable boolean", "email_subscribed")
        elif row["timezone"] in ("Mars/Base", "europe/moscow"):
            expected_quarantine[cid] = ("unknown time zone", "timezone")
        elif row["birth_date"] == date(2025, 7, 2):  # the run is on 30 Jun 2025 (UTC+14: still 30 Jun)
            expected_quarantine[cid] = ("birth date in the future", "birth_date")
    got = {
        int(json.loads(data)["customer_id"]): (rule, column)
        for rule, column, data in result.quarantine.select("rule", "column_name", "row_data").iter_rows()
    }
    assert got == expected_quarantine

    by_id = {int(r["customer_id"]): r for r in generated}  # type: ignore[call-overload]
    for kept in result.kept.iter_rows(named=True):
        row = by_id[kept["customer_id"]]
        zone = str(row["timezone"])
        assert kept["timezone"] == (zone if zone.strip() else None)  # blank is no zone: the program's
        assert kept["labels"] == [x.strip() for x in row["labels"] if x.strip()]  # type: ignore[attr-defined]
        assert kept["birth_date"] == row["birth_date"]
        # An empty subscription flag is unknown (null: the channel rules then treat it as not subscribed).
        flag = str(row["flag"]).lower()
        assert kept["email_subscribed"] is (None if flag == "" else flag in ("true", "1"))
