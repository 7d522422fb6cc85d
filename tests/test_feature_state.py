"""Incremental purchase state: state(D-1) + the day's checks gives exactly the full recomputation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty_assets.config.filters import Window
from loyalty_assets.sources.frames import AsOf, SourceFrames
from loyalty_assets.sources.schemas import SCHEMAS
from loyalty_assets.transforms.feature_state import (
    StaleState,
    advance,
    build_state,
    purchase_features,
)
from loyalty_assets.transforms.features import FeatureSpec, compute_features

TZ = "Europe/Moscow"
FIELDS = (
    "purchase_count",
    "purchase_total",
    "average_check",
    "average_items_per_check",
    "first_check_date",
    "last_check_date",
    "days_since_first_check",
    "days_since_last_check",
)
WINDOWS = (None, Window(last_days=1), Window(last_days=30), Window(last_days=90))
CATEGORIES = pl.DataFrame(
    {
        "category_id": ["food", "dairy", "milk", "fish"],
        "name": ["F", "D", "M", "Fi"],
        "parent_id": [None, "food", "dairy", None],
    },
    schema=SCHEMAS["categories"].columns,
)


def specs(windows=WINDOWS, restrictions=((None, None), ("dairy", None), (None, "p-fish"))) -> list[FeatureSpec]:
    out = [FeatureSpec(f, window=w, category=c, product=p) for f in FIELDS for w in windows for c, p in restrictions]
    out += [FeatureSpec("purchase_quantity", window=w, category="dairy") for w in windows]
    return out


def customers(rows: list[tuple[int, datetime, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "customer_id": cid,
                "registered_at": reg,
                "gender": None,
                "email_subscribed": True,
                "sms_subscribed": False,
                "push_subscribed": False,
                "email_valid": True,
                "timezone": tz,
                "labels": [],
            }
            for cid, reg, tz in rows
        ],
        schema={
            c: SCHEMAS["customers"].columns[c]
            for c in (
                "customer_id",
                "registered_at",
                "gender",
                "email_subscribed",
                "sms_subscribed",
                "push_subscribed",
                "email_valid",
                "timezone",
                "labels",
            )
        },
    ).with_columns(
        pl.lit(None, dtype=t).alias(c)
        for c, t in SCHEMAS["customers"].columns.items()
        if c
        not in (
            "customer_id",
            "registered_at",
            "gender",
            "email_subscribed",
            "sms_subscribed",
            "push_subscribed",
            "email_valid",
            "timezone",
            "labels",
        )
    )


def checks_frame(rows: list[tuple[str, int, datetime, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "check_id": i,
                "customer_id": c,
                "ts": ts,
                "store_id": None,
                "total": Decimal(t),
                "discount": None,
                "bonus_spent": None,
            }
            for i, c, ts, t in rows
        ],
        schema=SCHEMAS["checks"].columns,
    )


def items_frame(rows: list[tuple[str, int, str, str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "check_id": i,
                "line_no": n,
                "product_id": p,
                "category_id": c,
                "quantity": Decimal(q),
                "amount": Decimal(a),
            }
            for i, n, p, c, q, a in rows
        ],
        schema=SCHEMAS["check_items"].columns,
    )


def full(
    day: date, cust: pl.DataFrame, checks: pl.DataFrame, items: pl.DataFrame, wanted: list[FeatureSpec]
) -> pl.DataFrame:
    frames = SourceFrames.from_tables(
        {"customers": cust, "checks": checks, "check_items": items, "categories": CATEGORIES}
    )
    out = compute_features(frames, AsOf(day, TZ), wanted)
    return out.select("customer_id", *sorted({s.column for s in wanted}))


def incremental(state, cust: pl.DataFrame, day: date, wanted: list[FeatureSpec]) -> pl.DataFrame:
    visible = cust.filter(pl.col("registered_at") < AsOf(day, TZ).cutoff)
    got = purchase_features(state, visible.get_column("customer_id"), wanted)
    return got.select("customer_id", *sorted({s.column for s in wanted}))


def test_hand_computed_windows_categories_and_a_late_check() -> None:
    d1 = date(2024, 2, 28)
    cust = customers([(1, datetime(2024, 1, 1, tzinfo=UTC), None)])
    # check A on 28 Feb (milk, under dairy), check B on 29 Feb (fish); C is dated 28 Feb but arrives on 1 Mar
    checks = checks_frame(
        [
            ("A", 1, datetime(2024, 2, 28, 9, tzinfo=UTC), "100.00"),
            ("B", 1, datetime(2024, 2, 29, 9, tzinfo=UTC), "50.00"),
            ("C", 1, datetime(2024, 2, 28, 20, tzinfo=UTC), "30.00"),  # 23:00 Moscow, still 28 Feb
        ]
    )
    items = items_frame(
        [
            ("A", 1, "p1", "milk", "2", "60.00"),
            ("A", 2, "p2", "food", "1", "40.00"),
            ("B", 1, "p-fish", "fish", "1", "50.00"),
            ("C", 1, "p3", "dairy", "1", "30.00"),
        ]
    )
    wanted = [
        FeatureSpec("purchase_count"),
        FeatureSpec("purchase_count", window=Window(last_days=1)),
        FeatureSpec("purchase_total", category="dairy"),
        FeatureSpec("last_check_date", category="dairy"),
        FeatureSpec("average_check"),
    ]
    s1 = build_state(
        d1,
        checks.filter(pl.col("check_id") == "A"),
        items,
        customers=cust,
        categories=CATEGORIES,
        specs=wanted,
        program_tz=TZ,
    )
    s2 = advance(
        s1,
        d1 + timedelta(days=1),
        checks.filter(pl.col("check_id") == "B"),
        items,
        customers=cust,
        categories=CATEGORIES,
        specs=wanted,
        program_tz=TZ,
    )
    s3 = advance(
        s2,
        date(2024, 3, 1),
        checks.filter(pl.col("check_id") == "C"),
        items,
        customers=cust,
        categories=CATEGORIES,
        specs=wanted,
        program_tz=TZ,
    )
    row = purchase_features(s3, pl.Series([1]), wanted).row(0, named=True)
    assert row["purchase_count"] == 3
    assert row["purchase_count__last_1d"] == 0  # nothing on 1 March itself: C counts on its own day
    assert row["purchase_total__cat_dairy"] == Decimal("90.00")  # milk line of A + dairy line of C
    assert row["last_check_date__cat_dairy"] == date(2024, 2, 28)
    assert row["average_check"] == Decimal("60.00")  # 180 / 3
    assert purchase_features(s2, pl.Series([1]), wanted).row(0, named=True)["purchase_count__last_1d"] == 1
    with pytest.raises(StaleState):
        advance(
            s3,
            date(2024, 3, 2),
            checks.clear(),
            items,
            customers=cust,
            categories=CATEGORIES.head(2),
            specs=wanted,
            program_tz=TZ,
        )


ZONES = ("Europe/Moscow", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "Pacific/Apia", None)
#: Around 29 February 2024, New York's spring DST (10 March) and Lord Howe's half-hour change (7 April).
FIRST_DAYS = (date(2024, 2, 27), date(2024, 3, 8), date(2024, 4, 5), date(2025, 2, 27))


@st.composite
def histories(draw: st.DrawFn):
    start = draw(st.sampled_from(FIRST_DAYS))
    base = datetime.combine(start, datetime.min.time(), UTC)
    n_customers = draw(st.integers(1, 5))
    cust = [
        (cid, base + timedelta(hours=draw(st.integers(-2400, 80))), draw(st.sampled_from(ZONES)))
        for cid in range(1, n_customers + 1)
    ]
    checks, items = [], []
    for i in range(draw(st.integers(0, 25))):
        ts = base + timedelta(hours=draw(st.integers(-24 * 100, 24 * 5)), minutes=draw(st.integers(0, 59)))
        lag = draw(st.sampled_from([0, 0, 0, 5, 30, 80]))
        cid = draw(st.integers(1, n_customers))
        check_id = f"c{i}"
        lines = draw(
            st.lists(st.tuples(st.sampled_from(["food", "dairy", "milk", "fish"]), st.integers(1, 9)), max_size=3)
        )
        total = sum(a for _, a in lines) or 7
        checks.append((check_id, cid, ts, f"{total}.00", ts + timedelta(hours=lag)))
        for n, (cat, amount) in enumerate(lines, start=1):
            product = "p-fish" if cat == "fish" else f"p-{cat}"
            items.append((check_id, n, product, cat, str(amount % 3 + 1), f"{amount}.00"))
    return start, cust, checks, items


@settings(max_examples=40, deadline=None)
@given(history=histories())
def test_incremental_state_equals_full_recomputation(history) -> None:
    start, cust_rows, check_rows, item_rows = history
    cust = customers(cust_rows)
    wanted = specs()
    arrivals = {cid: loaded for cid, _, _, _, loaded in check_rows}
    checks = checks_frame([r[:4] for r in check_rows])
    items = items_frame(item_rows)

    def kept(day: date) -> pl.DataFrame:
        """Checks a run for `day` sees: arrived before the cutoff, of a customer registered by then."""
        cutoff = AsOf(day, TZ).cutoff
        known = cust.filter(pl.col("registered_at") < cutoff).get_column("customer_id")
        ids = [cid for cid, loaded in arrivals.items() if loaded < cutoff]
        return checks.filter(pl.col("check_id").is_in(ids) & pl.col("customer_id").is_in(known.implode()))

    def known(day: date) -> pl.DataFrame:
        return cust.filter(pl.col("registered_at") < AsOf(day, TZ).cutoff)

    state = None
    for offset in range(4):
        day = start + timedelta(days=offset)
        visible = kept(day)
        if state is None:
            state = build_state(
                day, visible, items, customers=known(day), categories=CATEGORIES, specs=wanted, program_tz=TZ
            )
        else:
            entering = visible.join(kept(day - timedelta(days=1)), on="check_id", how="anti")
            state = advance(
                state, day, entering, items, customers=known(day), categories=CATEGORIES, specs=wanted, program_tz=TZ
            )
        expected = full(day, cust, visible, items, wanted)
        got = incremental(state, cust, day, wanted)
        assert got.columns == expected.columns
        for column in expected.columns:
            assert got.get_column(column).to_list() == expected.get_column(column).to_list(), (day, column)
            assert got.schema[column] == expected.schema[column], column


# ---------------------------------------------------------------- bonuses, communications, visits

EVENT_SPECS = [
    FeatureSpec("bonus_balance"),
    FeatureSpec("bonuses_accrued"),
    FeatureSpec("bonuses_accrued", window=Window(last_days=30)),
    FeatureSpec("bonuses_redeemed", window=Window(last_days=1)),
    FeatureSpec("bonuses_expiring", within_days=7),
    FeatureSpec("bonuses_expiring", within_days=1),
    FeatureSpec("message_events", event="opened"),
    FeatureSpec("message_events", window=Window(last_days=30), channel="email", event="clicked"),
    FeatureSpec("message_events", window=Window(last_days=90), campaign="bday"),
    FeatureSpec("site_visits"),
    FeatureSpec("site_visits", window=Window(last_days=1), category="dairy"),
    FeatureSpec("site_visits", window=Window(last_days=90), url_contains="/sale"),
]


@st.composite
def event_histories(draw: st.DrawFn):
    start = draw(st.sampled_from(FIRST_DAYS))
    base = datetime.combine(start, datetime.min.time(), UTC)
    n_customers = draw(st.integers(1, 4))
    cust = [
        (cid, base + timedelta(hours=draw(st.integers(-2400, 80))), draw(st.sampled_from(ZONES)))
        for cid in range(1, n_customers + 1)
    ]

    def stamp() -> datetime:
        return base + timedelta(hours=draw(st.integers(-24 * 100, 24 * 5)), minutes=draw(st.integers(0, 59)))

    def lag() -> timedelta:
        return timedelta(hours=draw(st.sampled_from([0, 0, 5, 30, 80])))

    bonus, comms, visits = [], [], []
    for i in range(draw(st.integers(0, 15))):
        ts = stamp()
        kind = draw(st.sampled_from(["accrual", "accrual", "redemption", "expiry"]))
        expires = (
            ts + timedelta(days=draw(st.integers(0, 12)), hours=draw(st.integers(0, 23))) if kind == "accrual" else None
        )
        amount = Decimal(draw(st.integers(-50, 500))) / 10
        bonus.append(
            {
                "txn_id": f"t{i}",
                "customer_id": draw(st.integers(1, n_customers)),
                "ts": ts,
                "kind": kind,
                "amount": amount,
                "expires_at": expires,
                "legal_entity": None,
                "source": None,
                "_arrival": ts + lag(),
            }
        )
    for i in range(draw(st.integers(0, 15))):
        at = stamp()
        comms.append(
            {
                "message_id": f"m{i}",
                "customer_id": draw(st.integers(1, n_customers)),
                "campaign_id": draw(st.sampled_from(["bday", None, "x"])),
                "channel": draw(st.sampled_from(["email", "sms"])),
                "sent_at": at,
                "event": draw(st.sampled_from(["opened", "clicked", "sent"])),
                "event_at": at,
                "_arrival": at + lag(),
            }
        )
    for _ in range(draw(st.integers(0, 15))):
        at = stamp()
        visits.append(
            {
                "customer_id": draw(st.integers(1, n_customers)),
                "ts": at,
                "url": draw(st.sampled_from(["/sale/1", "/home", None])),
                "category_id": draw(st.sampled_from(["milk", "fish", None])),
                "_arrival": at + lag(),
            }
        )
    return start, cust, {"bonus_transactions": bonus, "communications": comms, "site_visits": visits}


@settings(max_examples=40, deadline=None)
@given(history=event_histories())
def test_incremental_event_state_equals_full_recomputation(history) -> None:
    from loyalty_assets.transforms.feature_state import (
        EVENT_FIELDS,
        advance_events,
        empty_event_state,
        event_features,
        ledger_rows,
    )

    start, cust_rows, tables = history
    cust = customers(cust_rows)
    frames = {
        t: pl.DataFrame(rows, schema={**SCHEMAS[t].columns, "_arrival": pl.Datetime("us", "UTC")})
        for t, rows in tables.items()
    }

    def kept(table: str, day: date) -> pl.DataFrame:
        cutoff = AsOf(day, TZ).cutoff
        known = cust.filter(pl.col("registered_at") < cutoff).get_column("customer_id")
        rows = frames[table].with_row_index("_row")
        return rows.filter((pl.col("_arrival") < cutoff) & pl.col("customer_id").is_in(known.implode()))

    def rows_for(table: str, frame: pl.DataFrame) -> pl.DataFrame:
        data = frame.drop("_row", "_arrival")
        return ledger_rows(data) if table == "bonus_transactions" else data

    family_of = {"bonus_transactions": "bonuses", "communications": "communications", "site_visits": "site_visits"}
    states = {t: empty_event_state(family_of[t], start - timedelta(days=1), EVENT_SPECS, CATEGORIES) for t in frames}
    for offset in range(4):
        day = start + timedelta(days=offset)
        known = cust.filter(pl.col("registered_at") < AsOf(day, TZ).cutoff)
        visible = {t: kept(t, day) for t in frames}
        for t in frames:
            entering = (
                visible[t] if offset == 0 else visible[t].join(kept(t, day - timedelta(days=1)), on="_row", how="anti")
            )
            states[t] = advance_events(
                states[t],
                day,
                rows_for(t, entering),
                customers=known,
                categories=CATEGORIES,
                specs=EVENT_SPECS,
                program_tz=TZ,
            )
        source = SourceFrames.from_tables(
            {"customers": cust, "categories": CATEGORIES, **{t: v.drop("_row", "_arrival") for t, v in visible.items()}}
        )
        expected = compute_features(source, AsOf(day, TZ), EVENT_SPECS)
        for t, state in states.items():
            wanted = [s for s in EVENT_SPECS if s.field in EVENT_FIELDS[family_of[t]]]
            got = event_features(state, known.get_column("customer_id"), wanted, CATEGORIES)
            for s in wanted:
                assert got.get_column(s.column).to_list() == expected.get_column(s.column).to_list(), (day, s.column)
                assert got.schema[s.column] == expected.schema[s.column], s.column
