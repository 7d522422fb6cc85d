"""The bonus ledger: FIFO lots worked out by hand, edge cases, and incremental == full build.

Who is who (amounts in bonuses; instants UTC; zones only matter to features and triggers, see
tests/test_ledger_triggers.py):

- customer 1 (Vladivostok, UTC+10): a1 100 (LE-A, expires 1 Jul), a2 50 (LE-B, expires 10 Jun),
  own accrual c1 40 (LE-A, no expiry); r1 30 on 3 Jun consumes a2 first (earlier expiry, although
  accrued later); r2 90 on 12 Jun: a2 expired on 10 Jun with 20 left, so r2 takes 90 of a1;
  r3 60 on 20 Jun takes a1's last 10, then 40 of c1 (no expiry: last), and 10 is an overdraft.
- customer 2 (Moscow): r4 5 on 1 Jun, before any accrual: an overdraft of 5; a4 20 on 2 Jun.
- customer 3: two redemptions and one accrual at the same instant: the accrual is available, the
  redemptions apply in txn_id order (r5a 15, r5b 10 of a5 = 20: r5b gets 5 and overdraws 5).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from loyalty_assets.sources.frames import OWN_ACCRUALS_SCHEMA
from loyalty_assets.sources.schemas import SCHEMAS
from loyalty_assets.transforms.ledger import (
    advance_lots,
    balances,
    build_lots,
    empty_lots,
    expiry_mismatches,
    ledger_entries,
)


def ts(day: int, hour: int = 0, month: int = 6) -> datetime:
    return datetime(2025, month, day, hour, tzinfo=UTC)


def txns(rows: list[tuple]) -> pl.DataFrame:
    """(txn_id, customer_id, ts, kind, amount, expires_at, legal_entity) → bonus_transactions."""
    cols = ["txn_id", "customer_id", "ts", "kind", "amount", "expires_at", "legal_entity"]
    data = [dict(zip(cols, r, strict=True)) | {"source": None} for r in rows]
    return pl.DataFrame(data, schema=SCHEMAS["bonus_transactions"].columns)


def own(rows: list[tuple]) -> pl.DataFrame:
    """(accrual_id, customer_id, amount, accrued_at, expires_at, legal_entity) → own accruals."""
    schema = OWN_ACCRUALS_SCHEMA
    data = [
        {
            "accrual_id": r[0],
            "customer_id": r[1],
            "amount": r[2],
            "accrued_at": r[3],
            "expires_at": r[4],
            "legal_entity": r[5],
            "campaign_id": "c",
        }
        for r in rows
    ]
    return pl.DataFrame(data, schema=schema)


D = Decimal
HISTORY = txns(
    [
        ("a1", 1, ts(1), "accrual", D("100"), ts(1, month=7), "LE-A"),
        ("a2", 1, ts(2), "accrual", D("50"), ts(10), "LE-B"),
        ("r1", 1, ts(3), "redemption", D("30"), None, "LE-A"),
        ("e2", 1, ts(10), "expiry", D("35"), None, "LE-B"),  # the loyalty system says 35; FIFO says 20
        ("r2", 1, ts(12), "redemption", D("90"), None, None),
        ("r3", 1, ts(20), "redemption", D("60"), None, None),
        ("r4", 2, ts(1), "redemption", D("5"), None, None),
        ("a4", 2, ts(2), "accrual", D("20"), ts(2, month=8), "LE-A"),
        ("r5b", 3, ts(5, 12), "redemption", D("10"), None, None),
        ("a5", 3, ts(5, 12), "accrual", D("20"), None, "LE-A"),
        ("r5a", 3, ts(5, 12), "redemption", D("15"), None, None),
    ]
)
OWN = own([("camp:step:1:x", 1, D("40"), ts(4), None, "LE-A")])


def lots_table(rows: list[tuple]) -> pl.DataFrame:
    """Expected lots: (customer, lot_id, amount, remaining, redeemed, expired)."""
    return pl.DataFrame(
        rows, schema=["customer_id", "lot_id", "amount", "remaining", "redeemed", "expired"], orient="row"
    ).with_columns(pl.col(c).cast(pl.Decimal(14, 2)) for c in ("amount", "remaining", "redeemed", "expired"))


def test_fifo_remainders_worked_out_by_hand() -> None:
    lots = build_lots(ledger_entries(HISTORY, OWN), ts(30))
    expected = lots_table(
        [
            (1, "ledger:a2", "50", "0", "30", "20"),  # r1 took 30 (earliest expiry); 20 expired on 10 Jun
            (1, "ledger:a1", "100", "0", "100", "0"),  # r2 90 + r3 10
            (1, "accrual:camp:step:1:x", "40", "0", "40", "0"),  # no expiry: consumed last, by r3
            (1, "overdraft:r3", "0", "-10", "10", "0"),  # r3 wanted 60, 50 were live
            (2, "ledger:a4", "20", "20", "0", "0"),  # accrued after the overdraft: not paying it back
            (2, "overdraft:r4", "0", "-5", "5", "0"),  # a redemption before any accrual
            (3, "ledger:a5", "20", "0", "20", "0"),  # same instant: the accrual is available
            (3, "overdraft:r5b", "0", "-5", "5", "0"),  # r5a (15) before r5b (10): r5b gets the last 5
        ]
    )
    assert_frame_equal(lots.select(expected.columns), expected)
    # legal entities and sources stay on the lots
    a1 = lots.filter(pl.col("lot_id") == "ledger:a1").row(0, named=True)
    assert (a1["legal_entity"], a1["source"], a1["expires_at"]) == ("LE-A", "a1", ts(1, month=7))
    assert balances(lots).rows() == [(1, D("-10.00")), (2, D("15.00")), (3, D("-5.00"))]


def test_point_in_time_before_the_expiry() -> None:
    lots = build_lots(ledger_entries(HISTORY, OWN), ts(9))  # r2, r3, a2's expiry not reached yet
    one = lots.filter(pl.col("customer_id") == 1)
    assert dict(one.select("lot_id", "remaining").iter_rows()) == {
        "ledger:a2": D("20.00"),
        "ledger:a1": D("100.00"),
        "accrual:camp:step:1:x": D("40.00"),
    }
    assert balances(one).rows() == [(1, D("160.00"))]


def test_expiry_exactly_at_a_redemption_closes_first() -> None:
    rows = txns(
        [
            ("a", 7, ts(1), "accrual", D("10"), ts(5), None),
            ("b", 7, ts(1), "accrual", D("10"), None, None),
            ("r", 7, ts(5), "redemption", D("4"), None, None),  # at a's expiry instant: a is gone
        ]
    )
    lots = build_lots(ledger_entries(rows, own([])), ts(6))
    assert dict(lots.select("lot_id", "remaining").iter_rows()) == {"ledger:a": D("0.00"), "ledger:b": D("6.00")}
    assert lots.filter(pl.col("lot_id") == "ledger:a")["expired"].to_list() == [D("10.00")]


def test_source_expiry_that_disagrees_is_flagged_and_the_ledger_wins() -> None:
    entries = ledger_entries(HISTORY, OWN)
    lots = build_lots(entries, ts(30))
    mismatches = expiry_mismatches(lots, entries, ts(30))
    assert mismatches.rows() == [(1, ts(10), D("35.00"), D("20.00"))]
    # a day's check compares that day's instants only: the disagreement of day 10 is not day 11's
    assert expiry_mismatches(lots, entries, ts(30), since=ts(10)).rows() == mismatches.rows()
    assert expiry_mismatches(lots, entries, ts(30), since=ts(11)).is_empty()
    # the reported 35 is not subtracted: a2 expired with what FIFO left (20)
    assert lots.filter(pl.col("lot_id") == "ledger:a2")["expired"].to_list() == [D("20.00")]


def test_an_accrual_seen_twice_is_one_lot() -> None:
    entries = ledger_entries(HISTORY, OWN)
    once = build_lots(entries, ts(30))
    accruals = entries.filter(pl.col("kind") == "accrual")
    assert_frame_equal(advance_lots(once, accruals, ts(30)), once)


# --- incremental == full build --------------------------------------------------------------------

KINDS = st.sampled_from(["accrual", "accrual", "redemption", "expiry"])


@st.composite
def histories(draw: st.DrawFn) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Random ledgers: few customers and instants (so many share an instant), overdrafts, entities."""
    n = draw(st.integers(1, 25))
    rows = []
    for i in range(n):
        at = ts(1) + timedelta(hours=draw(st.integers(0, 20 * 24)) // 6 * 6)
        kind = draw(KINDS)
        expires = (
            at + timedelta(hours=draw(st.integers(0, 10 * 24)) // 6 * 6)
            if kind == "accrual" and draw(st.booleans())
            else None
        )
        rows.append(
            (
                f"t{i:02d}",
                draw(st.integers(1, 3)),
                at,
                kind,
                D(draw(st.integers(1, 5000))) / 100,
                expires,
                draw(st.sampled_from([None, "LE-A", "LE-B"])),
            )
        )
    own_rows = [
        (
            f"c:{j}",
            draw(st.integers(1, 3)),
            D(draw(st.integers(1, 5000))) / 100,
            ts(1) + timedelta(hours=draw(st.integers(0, 20 * 24))),
            None,
            "LE-X",
        )
        for j in range(draw(st.integers(0, 3)))
    ]
    return txns(rows), own(own_rows)


ZONES = st.sampled_from([0, 3, 10, -5])  # program zones: day boundaries at these UTC offsets


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), ZONES)
def test_day_by_day_equals_full_build(history: tuple[pl.DataFrame, pl.DataFrame], offset: int) -> None:
    entries = ledger_entries(*history)
    cutoffs = [ts(1) + timedelta(days=d, hours=-offset) for d in range(0, 33)]
    lots = empty_lots()
    previous = cutoffs[0] - timedelta(days=40)
    for i, cutoff in enumerate(cutoffs):
        day = entries.filter((pl.col("ts") >= previous) & (pl.col("ts") < cutoff))
        lots = advance_lots(lots, day, cutoff)
        previous = cutoff
        # on days along the way, not only the last: a day that leaves some customers untouched
        # merges their lots with the others' (the order must be the full build's too)
        if i % 4 == 0:
            assert_frame_equal(lots, build_lots(entries, cutoff))
    assert_frame_equal(lots, build_lots(entries, cutoffs[-1]))
    assert_frame_equal(lots, oracle(entries, cutoffs[-1]))


