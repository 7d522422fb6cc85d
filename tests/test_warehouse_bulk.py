"""The bulk paths (COPY on PostgreSQL, executemany on SQLite, COPY TO / typed tuples for reads) keep
every value exactly: hostile text, empty text apart from NULL, exact decimals, UTC timestamps."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import polars as pl
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from loyalty_assets.warehouse.warehouse import Warehouse, schema_of

DAY = date(2025, 6, 26)
SCOPE = {"campaign_id": "c1", "partition_date": DAY}
AT = datetime(2025, 6, 26, 7, 0, tzinfo=UTC)

#: Each one breaks a naive COPY text or CSV encoding, or a naive NULL convention.
HOSTILE = [
    "tab\there",
    "line\nbreak",
    "carriage\rreturn\r\n",
    "back\\slash \\N \\t \\.",
    "\\.",
    "\\N",
    "double \"quotes\" and 'single'",
    "Привет, Анна! Ваши бонусы: 500 ₽",
    "",
    " leading and trailing ",
    ",comma;semicolon|pipe",
    "NULL",
    "\ufeffbyte-order mark",
    "<p>Здравствуйте, {{ name }}</p>\n\t<a href=\"https://x.ru/?a=1&b='2'\">ссылка</a>",
    "emoji 🎂 and U+2028 \u2028 end",
]


def outbox(bodies: list[str], subjects: list[str | None]) -> pl.DataFrame:
    n = len(bodies)
    return pl.DataFrame(
        {
            "message_id": [f"c1:s:email:{i}:o" for i in range(n)],
            "step_id": ["s"] * n,
            "customer_id": list(range(n)),
            "occasion": ["o"] * n,
            "channel": ["email"] * n,
            "recipient": [f"user{i}@example.com" for i in range(n)],
            "subject": pl.Series(subjects, dtype=pl.String()),
            "body": bodies,
            "template": ["t.html"] * n,
            "variant": pl.Series([None] * n, dtype=pl.String()),
            "send_at": pl.Series([AT + timedelta(microseconds=i) for i in range(n)], dtype=pl.Datetime("us", "UTC")),
            "batch_no": list(range(n)),
        }
    )


def test_hostile_text_round_trips_and_empty_text_stays_apart_from_null(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    subjects: list[str | None] = [None, "", *HOSTILE[2:]]
    written = wh.replace("message_outbox", outbox(HOSTILE, subjects), SCOPE)
    assert written == len(HOSTILE)
    back = wh.read("message_outbox", SCOPE).sort("customer_id")
    assert back["body"].to_list() == HOSTILE
    assert back["subject"].to_list() == subjects  # None stays None, "" stays ""
    assert back["subject"].null_count() == 1
    assert back["variant"].to_list() == [None] * len(HOSTILE)
    # microseconds survive, and the instant is UTC
    assert back["send_at"][14] == datetime(2025, 6, 26, 7, 0, 0, 14, tzinfo=UTC)
    assert back.schema == schema_of(wh.table("message_outbox"))


def test_decimals_are_exact_at_the_edges_of_numeric_14_2(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    amounts = ["0.00", "0.01", "0.10", "-0.01", "500.00", "999999999999.99", "-999999999999.99", "123456789012.34"]
    n = len(amounts)
    frame = pl.DataFrame(
        {
            "customer_id": list(range(n)),
            "occasion": [f"o{i}" for i in range(n)],
            "event_date": [DAY] * n,
            "triggered_at": pl.Series([AT] * n, dtype=pl.Datetime("us", "UTC")),
            "is_control": [i % 2 == 0 for i in range(n)],
            "check_total": pl.Series([Decimal(a) for a in amounts], dtype=pl.Decimal(14, 2)),
            "event_amount": pl.Series([None] * n, dtype=pl.Decimal(14, 2)),
        }
    )
    wh.replace("triggered_customers", frame, SCOPE)
    back = wh.read("triggered_customers", {"campaign_id": "c1"}).sort("customer_id")
    assert back["check_total"].to_list() == [Decimal(a) for a in amounts]
    assert back["check_total"].sum() == Decimal("123456789512.44")  # 0.01 + 0.10 - 0.01 + 500 + 123456789012.34
    assert back["event_amount"].null_count() == n
    assert back["is_control"].to_list() == [True, False] * 4
    assert back["check_id"].to_list() == [None] * n  # a nullable column the frame did not have


def test_zone_aware_timestamps_are_stored_as_utc_and_naive_ones_taken_as_utc(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    ten_in_moscow = pl.Series("ts", [datetime(2025, 2, 22, 7, 0, tzinfo=UTC)]).dt.convert_time_zone("Europe/Moscow")
    seven_naive_ms = pl.Series("ts", [datetime(2025, 2, 22, 7, 0)], dtype=pl.Datetime("ms"))
    for customer, ts in ((1, ten_in_moscow), (2, seven_naive_ms)):
        frame = pl.DataFrame({"event_id": [f"e{customer}"], "customer_id": [customer], "action": ["add"]})
        scope = {"segment_id": "fish_owners", "campaign_id": f"c{customer}", "partition_date": DAY}
        wh.replace("manual_segment_events", frame.with_columns(ts), scope)
    back = wh.read("manual_segment_events", {"segment_id": "fish_owners"}).sort("customer_id")
    assert back["ts"].to_list() == [datetime(2025, 2, 22, 7, 0, tzinfo=UTC)] * 2
    # a filter on a stored timestamp compares instants: 10:00 Moscow is 07:00 UTC
    moscow = datetime(2025, 2, 22, 10, 0, tzinfo=ZoneInfo("Europe/Moscow"))
    assert wh.read("manual_segment_events", {"ts": moscow}).height == 2
    assert wh.read("manual_segment_events", {"ts": datetime(2025, 2, 22, 10, 0)}).height == 0


def test_filters_in_lists_before_and_since(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    for day in (date(2025, 6, 24), date(2025, 6, 25), date(2025, 6, 26)):
        frame = pl.DataFrame({"customer_id": [day.day, 100 + day.day]})
        wh.replace("segment_members", frame, {"segment_id": "s", "entered_on": day})
    assert sorted(wh.read("segment_members", since=("entered_on", date(2025, 6, 25)))["customer_id"]) == [
        25,
        26,
        125,
        126,
    ]
    assert sorted(wh.read("segment_members", before=("entered_on", date(2025, 6, 25)))["customer_id"]) == [24, 124]
    assert sorted(wh.read("segment_members", {"customer_id": [24, 126, 999]})["customer_id"]) == [24, 126]
    assert sorted(wh.read("segment_members", {"customer_id": (25,)})["customer_id"]) == [25]
    assert wh.read("segment_members", {"customer_id": []}).height == 0
    many = [24, *range(1_000, 41_000), 126]  # beyond SQLite's 32,766 bound variables
    assert sorted(wh.read("segment_members", {"customer_id": many})["customer_id"]) == [24, 126]
    texts = {"s", *(f"x{i}" for i in range(600))}
    assert wh.read("segment_members", {"segment_id": texts}).height == 6
    quote = "s' OR '1'='1"  # a value, never SQL
    assert wh.read("segment_members", {"segment_id": quote}).height == 0
    assert wh.read("segment_members", {"segment_id": [quote, "s"]}).height == 6
    empty = wh.read("segment_members", {"segment_id": "nobody"})
    assert empty.schema == schema_of(wh.table("segment_members")) and empty.height == 0


def test_an_empty_frame_empties_the_scope(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    wh.replace("segment_members", pl.DataFrame({"customer_id": [1, 2]}), {"segment_id": "s", "entered_on": DAY})
    written = wh.replace(
        "segment_members", pl.DataFrame(schema={"customer_id": pl.Int64}), {"segment_id": "s", "entered_on": DAY}
    )
    assert written == 0
    assert wh.count("segment_members") == 0


def test_reads_inside_a_transaction_see_its_own_writes_and_a_failure_undoes_all_of_it(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    scope = {"segment_id": "s", "entered_on": DAY}
    wh.replace("segment_members", pl.DataFrame({"customer_id": [1]}), scope)
    with pytest.raises(RuntimeError, match="after the writes"), wh.transaction() as conn:
        wh.replace("segment_members", pl.DataFrame({"customer_id": [2, 3]}), scope, conn=conn)
        inside = wh.read("segment_members", scope, conn=conn)
        assert sorted(inside["customer_id"]) == [2, 3]  # uncommitted, visible to its own transaction
        wh.replace(
            "global_control_group",
            pl.DataFrame({"customer_id": [9], "period_end": [DAY]}),
            {"period_start": DAY},
            conn=conn,
        )
        raise RuntimeError("after the writes")
    assert sorted(wh.read("segment_members")["customer_id"]) == [1]
    assert wh.count("global_control_group") == 0


def test_a_duplicate_key_is_the_same_integrity_error_as_before(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    frame = pl.DataFrame({"customer_id": [1, 1]})
    with pytest.raises(sa.exc.IntegrityError, match=r"(?i)unique|duplicate"):
        wh.replace("segment_members", frame, {"segment_id": "s", "entered_on": DAY})
    assert wh.count("segment_members") == 0


def test_a_missing_required_column_is_refused_in_one_line(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    with pytest.raises(
        ValueError, match=r"^warehouse table 'segment_members': frame lacks required columns \['customer_id'\]$"
    ):
        wh.replace("segment_members", pl.DataFrame({"other": [1]}), {"segment_id": "s", "entered_on": DAY})


def test_large_writes_go_in_several_chunks(warehouse_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from loyalty_assets.warehouse import bulk

    monkeypatch.setattr(bulk, "CHUNK_BYTES", 1)  # chunks of 1,000 (the minimum), 1,000 and 503 rows; on
    # SQLite five 200-row statements per full chunk, then two and a remainder statement of 103 rows
    wh = Warehouse(warehouse_url)
    bodies = [f"тело\t{i}\n" for i in range(2_503)]
    wh.replace("message_outbox", outbox(bodies, [None] * 2_503), SCOPE)
    back = wh.read("message_outbox", SCOPE).sort("customer_id")
    assert back["body"].to_list() == bodies
    assert back["batch_no"].to_list() == list(range(2_503))


# --- property: whatever a frame holds, reading it back gives the same frame ---------------------------

TEXT = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",),  # surrogates are not UTF-8
        blacklist_characters="\x00",  # PostgreSQL text cannot hold NUL
    )
    | st.sampled_from(["\t", "\n", "\r", "\\", '"', "'", ",", "\ufeff", "N", "Ж", "ё"]),
    max_size=40,
)
AMOUNT = st.decimals(
    min_value=Decimal("-999999999999.99"), max_value=Decimal("999999999999.99"), places=2, allow_nan=False
)
INSTANT = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)
ROW_COLUMNS = {
    "occasion": TEXT,
    "event_date": st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31)),
    "triggered_at": INSTANT,
    "variant": st.none() | TEXT,
    "is_control": st.booleans(),
    "check_id": st.none() | TEXT,
    "check_total": st.none() | AMOUNT,
    "event_amount": st.none() | AMOUNT,
    "ended_at": st.none() | INSTANT,
    "ended_reason": st.none() | TEXT,
    "ended_step": st.none() | TEXT,
}
ROW = st.fixed_dictionaries(ROW_COLUMNS)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, max_size=30))
def test_property_a_written_frame_reads_back_equal(warehouse_url: str, rows: list[dict[str, object]]) -> None:
    wh = Warehouse(warehouse_url)
    try:
        target = schema_of(wh.table("triggered_customers"))
        columns = {"customer_id": list(range(len(rows))), **{k: [r[k] for r in rows] for k in ROW_COLUMNS}}
        frame = pl.DataFrame([pl.Series(k, v, dtype=target[k]) for k, v in columns.items()])
        wh.replace("triggered_customers", frame, SCOPE)  # also replaces the previous example's rows
        expected = frame.with_columns(*(pl.lit(v).alias(k) for k, v in SCOPE.items())).select(list(target)).cast(target)
        outside = wh.read("triggered_customers", {"campaign_id": "c1"}).sort("customer_id")
        with wh.transaction() as conn:
            inside = wh.read("triggered_customers", SCOPE, conn=conn).sort("customer_id")
    finally:
        wh.engine.dispose()  # one example after another must not pile up server connections
    assert_frame_equal(outside, expected)
    assert_frame_equal(inside, expected)
