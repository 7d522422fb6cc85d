"""Expiry triggers and bonus features read the ledger's lots (hand-computed; program zone Moscow).

Who is who:
- customer 1 (Moscow, UTC+3): L1 300 expiring 4 Jul 09:00 UTC (12:00 MSK), L2 100 expiring 20 Jul;
  redeems 120 on 30 Jun (FIFO: all from L1, which expires first) and 200 on 2 Jul (180 from L1,
  20 from L2). Warned on 1 Jul (4 Jul − 3 days) for 180, not 300; never warned for L1 again.
- customer 2 (Vladivostok, UTC+10): L3 50 expiring 30 Jun 13:30 UTC = 23:30 local; told at 23:30
  local (13:30 UTC), not at 10:00 local (00:00 UTC) while the bonuses could still be spent.
- customer 3 (Moscow): L4 70 expiring 30 Jun 20:30 UTC = 23:30 MSK; spent it all on 29 Jun:
  neither warned nor told.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from loyalty_assets.config.campaigns import Campaign, EventTrigger
from loyalty_assets.config.filters import parse_filter
from loyalty_assets.sources.frames import AsOf, SourceFrames
from loyalty_assets.transforms.features import compute_features, spec_for
from loyalty_assets.transforms.triggers import fire
from tests.engine_fixtures import VLAT, customers, money, rows_of, table, ts

PEOPLE = customers({"customer_id": 1}, {"customer_id": 2, "timezone": VLAT}, {"customer_id": 3})


def trigger(**fields: Any) -> EventTrigger:
    c = Campaign.model_validate(
        {"id": "t", "name": "t", "trigger": {"type": "event", **fields}, "steps": [{"type": "wait", "id": "w"}]}
    )
    assert isinstance(c.trigger, EventTrigger)
    return c.trigger


def txn(txn_id: str, cid: int, at: str, kind: str, amount: str, expires: str | None = None) -> dict[str, Any]:
    return {
        "txn_id": txn_id,
        "customer_id": cid,
        "ts": ts(at),
        "kind": kind,
        "amount": money(amount),
        "expires_at": ts(expires) if expires else None,
        "legal_entity": "X",
    }


def ledger(*extra: dict[str, Any]) -> SourceFrames:
    rows = [
        txn("L1", 1, "2025-04-05T09:00", "accrual", "300", "2025-07-04T09:00"),
        txn("L2", 1, "2025-05-01T09:00", "accrual", "100", "2025-07-20T09:00"),
        txn("R1", 1, "2025-06-30T08:00", "redemption", "120"),
        txn("R2", 1, "2025-07-02T08:00", "redemption", "200"),
        txn("L3", 2, "2025-05-31T13:30", "accrual", "50", "2025-06-30T13:30"),
        txn("L4", 3, "2025-05-31T20:30", "accrual", "70", "2025-06-30T20:30"),
        txn("R4", 3, "2025-06-29T08:00", "redemption", "70"),
        *extra,
    ]
    return SourceFrames.from_tables({"customers": PEOPLE, "bonus_transactions": table("bonus_transactions", rows)})


def test_warning_amount_shrinks_after_a_redemption() -> None:
    warned = fire(trigger(event="bonus_expiring", days_before=3), ledger(), AsOf(date(2025, 7, 1)))
    assert rows_of(warned, "customer_id", "occasion", "event_amount", "triggered_at") == [
        (1, "bonus_expiring:2025-07-04", money("180.00"), ts("2025-07-01T07:00"))  # 300 − 120; 10:00 MSK
    ]
    # seen from 29 June (before R1), the same lot would have been 300
    early = fire(trigger(event="bonus_expiring", days_before=5), ledger(), AsOf(date(2025, 6, 29)))
    assert rows_of(early, "customer_id", "event_amount") == [(1, money("300.00"))]


def test_no_warning_and_no_notice_for_lots_spent_in_full() -> None:
    warned = fire(trigger(event="bonus_expiring", days_before=1), ledger(), AsOf(date(2025, 6, 29)))
    assert rows_of(warned, "customer_id", "event_amount") == [(2, money("50.00"))]  # not customer 3
    # R2 on 2 July took L1's last 180: nothing left to expire on 4 July, no notice
    told = fire(trigger(event="bonus_expired"), ledger(), AsOf(date(2025, 7, 4)))
    assert told.is_empty()


def test_expiry_notice_at_23_30_local_in_utc_plus_10() -> None:
    told = fire(trigger(event="bonus_expired"), ledger(), AsOf(date(2025, 6, 30)))
    assert rows_of(told, "customer_id", "occasion", "event_date", "event_amount", "triggered_at") == [
        # 23:30 in Vladivostok = 13:30 UTC: at the moment of expiry, not 10:00 local (00:00 UTC)
        (2, "bonus_expired:2025-06-30", date(2025, 6, 30), money("50.00"), ts("2025-06-30T13:30")),
    ]
    # a delay counts from the moment; an explicit `at` is the next such local time at or after it
    later = fire(trigger(event="bonus_expired", delay={"minutes": 15}), ledger(), AsOf(date(2025, 6, 30)))
    assert rows_of(later, "triggered_at") == [(ts("2025-06-30T13:45"),)]
    morning = fire(trigger(event="bonus_expired", at="10:00"), ledger(), AsOf(date(2025, 6, 30)))
    assert rows_of(morning, "triggered_at") == [(ts("2025-07-01T00:00"),)]  # 10:00 local on 1 July


def test_moscow_notice_at_23_30_moscow_not_two_hours_early() -> None:
    spent_nothing = ledger(txn("L5", 3, "2025-06-01T20:30", "accrual", "10", "2025-06-30T20:30"))
    told = fire(trigger(event="bonus_expired"), spent_nothing, AsOf(date(2025, 6, 30)))
    # L4 was spent (R4 took it, L5 accrued later but expires at the same instant: FIFO by accrual)
    assert rows_of(told, "customer_id", "event_amount", "triggered_at") == [
        (2, money("50.00"), ts("2025-06-30T13:30")),
        (3, money("10.00"), ts("2025-06-30T20:30")),  # 23:30 MSK
    ]


def test_balance_and_expiring_features_are_net_of_consumption() -> None:
    conditions = [
        {"field": "bonus_balance", "op": "gt", "value": 0},
        {"field": "bonuses_expiring", "within_days": 3, "op": "gt", "value": 0},
        {"field": "bonuses_redeemed", "op": "gt", "value": 0},
    ]
    specs = [s for c in conditions if (s := spec_for(parse_filter(c))) is not None]  # type: ignore[arg-type]
    out = compute_features(ledger(), AsOf(date(2025, 7, 1)), specs)
    assert out.select("customer_id", "bonus_balance", "bonuses_expiring__within_3d", "bonuses_redeemed").rows() == [
        (1, money("280.00"), money("180.00"), money("120.00")),  # 300 + 100 − 120; L1's 180 on 4 July
        (2, money("0.00"), money("0.00"), money("0.00")),  # L3 expired on 30 June
        (3, money("0.00"), money("0.00"), money("70.00")),
    ]


def test_warning_finds_lots_whose_local_expiry_day_is_not_their_utc_day() -> None:
    """The target's local date in UTC+14 starts 14 h before its UTC date; in UTC−11 it ends 11 h
    after: lots expiring there are warned for that date, their UTC neighbours are not."""
    people = customers(
        {"customer_id": 7, "timezone": "Pacific/Kiritimati"},  # UTC+14
        {"customer_id": 8, "timezone": "Pacific/Pago_Pago"},  # UTC−11
        {"customer_id": 9, "timezone": "UTC"},
    )
    rows = [
        txn("K1", 7, "2025-06-01T00:00", "accrual", "11", "2025-06-27T10:30"),  # 28 Jun 00:30 local
        txn("K2", 7, "2025-06-01T00:00", "accrual", "12", "2025-06-28T10:30"),  # 29 Jun 00:30 local
        txn("P1", 8, "2025-06-01T00:00", "accrual", "21", "2025-06-29T10:30"),  # 28 Jun 23:30 local
        txn("P2", 8, "2025-06-01T00:00", "accrual", "22", "2025-06-28T10:30"),  # 27 Jun 23:30 local
        txn("U1", 9, "2025-06-01T00:00", "accrual", "31", "2025-06-29T00:00"),  # 29 Jun: not the target
    ]
    frames = SourceFrames.from_tables({"customers": people, "bonus_transactions": table("bonus_transactions", rows)})
    warned = fire(trigger(event="bonus_expiring", days_before=3), frames, AsOf(date(2025, 6, 25)))
    assert rows_of(warned.sort("customer_id"), "customer_id", "occasion", "event_amount") == [
        (7, "bonus_expiring:2025-06-28", money("11.00")),
        (8, "bonus_expiring:2025-06-28", money("21.00")),
    ]