def oracle(entries: pl.DataFrame, until: datetime) -> pl.DataFrame:
    """A slow, obviously sequential FIFO ledger (test only): events in time order, one at a time."""
    lots: dict[tuple[int, str], dict] = {}
    rows = [r for r in entries.iter_rows(named=True) if r["ts"] < until and r["kind"] != "expiry"]
    rows.sort(key=lambda r: (r["ts"], r["kind"] != "accrual", r["entry_id"]))
    for r in rows:
        key = (r["customer_id"], f"{r['origin']}:{r['entry_id']}")
        if r["kind"] == "accrual":
            lots.setdefault(
                key,
                {
                    "customer_id": key[0],
                    "lot_id": key[1],
                    "source": r["entry_id"],
                    "amount": r["amount"],
                    "remaining": r["amount"],
                    "redeemed": D(0),
                    "expired": D(0),
                    "accrued_at": r["ts"],
                    "expires_at": r["expires_at"],
                    "legal_entity": r["legal_entity"],
                },
            )
            continue
        live = [
            lot
            for lot in lots.values()
            if lot["customer_id"] == r["customer_id"]
            and lot["remaining"] > 0
            and lot["accrued_at"] <= r["ts"]
            and (lot["expires_at"] is None or lot["expires_at"] > r["ts"])
        ]
        live.sort(
            key=lambda lot: (lot["expires_at"] is None, lot["expires_at"] or until, lot["accrued_at"], lot["lot_id"])
        )
        want = r["amount"]
        for lot in live:
            take = min(want, lot["remaining"])
            lot["remaining"] -= take
            lot["redeemed"] += take
            want -= take
        if want > 0:
            lots[(r["customer_id"], f"overdraft:{r['entry_id']}")] = {
                "customer_id": r["customer_id"],
                "lot_id": f"overdraft:{r['entry_id']}",
                "source": r["entry_id"],
                "amount": D(0),
                "remaining": -want,
                "redeemed": want,
                "expired": D(0),
                "accrued_at": r["ts"],
                "expires_at": None,
                "legal_entity": r["legal_entity"],
            }
    for lot in lots.values():
        if lot["expires_at"] is not None and lot["expires_at"] <= until and lot["remaining"] > 0:
            lot["expired"] += lot["remaining"]
            lot["remaining"] = D(0)
    frame = pl.DataFrame(list(lots.values()), schema=empty_lots().schema)
    return frame.sort(["customer_id", "expires_at", "accrued_at", "lot_id"], nulls_last=True)


