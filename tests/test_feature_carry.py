"""The daily run's carried features (`transforms.feature_carry`) equal the full recomputation.

`tests/test_feature_state.py` proves each family's state against `compute_features`; here the whole
wiring the daily asset uses: the families advanced together from D−1's carry (stored and read back
through `DayState`'s frames, as `loyalty_state` stores it), this project's own accruals entering
the bonus state the day they become visible, the non-carried features computed from D's frames,
the column order and types of the full path, and the rebuilds (first run, gap, changed windows).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from loyalty_assets.config.filters import Window
from loyalty_assets.sources.frames import AsOf, SourceFrames
from loyalty_assets.sources.schemas import SCHEMAS
from loyalty_assets.transforms.accruals import ACCRUALS_SCHEMA
from loyalty_assets.transforms.day_state import DayState
from loyalty_assets.transforms.feature_carry import DayRows, FeatureCarry, advance_carry, carried_features, carried_lots
from loyalty_assets.transforms.features import FeatureSpec, compute_features
from loyalty_assets.transforms.ledger import build_lots, ledger_entries
from tests.test_feature_state import CATEGORIES, FIRST_DAYS, ZONES, customers

TZ = "Europe/Moscow"
SPECS = [
    FeatureSpec("purchase_count"),
    FeatureSpec("purchase_total", window=Window(last_days=30)),
    FeatureSpec("last_check_date"),
    FeatureSpec("purchase_count", window=Window(last_days=1), category="dairy"),
    FeatureSpec("bonuses_accrued"),
    FeatureSpec("bonuses_accrued", window=Window(last_days=30)),
    FeatureSpec("bonuses_redeemed", window=Window(last_days=1)),
    FeatureSpec("message_events", event="opened"),
    FeatureSpec("site_visits", window=Window(last_days=90), category="dairy"),
    # not carried: computed from D's frames next to the carried ones
    FeatureSpec("favourite_chosen"),
    FeatureSpec("bonus_balance"),
]
ARRIVAL = "_arrival"


def _frame(table: str, rows: list[dict[str, object]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={**SCHEMAS[table].columns, ARRIVAL: pl.Datetime("us", "UTC")})


@st.composite
def histories(draw: st.DrawFn):
    start = draw(st.sampled_from(FIRST_DAYS))
    base = datetime.combine(start, datetime.min.time(), UTC)
    n = draw(st.integers(1, 4))
    cust = [
        (c, base + timedelta(hours=draw(st.integers(-2400, 80))), draw(st.sampled_from(ZONES))) for c in range(1, n + 1)
    ]

    def stamp() -> datetime:
        return base + timedelta(hours=draw(st.integers(-24 * 40, 24 * 4)), minutes=draw(st.integers(0, 59)))

    def lag() -> timedelta:
        return timedelta(hours=draw(st.sampled_from([0, 0, 5, 30, 80])))

    checks, items, bonus, comms, visits, own = [], [], [], [], [], []
    for i in range(draw(st.integers(0, 10))):
        ts = stamp()
        cat = draw(st.sampled_from(["milk", "fish"]))
        checks.append(
            {
                "check_id": f"c{i}",
                "customer_id": draw(st.integers(1, n)),
                "ts": ts,
                "total": Decimal(7),
                ARRIVAL: ts + lag(),
            }
        )
        items.append(
            {
                "check_id": f"c{i}",
                "line_no": 1,
                "product_id": f"p-{cat}",
                "category_id": cat,
                "quantity": Decimal(1),
                "amount": Decimal(7),
            }
        )
    for i in range(draw(st.integers(0, 8))):
        ts = stamp()
        kind = draw(st.sampled_from(["accrual", "redemption"]))
        bonus.append(
            {
                "txn_id": f"t{i}",
                "customer_id": draw(st.integers(1, n)),
                "ts": ts,
                "kind": kind,
                "amount": Decimal(draw(st.integers(1, 90))),
                "expires_at": ts + timedelta(days=draw(st.integers(0, 6)), hours=draw(st.integers(0, 23)))
                if kind == "accrual"
                else None,
                ARRIVAL: ts + lag(),
            }
        )
    for i in range(draw(st.integers(0, 6))):
        at = stamp()
        comms.append(
            {
                "message_id": f"m{i}",
                "customer_id": draw(st.integers(1, n)),
                "channel": "email",
                "sent_at": at,
                "event": draw(st.sampled_from(["opened", "sent"])),
                "event_at": at,
                ARRIVAL: at + lag(),
            }
        )
    for _ in range(draw(st.integers(0, 6))):
        at = stamp()
        visits.append(
            {"customer_id": draw(st.integers(1, n)), "ts": at, "url": "/x", "category_id": "milk", ARRIVAL: at + lag()}
        )
    for i in range(draw(st.integers(0, 6))):
        # written by the run of `written` (a day of the run or before), accrued then or up to 3 days later
        written = start + timedelta(days=draw(st.integers(-3, 3)))
        at = datetime.combine(written, datetime.min.time(), UTC) + timedelta(hours=draw(st.integers(0, 90)))
        own.append(
            {
                "accrual_id": f"a{i}",
                "campaign_id": "c",
                "step_id": "s",
                "customer_id": draw(st.integers(1, n)),
                "occasion": "o",
                "amount": Decimal("2.50"),
                "accrued_at": at,
                "expires_at": at + timedelta(days=9),
                "legal_entity": None,
                "reason": None,
                "partition_date": written,
            }
        )
    favourites = pl.DataFrame(
        [
            {
                "customer_id": 1,
                "period_start": start.replace(day=1),
                "period_end": start + timedelta(days=40),
                "category_id": "milk",
                "preference": None,
                "chosen_at": base - timedelta(days=3),
            }
        ],
        schema=SCHEMAS["favourite_categories"].columns,
    )
    tables = {
        "checks": _frame("checks", checks),
        "check_items": pl.DataFrame(items, schema=SCHEMAS["check_items"].columns),
        "bonus_transactions": _frame("bonus_transactions", bonus),
        "communications": _frame("communications", comms),
        "site_visits": _frame("site_visits", visits),
    }
    accruals = pl.DataFrame(own, schema={**ACCRUALS_SCHEMA, "partition_date": pl.Date()})
    return start, customers(cust), tables, favourites, accruals


class Store:
    """What the source store answers, simulated: a row is kept as of D when it arrived before D's
    cutoff and its customer registered by then; it entered on D when kept at D and not at D−1."""

    def __init__(self, cust: pl.DataFrame, tables: dict[str, pl.DataFrame]) -> None:
        self.cust, self.tables = cust, tables

    def customers(self, day: date) -> pl.DataFrame:
        return self.cust.filter(pl.col("registered_at") < AsOf(day, TZ).cutoff)

    def kept(self, table: str, day: date) -> pl.DataFrame:
        if table == "customers":
            return self.customers(day)
        if table == "check_items":
            return self.tables[table].join(self.kept("checks", day).select("check_id"), on="check_id", how="semi")
        known = self.customers(day).get_column("customer_id").implode()
        rows = self.tables[table]
        return rows.filter((pl.col(ARRIVAL) < AsOf(day, TZ).cutoff) & pl.col("customer_id").is_in(known)).drop(ARRIVAL)

    def entered(self, table: str, day: date) -> pl.DataFrame:
        before = self.kept(table, day - timedelta(days=1))
        return self.kept(table, day).join(before, on=before.columns, how="anti", nulls_equal=True)

    def rows(self, state: DayState, point: AsOf) -> DayRows:
        """What the daily asset hands `advance_carry` for `point` (own accruals from `state`)."""
        return DayRows(
            entered=lambda t: self.entered(t, point.date),
            history=lambda t: self.kept(t, point.date),
            history_of=lambda t, ids: self.kept(t, point.date).filter(pl.col("customer_id").is_in(ids.implode())),
            own_entered=state.own_accruals_entered(point),
            own_history=state.own_accruals(point),
        )


def _run(start: date, offsets, store: Store, favourites, accruals, specs_by_day=lambda _: SPECS):
    """Advance the carry day by day (round-tripped through `DayState` frames as `loyalty_state`
    is), and compare each day's carried features with `compute_features` on the full frames."""
    carry = FeatureCarry()
    rebuilds = []
    for offset in offsets:
        day = start + timedelta(days=offset)
        point = AsOf(day, TZ)
        state = DayState.from_frames({**DayState.empty().to_frames(), "accruals": accruals} | carry.to_frames())
        full = SourceFrames.from_tables(
            {
                "customers": store.customers(day),
                "categories": CATEGORIES,
                "favourite_categories": favourites,
                **{t: store.kept(t, day) for t in store.tables},
                "own_accruals": state.own_accruals(point),
            }
        )
        rows = store.rows(state, point)
        specs = specs_by_day(offset)
        carry, rebuilt = advance_carry(
            state.features, point, specs, rows, customers=full.customers, categories=CATEGORIES
        )
        rebuilds.append(sorted(rebuilt))
        got = carried_features(full, point, specs, carry)
        assert_frame_equal(got, compute_features(full, point, specs))
    return rebuilds


