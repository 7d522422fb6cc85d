"""Event triggers (`fire` / `fire_event`): scenarios 6 and 7 of the contract (seed 003).

Run date D = 2025-06-10, program zone Moscow (UTC+3): events of D are those in
[9 June 21:00 UTC, 10 June 21:00 UTC). Customer 1 has no zone, 2 lives in Vladivostok (UTC+10),
3 in London (UTC+1 in June). Category tree: pets ─── aquarium_fish; food ─ dairy ─ milk.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import polars as pl

from loyalty_assets.config.campaigns import Campaign, EventTrigger
from loyalty_assets.sources.frames import AsOf, SourceFrames
from loyalty_assets.transforms.triggers import fire, fire_event
from tests.engine_fixtures import LONDON, VLAT, customers, frames, money, rows_of, table, ts

D = date(2025, 6, 10)
PEOPLE = customers({"customer_id": 1}, {"customer_id": 2, "timezone": VLAT}, {"customer_id": 3, "timezone": LONDON})


def trigger(**fields: Any) -> EventTrigger:
    """An event trigger from YAML-like fields, validated through a campaign (as the catalog does)."""
    c = Campaign.model_validate(
        {"id": "t", "name": "t", "trigger": {"type": "event", **fields}, "steps": [{"type": "wait", "id": "w"}]}
    )
    assert isinstance(c.trigger, EventTrigger)
    return c.trigger


def purchase_frames() -> SourceFrames:
    """Five checks around D (see each line)."""
    return frames(
        PEOPLE,
        checks=[
            # on D, aquarium_fish is a sub-category of pets → fires
            {
                "check_id": "c1",
                "customer_id": 1,
                "ts": ts("2025-06-10T09:00"),
                "total": money("500.00"),
                "items": [("guppy", "aquarium_fish", 2, "450.00"), ("milk1", "milk", 1, "50.00")],
            },
            # 9 June 23:30 MSK: D−1 → does not fire on D
            {
                "check_id": "c2",
                "customer_id": 2,
                "ts": ts("2025-06-09T20:30"),
                "total": money("900.00"),
                "items": [("guppy", "aquarium_fish", 1, "900.00")],
            },
            # 11 June 00:00 MSK: at the cutoff → after D
            {
                "check_id": "c3",
                "customer_id": 1,
                "ts": ts("2025-06-10T21:00"),
                "total": money("100.00"),
                "items": [("food", "pets", 1, "100.00")],
            },
            # on D but food only → no pets
            {
                "check_id": "c4",
                "customer_id": 3,
                "ts": ts("2025-06-10T20:59"),
                "total": money("499.99"),
                "items": [("cheese1", "cheese", 1, "499.99")],
            },
            # 10 June 00:00 MSK exactly: the first instant of D; `pets` itself → fires
            {
                "check_id": "c5",
                "customer_id": 2,
                "ts": ts("2025-06-09T21:00"),
                "total": money("120.00"),
                "items": [("feed", "pets", 1, "120.00")],
            },
        ],
    )


def test_purchase_in_a_sub_category_fires_with_delay() -> None:
    hits = fire(trigger(event="purchase", category="pets", delay={"hours": 2}), purchase_frames(), AsOf(D))
    assert rows_of(hits, "customer_id", "occasion", "event_date", "triggered_at", "check_id", "check_total") == [
        (1, "purchase:c1", D, ts("2025-06-10T11:00"), "c1", money("500.00")),  # 09:00 + 2 h
        (2, "purchase:c5", D, ts("2025-06-09T23:00"), "c5", money("120.00")),  # 21:00 + 2 h
    ]


def test_purchase_of_one_product() -> None:
    hits = fire(trigger(event="purchase", product="guppy"), purchase_frames(), AsOf(D))
    assert hits["occasion"].to_list() == ["purchase:c1"]  # c2 also has guppies but is D−1


def test_purchase_min_total_is_inclusive() -> None:
    hits = fire(trigger(event="purchase", min_total="499.99"), purchase_frames(), AsOf(D))
    # c1 500.00, c4 499.99 (equal: in), c5 120.00 (below); c2/c3 not on D
    assert hits["check_id"].to_list() == ["c1", "c4"]
    above = fire(trigger(event="purchase", min_total="500.00"), purchase_frames(), AsOf(D))
    assert above["check_id"].to_list() == ["c1"]


def test_purchase_after_the_cutoff_fires_on_the_next_day() -> None:
    hits = fire(trigger(event="purchase", category="pets"), purchase_frames(), AsOf(date(2025, 6, 11)))
    assert rows_of(hits, "customer_id", "occasion", "triggered_at") == [(1, "purchase:c3", ts("2025-06-10T21:00"))]


def test_registration_and_ledger_accrual_events() -> None:
    people = customers(
        {"customer_id": 1, "registered_at": ts("2025-06-10T08:15")},
        {"customer_id": 2, "registered_at": ts("2025-06-09T20:00"), "timezone": VLAT},  # 9 June 23:00 MSK
    )
    src = frames(
        people,
        bonus_transactions=[
            {"txn_id": "t1", "customer_id": 2, "ts": ts("2025-06-10T10:00"), "kind": "accrual", "amount": money(40)},
            {"txn_id": "t2", "customer_id": 1, "ts": ts("2025-06-10T11:00"), "kind": "redemption", "amount": money(5)},
        ],
    )
    reg = fire(trigger(event="registration"), src, AsOf(D))
    assert rows_of(reg, "customer_id", "occasion", "triggered_at") == [
        (1, "registration:2025-06-10", ts("2025-06-10T08:15"))
    ]
    acc = fire(trigger(event="bonus_accrual", delay={"minutes": 30}), src, AsOf(D))
    assert rows_of(acc, "customer_id", "occasion", "triggered_at", "event_amount") == [
        (2, "accrual:t1", ts("2025-06-10T10:30"), money("40.00"))
    ]


# --- bonus expiry (scenario 7) ------------------------------------------------------------------


def expiry_frames() -> SourceFrames:
    """Accruals of customers 1 (Moscow) and 2 (Vladivostok) around 13 June."""
    return SourceFrames.from_tables(
        {
            "customers": PEOPLE,
            "bonus_transactions": table(
                "bonus_transactions",
                [
                    # 13 June 08:00 MSK
                    {
                        "txn_id": "a",
                        "customer_id": 1,
                        "ts": ts("2025-05-14T05:00"),
                        "kind": "accrual",
                        "amount": money("100.00"),
                        "expires_at": ts("2025-06-13T05:00"),
                    },
                    # 14 June 00:00 MSK: another local day
                    {
                        "txn_id": "b",
                        "customer_id": 1,
                        "ts": ts("2025-05-15T21:00"),
                        "kind": "accrual",
                        "amount": money("30.00"),
                        "expires_at": ts("2025-06-13T21:00"),
                    },
                    # 13 June 01:00 in Vladivostok (12 June 18:00 in Moscow): her day is the 13th
                    {
                        "txn_id": "c",
                        "customer_id": 2,
                        "ts": ts("2025-05-13T15:00"),
                        "kind": "accrual",
                        "amount": money("70.00"),
                        "expires_at": ts("2025-06-12T15:00"),
                    },
                    # a redemption never expires
                    {
                        "txn_id": "r",
                        "customer_id": 1,
                        "ts": ts("2025-06-01T10:00"),
                        "kind": "redemption",
                        "amount": money("10.00"),
                        "expires_at": ts("2025-06-13T06:00"),
                    },
                ],
            ),
            # one of the project's own accruals: 13 June 23:00 MSK, same local day as `a`
            "own_accruals": table(
                "own_accruals",
                [
                    {
                        "customer_id": 1,
                        "amount": money("50.00"),
                        "accrued_at": ts("2025-05-14T20:00"),
                        "expires_at": ts("2025-06-13T20:00"),
                        "legal_entity": "X",
                        "campaign_id": "welcome",
                    }
                ],
            ),
        }
    )


def test_bonus_expiring_sums_what_remains_of_one_customers_lots_of_one_local_day() -> None:
    hits = fire(trigger(event="bonus_expiring", days_before=3), expiry_frames(), AsOf(D))
    # target day = 10 June + 3 = 13 June (customer-local)
    assert rows_of(hits, "customer_id", "occasion", "event_date", "event_amount", "triggered_at") == [
        # `a` 100.00 less the redemption `r` (10.00: `a` expires first) + own 50.00 = 140.00; 10:00 MSK = 07:00 UTC
        (1, "bonus_expiring:2025-06-13", date(2025, 6, 13), money("140.00"), ts("2025-06-10T07:00")),
        # 70.00; 10:00 VLAT on D = 00:00 UTC
        (2, "bonus_expiring:2025-06-13", date(2025, 6, 13), money("70.00"), ts("2025-06-10T00:00")),
    ]


def test_bonus_expired_at_the_moment_of_expiry_of_the_run_day() -> None:
    # run 12 June ([11 Jun 21:00, 12 Jun 21:00) UTC): `c` expired at 15:00 UTC (13 June 01:00 VLAT)
    june_12 = fire(trigger(event="bonus_expired"), expiry_frames(), AsOf(date(2025, 6, 12)))
    assert rows_of(june_12, "customer_id", "occasion", "event_date", "event_amount", "triggered_at") == [
        # the occasion is the run's day; the date she reads is hers (13 June 01:00 in Vladivostok)
        (2, "bonus_expired:2025-06-12", date(2025, 6, 13), money("70.00"), ts("2025-06-12T15:00"))
    ]
    # run 13 June: `a` (90 left, 05:00 UTC) and own (50, 20:00 UTC = 23:00 MSK): one notice at the later
    june_13 = fire(trigger(event="bonus_expired"), expiry_frames(), AsOf(date(2025, 6, 13)))
    assert rows_of(june_13, "customer_id", "occasion", "event_amount", "triggered_at") == [
        (1, "bonus_expired:2025-06-13", money("140.00"), ts("2025-06-13T20:00")),
    ]
    # an explicit `at` is the first such local time at or after the expiry: 12:00 MSK the next day
    noon = fire(trigger(event="bonus_expired", at="12:00"), expiry_frames(), AsOf(date(2025, 6, 13)))
    assert rows_of(noon, "customer_id", "triggered_at") == [(1, ts("2025-06-14T09:00"))]
    next_day = fire(trigger(event="bonus_expired"), expiry_frames(), AsOf(date(2025, 6, 14)))
    assert rows_of(next_day, "customer_id", "event_amount") == [(1, money("30.00"))]  # `b`: 14 June 00:00 MSK


# --- segment changes and message events -----------------------------------------------------------


def test_segment_entered_and_left_compare_today_with_yesterday() -> None:
    today = pl.DataFrame({"customer_id": [1, 2]})
    yesterday = pl.DataFrame({"customer_id": [2, 3]})
    src = frames(PEOPLE)
    entered = fire(
        trigger(event="segment_entered", segment="vip"), src, AsOf(D), segment_today=today, segment_yesterday=yesterday
    )
    left = fire(
        trigger(event="segment_left", segment="vip", delay={"hours": 1}),
        src,
        AsOf(D),
        segment_today=today,
        segment_yesterday=yesterday,
    )
    assert rows_of(entered, "customer_id", "occasion", "triggered_at") == [
        (1, "segment_entered:vip:2025-06-10", ts("2025-06-10T07:00"))  # 10:00 MSK
    ]
    assert rows_of(left, "customer_id", "occasion", "triggered_at") == [
        (3, "segment_left:vip:2025-06-10", ts("2025-06-10T10:00"))  # 10:00 BST = 09:00 UTC, + 1 h
    ]


def test_message_clicked_of_one_campaign() -> None:
    def event(mid: str, cid: int, campaign: str, kind: str, at: str) -> dict[str, Any]:
        return {
            "message_id": mid,
            "customer_id": cid,
            "campaign_id": campaign,
            "channel": "email",
            "sent_at": ts("2025-06-09T07:00"),
            "event": kind,
            "event_at": ts(at),
        }

    src = frames(
        PEOPLE,
        communications=[
            event("m1", 1, "welcome", "clicked", "2025-06-10T10:00"),  # fires
            event("m1", 1, "welcome", "opened", "2025-06-10T09:59"),  # an open, not a click
            event("m2", 2, "newsletter", "clicked", "2025-06-10T10:00"),  # another campaign
            event("m3", 3, "welcome", "clicked", "2025-06-09T20:59"),  # 9 June 23:59 MSK: D−1
        ],
    )
    hits = fire_event(trigger(event="message_clicked", campaign="welcome"), src, AsOf(D))
    assert rows_of(hits, "customer_id", "occasion", "triggered_at") == [
        (1, "message_clicked:m1", ts("2025-06-10T10:00"))
    ]
    opened = fire_event(trigger(event="message_opened"), src, AsOf(D))
    assert opened["occasion"].to_list() == ["message_opened:m1"]