# --- the carried ledger: only lots with something remaining -------------------------------------


@st.composite
def carried_histories(draw: st.DrawFn) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Source rows and own accruals (each with the date its run wrote it: the day it was accrued, or
    a few days before for one accrued later, or after for one backdated) that expire or get spent, so
    lots close along the way."""
    source, _ = draw(histories())
    rows = []
    for j in range(draw(st.integers(0, 6))):
        accrued = ts(1) + timedelta(hours=draw(st.integers(0, 20 * 24)))
        expires = accrued + timedelta(hours=draw(st.integers(1, 6 * 24))) if draw(st.booleans()) else None
        written = (accrued - timedelta(days=draw(st.integers(-2, 3)))).date()  # before, or backdated after
        rows.append((f"c:{j}", draw(st.integers(1, 3)), D(draw(st.integers(1, 3000))) / 100, accrued, expires, "LE-X"))
        rows[-1] = (*rows[-1], written)
    accruals = own([r[:6] for r in rows]).with_columns(
        pl.Series("partition_date", [r[6] for r in rows], dtype=pl.Date())
    )
    return source, accruals


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(carried_histories(), st.sampled_from(["UTC", "Europe/Moscow", "Asia/Vladivostok"]))
def test_carrying_only_open_lots_changes_no_lot(history: tuple[pl.DataFrame, pl.DataFrame], zone: str) -> None:
    """What the ledger asset does day by day — D−1's carried lots, D's source rows and the own
    accruals D−1's lots do not hold (`pending_accruals`) — gives, every day, the open lots of the
    same days run with every lot kept and every own accrual offered again (skipped by lot id once
    a lot); without backdated accruals, those of the full build too. No closed lot is carried."""
    from loyalty_assets.sources.frames import AsOf
    from loyalty_assets.transforms.ledger import carried, pending_accruals

    source, accruals = history
    backdated = accruals.filter(pl.col("partition_date") > pl.col("accrued_at").dt.date()).height > 0
    lots, every = empty_lots(), empty_lots()
    for d in range(0, 24):
        point = AsOf(date=(ts(1) + timedelta(days=d)).date(), program_tz=zone)
        before_cutoff = pl.col("accrued_at") < point.cutoff_literal
        written = accruals.filter((pl.col("partition_date") <= point.date) & before_cutoff)
        today = source.filter(
            ((pl.col("ts") >= point.start_literal) | (d == 0)) & (pl.col("ts") < point.cutoff_literal)
        )
        pending = pending_accruals(written, point).select(list(OWN_ACCRUALS_SCHEMA))
        lots = carried(advance_lots(lots, ledger_entries(today, pending), point.cutoff))
        mine = written.select(list(OWN_ACCRUALS_SCHEMA))
        every = advance_lots(every, ledger_entries(today, mine), point.cutoff)
        assert_frame_equal(lots, carried(every))
        assert not (lots["remaining"] == 0).any()
        if not backdated:
            full = build_lots(ledger_entries(source.filter(pl.col("ts") < point.cutoff_literal), mine), point.cutoff)
            assert_frame_equal(lots, carried(full))