@settings(max_examples=30, deadline=None)
@given(history=histories())
def test_carried_features_equal_the_full_recomputation_day_after_day(history) -> None:
    start, cust, tables, favourites, accruals = history
    rebuilds = _run(start, range(4), Store(cust, tables), favourites, accruals)
    families = ["bonuses", "communications", "purchases", "site_visits"]
    assert rebuilds == [families, [], [], []]  # built once, then advanced


@settings(max_examples=15, deadline=None)
@given(history=histories())
def test_a_gap_or_a_widened_window_rebuilds_with_the_same_result(history) -> None:
    start, cust, tables, favourites, accruals = history
    wider = [
        FeatureSpec("purchase_total", window=Window(last_days=90)) if s.field == "purchase_total" else s for s in SPECS
    ]
    # day 1 skipped (a gap: everything is rebuilt on day 2); on day 3 the purchase window widens
    rebuilds = _run(start, [0, 2, 3], Store(cust, tables), favourites, accruals, lambda o: wider if o == 3 else SPECS)
    everything = ["bonuses", "communications", "purchases", "site_visits"]
    assert rebuilds == [everything, everything, ["purchases"]]


def test_own_accruals_count_the_day_they_become_visible() -> None:
    """Hand-made: an accrual written by the run of 10 June with `accrued_at` 10 June 12:00 UTC counts
    from 11 June (the run of D sees the accruals of earlier runs); one written on 10 June for
    13 June 09:00 UTC (noon in Moscow) counts from 13 June; never twice."""
    day0 = date(2025, 6, 10)
    cust = customers([(1, datetime(2025, 1, 1, tzinfo=UTC), None)])
    accruals = pl.DataFrame(
        [
            {
                "accrual_id": "now",
                "customer_id": 1,
                "amount": Decimal("10.00"),
                "partition_date": day0,
                "accrued_at": datetime(2025, 6, 10, 12, tzinfo=UTC),
                "expires_at": None,
            },
            {
                "accrual_id": "later",
                "customer_id": 1,
                "amount": Decimal("5.00"),
                "partition_date": day0,
                "accrued_at": datetime(2025, 6, 13, 9, tzinfo=UTC),
                "expires_at": None,
            },
        ],
        schema={**ACCRUALS_SCHEMA, "partition_date": pl.Date()},
        strict=False,
    )
    empty = {t: _frame(t, []) for t in ("checks", "bonus_transactions", "communications", "site_visits")}
    store = Store(cust, {**empty, "check_items": pl.DataFrame(schema=SCHEMAS["check_items"].columns)})
    spec = [FeatureSpec("bonuses_accrued")]
    carry, seen = FeatureCarry(), []
    for offset in range(5):
        point = AsOf(day0 + timedelta(days=offset), TZ)
        state = DayState.from_frames({**DayState.empty().to_frames(), "accruals": accruals} | carry.to_frames())
        rows = store.rows(state, point)
        carry, _ = advance_carry(state.features, point, spec, rows, customers=cust, categories=CATEGORIES)
        frames = SourceFrames.from_tables({"customers": cust, "categories": CATEGORIES})
        seen.append(carried_features(frames, point, spec, carry)["bonuses_accrued"].to_list())
    assert seen == [[Decimal("0.00")], [Decimal("10.00")], [Decimal("10.00")], [Decimal("15.00")], [Decimal("15.00")]]


def _what_rules_read(lots: pl.DataFrame, point: AsOf) -> pl.DataFrame:
    """The lots any rule can read on D: something remains, or something expired during D."""
    during = (pl.col("expires_at") >= point.start) & (pl.col("expires_at") < point.cutoff) & (pl.col("expired") > 0)
    return lots.filter((pl.col("remaining") != 0) | during).sort("customer_id", "lot_id")


@settings(max_examples=40, deadline=None)
@given(history=histories(), skip=st.sampled_from([None, 1, 2]))
def test_carried_lots_equal_a_build_from_the_whole_ledger(history, skip) -> None:
    """Late ledger rows, own accruals stamped before the day they become visible and customers
    registering mid-way rebuild just their customers; a skipped day rebuilds everything."""
    start, cust, tables, _, accruals = history
    store = Store(cust, tables)
    carry, rebuilt = FeatureCarry(), []
    for offset in range(4):
        if offset == skip:
            continue
        day = start + timedelta(days=offset)
        point = AsOf(day, TZ)
        state = DayState.from_frames({**DayState.empty().to_frames(), "accruals": accruals} | carry.to_frames())
        lots, why = carried_lots(state.features, point, store.rows(state, point))
        rebuilt.append(why is not None)
        full = build_lots(
            ledger_entries(store.kept("bonus_transactions", day), state.own_accruals(point)), point.cutoff
        )
        assert_frame_equal(_what_rules_read(lots, point), _what_rules_read(full, point))
        carry = FeatureCarry(lots=lots, lots_day=day)
    assert rebuilt == [True] + [offset - 1 == skip for offset in range(1, 4) if offset != skip]
