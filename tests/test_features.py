"""The shared features frame, checked column by column against hand-computed values.

Program zone is Europe/Moscow (UTC+3, no DST), so the run for D ends at D 21:00 UTC.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from loyalty_assets.config.filters import parse_filter
from loyalty_assets.sources.frames import AsOf, SourceFrames
from loyalty_assets.transforms.features import (
    AMOUNT,
    AVERAGE_AMOUNT,
    PROFILE_COLUMNS,
    QUANTITY_SUM,
    FeatureSpec,
    _Context,
    _first_instant,
    compute_features,
    required_features,
)
from loyalty_assets.transforms.segments import filter_customers
from tests.segment_fixtures import customers, d, frames, money, ts


def _specs(*conditions: dict) -> list[FeatureSpec]:
    return required_features(parse_filter(c) for c in conditions)


def _features(source, day: str, *conditions: dict) -> pl.DataFrame:
    return compute_features(source, AsOf(d(day)), _specs(*conditions))


# ---------------------------------------------------------------------------------------------- specs


def test_required_features_collapse_duplicates_and_name_columns_deterministically():
    a = parse_filter(
        {
            "all": [
                {
                    "field": "purchase_count",
                    "op": "ge",
                    "value": 2,
                    "window": {"last_days": 30},
                    "category": "dairy",
                },
                {"field": "bought", "category": "dairy", "window": {"last_days": 30}, "op": "ge", "value": 1},
                {"field": "gender", "op": "eq", "value": "F"},  # profile: always present, no spec
            ]
        }
    )
    b = parse_filter(
        {"field": "purchase_count", "op": "gt", "value": 5, "window": {"last_days": 30}, "category": "dairy"}
    )
    c = parse_filter({"field": "bonuses_expiring", "within_days": 7, "op": "gt", "value": 0})
    specs = required_features([a, b, c])
    assert [s.column for s in specs] == ["bonuses_expiring__within_7d", "purchase_count__last_30d__cat_dairy"]
    assert len({*specs, *required_features([b])}) == 2  # hashable, equal across segments


def test_column_names_of_every_family():
    specs = _specs(
        {"field": "bought", "product": "milk1", "measure": "amount", "op": "gt", "value": 1},
        {
            "field": "purchase_count",
            "window": {"from": "2025-01-01", "to": "2025-03-31"},
            "op": "gt",
            "value": 1,
        },
        {"field": "attribute", "name": "loyalty_tier", "op": "eq", "value": "gold"},
        {"field": "favourite_chosen", "period": {"month": "2025-06"}, "op": "eq", "value": True},
        {
            "field": "message_events",
            "event": "opened",
            "channel": "email",
            "campaign": "spring",
            "window": {"last_days": 7},
            "op": "ge",
            "value": 1,
        },
        {"field": "site_visits", "category": "pets", "url_contains": "/fish", "op": "ge", "value": 1},
        {"field": "customer.card_type", "op": "eq", "value": "plastic"},
    )
    assert [s.column for s in specs] == [
        "attribute__loyalty_tier",
        "customer__card_type",
        "favourite_chosen__month_2025_06",
        "message_events__last_7d__event_opened__ch_email__camp_spring",
        "purchase_count__from_2025_01_01_to_2025_03_31",
        "purchase_total__prod_milk1",
        "site_visits__cat_pets__url_/fish",
    ]


# -------------------------------------------------------------------------------------------- profile


def test_profile_columns_ages_local_registration_and_visibility():
    src = frames(
        customers(
            # birthday today: 35 full years; registered 23:30 Moscow on 2024-06-15 -> exactly 365 days
            {
                "customer_id": 1,
                "birth_date": d("1990-06-15"),
                "registered_at": ts("2024-06-15T20:30"),
                "email": "anna@example.com",
                "phone": " ",
                "push_token": "tok",
                "labels": ["vip"],
            },
            # birthday tomorrow: still 34; Vladivostok (UTC+10): registered locally on 2024-06-16
            {
                "customer_id": 2,
                "birth_date": d("1990-06-16"),
                "registered_at": ts("2024-06-15T21:30"),
                "timezone": "Asia/Vladivostok",
                "phone": "+79161234512",
            },
            # 29 February; registered one minute before the run's cutoff (21:00 UTC) -> visible, 0 days
            {"customer_id": 3, "birth_date": d("2000-02-29"), "registered_at": ts("2025-06-15T20:59")},
            # registered at the cutoff itself -> not a customer yet on D
            {"customer_id": 4, "registered_at": ts("2025-06-15T21:00")},
            # an unknown zone falls back to the program zone: 21:30 UTC is 2025-01-01 in Moscow
            {"customer_id": 5, "registered_at": ts("2024-12-31T21:30"), "timezone": "Mars/Olympus"},
        )
    )
    out = compute_features(src, AsOf(d("2025-06-15")), [])
    assert out.columns == list(PROFILE_COLUMNS)
    expected = pl.DataFrame(
        {
            "customer_id": [1, 2, 3, 5],
            "age": [35, 34, 25, None],
            "birth_month": [6, 6, 2, None],
            "birth_day": [15, 16, 29, None],
            "registration_date": [d("2024-06-15"), d("2024-06-16"), d("2025-06-15"), d("2025-01-01")],
            "days_since_registration": [365, 364, 0, 165],
            "has_email": [True, False, False, False],
            "has_phone": [False, True, False, False],
            "has_push_token": [True, False, False, False],
            "labels": [["vip"], None, None, None],
        },
        schema_overrides={"labels": pl.List(pl.String)},
    )
    assert_frame_equal(out.select(expected.columns), expected)


# ------------------------------------------------------------------------------------------ purchases

PURCHASE_CHECKS = [
    # customer 1 (program zone, Moscow)
    {
        "check_id": "c1",
        "customer_id": 1,
        "ts": ts("2025-04-10T10:00"),
        "total": money("300.00"),
        "items": [("milk1", "milk", 2, "200.00"), ("bread", "bakery", 1, "100.00")],
    },
    {
        "check_id": "c2",
        "customer_id": 1,
        "ts": ts("2025-03-20T10:00"),
        "total": money("150.50"),
        "items": [("cheddar", "cheese", 1, "150.50")],
    },
    {
        "check_id": "c3",
        "customer_id": 1,
        "ts": ts("2025-01-05T10:00"),
        "total": money("99.99"),
        "items": [("guppy", "aquarium_fish", 1, "99.99")],
    },
    # after the cutoff of 2025-04-10 (21:00 UTC): invisible to the run
    {
        "check_id": "c4",
        "customer_id": 1,
        "ts": ts("2025-04-10T21:30"),
        "total": money("1000.00"),
        "items": [("milk1", "milk", 1, "1000.00")],
    },
    # the same instant, 2025-03-31 22:30 UTC: 31 March in UTC, 1 April in Moscow
    {
        "check_id": "c5",
        "customer_id": 3,
        "ts": ts("2025-03-31T22:30"),
        "total": money("50.00"),
        "items": [("milk2", "milk", 1, "50.00")],
    },
    {"check_id": "c6", "customer_id": 4, "ts": ts("2025-03-31T22:30"), "total": money("50.00")},  # no lines
]


@pytest.fixture
def purchase_frames():
    return frames(
        customers(
            {"customer_id": 1},
            {"customer_id": 2},  # never bought anything
            {"customer_id": 3, "timezone": "UTC"},
            {"customer_id": 4, "timezone": "Europe/Moscow"},
        ),
        checks=PURCHASE_CHECKS,
    )


def test_purchase_features_windows_categories_and_empty_customers(purchase_frames):
    last30 = {"last_days": 30}  # 2025-03-12 .. 2025-04-10
    out = _features(
        purchase_frames,
        "2025-04-10",
        {"field": "purchase_count", "op": "ge", "value": 0},
        {"field": "purchase_count", "op": "ge", "value": 0, "window": last30},
        {
            "field": "purchase_count",
            "op": "ge",
            "value": 0,
            "window": {"from": "2025-03-01", "to": "2025-03-31"},
        },
        {"field": "bought", "category": "dairy", "op": "ge", "value": 0},  # milk and cheese are dairy
        {"field": "bought", "category": "food", "op": "ge", "value": 0},  # ... and food
        {"field": "bought", "product": "milk1", "op": "ge", "value": 0},
        {"field": "purchase_total", "op": "ge", "value": 0},
        {"field": "bought", "category": "dairy", "measure": "amount", "op": "ge", "value": 0},
        {"field": "bought", "category": "dairy", "measure": "quantity", "op": "ge", "value": 0},
    )
    expected = pl.DataFrame(
        {
            "customer_id": [1, 2, 3, 4],
            "purchase_count": [3, 0, 1, 1],
            "purchase_count__last_30d": [2, 0, 1, 1],
            "purchase_count__from_2025_03_01_to_2025_03_31": [1, 0, 1, 0],  # c6 is 1 April locally
            "purchase_count__cat_dairy": [2, 0, 1, 0],
            "purchase_count__cat_food": [2, 0, 1, 0],
            "purchase_count__prod_milk1": [1, 0, 0, 0],
            "purchase_total": [money("550.49"), money("0"), money("50.00"), money("50.00")],
            "purchase_total__cat_dairy": [money("350.50"), money("0"), money("50.00"), money("0")],
            "purchase_quantity__cat_dairy": [money("3"), money("0"), money("1"), money("0")],
        },
        schema_overrides={
            "purchase_total": AMOUNT,
            "purchase_total__cat_dairy": AMOUNT,
            "purchase_quantity__cat_dairy": QUANTITY_SUM,
        },
    )
    assert_frame_equal(out.select(expected.columns), expected)


def test_purchase_dates_averages_and_time_zones(purchase_frames):
    out = _features(
        purchase_frames,
        "2025-04-10",
        *(
            {"field": f, "op": "is_set"}
            for f in (
                "average_check",
                "average_items_per_check",
                "first_check_date",
                "last_check_date",
                "days_since_first_check",
                "days_since_last_check",
            )
        ),
    )
    expected = pl.DataFrame(
        {
            "customer_id": [1, 2, 3, 4],
            # 550.49 / 3 = 183.49666…: kept to 18 places (the 18th rounded), not rounded to 183.50
            "average_check": [money("183.496666666666666667"), None, money("50"), money("50")],
            "average_items_per_check": [4 / 3, None, 1.0, 0.0],  # lines per check; c6 has none
            "first_check_date": [d("2025-01-05"), None, d("2025-03-31"), d("2025-04-01")],
            "last_check_date": [d("2025-04-10"), None, d("2025-03-31"), d("2025-04-01")],  # c4 is too late
            "days_since_first_check": [95, None, 10, 9],
            "days_since_last_check": [0, None, 10, 9],
        },
        schema_overrides={"average_check": AVERAGE_AMOUNT},
    )
    assert_frame_equal(out.select(expected.columns), expected)


def test_average_check_compares_exactly_not_rounded_to_cents():
    """Issue 7 item 12 (found on CDNOW): a mean just above 30 is > 30, one just below is not ≥ 30.

    Rounded half-even to cents first, 30.0033 and 30.0025 became 30.00 (not > 30) and 29.995 and
    29.9967 became 30.00 (≥ 30).
    """
    checks = {
        1: ["30.01", "30.00", "30.00"],  # 90.01 / 3 = 30.00333…
        2: ["30.01", "30.00", "30.00", "30.00"],  # 120.01 / 4 = 30.0025
        3: ["29.99", "30.00"],  # 59.99 / 2 = 29.995
        4: ["29.99", "30.00", "30.00"],  # 89.99 / 3 = 29.99666…
        5: ["30.00", "30.00"],  # exactly 30
    }
    rows = [
        {"check_id": f"c{cid}_{i}", "customer_id": cid, "ts": ts(f"2025-04-0{i + 1}T12:00"), "total": money(t)}
        for cid, totals in checks.items()
        for i, t in enumerate(totals)
    ]
    source = frames(customers(*({"customer_id": c} for c in checks)), checks=rows)
    above = {"field": "average_check", "op": "gt", "value": 30}
    at_least = {"field": "average_check", "op": "ge", "value": 30}
    features = _features(source, "2025-04-10", above, at_least)
    assert sorted(filter_customers(parse_filter(above), features)["customer_id"]) == [1, 2]
    assert sorted(filter_customers(parse_filter(at_least), features)["customer_id"]) == [1, 2, 5]
    equal = parse_filter({"field": "average_check", "op": "eq", "value": "30.0025"})
    assert filter_customers(equal, features)["customer_id"].to_list() == [2]


def test_point_in_time_earlier_run_ignores_later_checks(purchase_frames):
    out = _features(
        purchase_frames,
        "2025-03-25",
        {"field": "last_check_date", "op": "is_set"},
        {"field": "purchase_count", "op": "ge", "value": 0},
    )
    assert out.select("customer_id", "last_check_date", "purchase_count").rows() == [
        (1, d("2025-03-20"), 2),
        (2, None, 0),
        (3, None, 0),
        (4, None, 0),
    ]


# -------------------------------------------------------------------------------------------- bonuses


def test_bonus_balance_accrued_redeemed_expiring():
    src = frames(
        customers({"customer_id": 1}, {"customer_id": 2}, {"customer_id": 3}),
        bonus_transactions=[
            {
                "txn_id": "t1",
                "customer_id": 1,
                "ts": ts("2025-01-10T10:00"),
                "kind": "accrual",
                "amount": money("1000.00"),
                "expires_at": ts("2025-04-15T10:00"),
            },
            {
                "txn_id": "t2",
                "customer_id": 1,
                "ts": ts("2025-04-01T10:00"),
                "kind": "accrual",
                "amount": money("200.00"),
                "expires_at": ts("2025-07-01T10:00"),
            },
            {
                "txn_id": "t3",
                "customer_id": 1,
                "ts": ts("2025-03-01T10:00"),
                "kind": "redemption",
                "amount": money("300.00"),
            },
            {
                "txn_id": "t4",
                "customer_id": 1,
                "ts": ts("2025-02-01T10:00"),
                "kind": "expiry",
                "amount": money("50.00"),
            },
            {
                "txn_id": "t5",
                "customer_id": 1,
                "ts": ts("2025-04-11T10:00"),
                "kind": "accrual",
                "amount": money("999.00"),
            },  # after D
            # customer 3's ledger stores the redemption as a negative amount
            {
                "txn_id": "t6",
                "customer_id": 3,
                "ts": ts("2025-01-10T10:00"),
                "kind": "accrual",
                "amount": money("100.00"),
            },
            {
                "txn_id": "t7",
                "customer_id": 3,
                "ts": ts("2025-01-11T10:00"),
                "kind": "redemption",
                "amount": money("-20.00"),
            },
            # customer 2: expiries at the edges of (D, D+7]: on D itself (out), late on D+7 locally (in)
            {
                "txn_id": "t8",
                "customer_id": 2,
                "ts": ts("2025-01-10T10:00"),
                "kind": "accrual",
                "amount": money("70.00"),
                "expires_at": ts("2025-04-10T12:00"),
            },
            {
                "txn_id": "t9",
                "customer_id": 2,
                "ts": ts("2025-01-10T10:00"),
                "kind": "accrual",
                "amount": money("30.00"),
                "expires_at": ts("2025-04-17T20:00"),  # 23:00 on 17 April in Moscow
            },
        ],
        own_accruals=[
            {
                "customer_id": 1,
                "amount": money("500.00"),
                "accrued_at": ts("2025-04-05T07:00"),
                "expires_at": ts("2025-04-20T07:00"),
                "legal_entity": "X",
                "campaign_id": "birthday",
            },
        ],
    )
    out = _features(
        src,
        "2025-04-10",
        {"field": "bonus_balance", "op": "gt", "value": 0},
        {"field": "bonuses_accrued", "op": "gt", "value": 0},
        {"field": "bonuses_accrued", "op": "gt", "value": 0, "window": {"last_days": 30}},
        {"field": "bonuses_redeemed", "op": "gt", "value": 0},
        {"field": "bonuses_expiring", "within_days": 7, "op": "gt", "value": 0},
        {"field": "bonuses_expiring", "within_days": 10, "op": "gt", "value": 0},
    )
    expected = pl.DataFrame(
        {
            "customer_id": [1, 2, 3],
            # from the lots (FIFO): 1: t3 consumed 300 of t1 (the only live lot); the reported expiry t4
            # matches no lot and is not subtracted: 700 + 200 + 500; 2: t8 (70) expired at 12:00 on D
            "bonus_balance": [money("1400.00"), money("30.00"), money("80.00")],
            "bonuses_accrued": [money("1700.00"), money("100.00"), money("100.00")],
            "bonuses_accrued__last_30d": [money("700.00"), money("0"), money("0")],  # 200 + own 500
            "bonuses_redeemed": [money("300.00"), money("0"), money("20.00")],
            # net of the redemption: 700 of t1 are left on 15 April; + own 500 on 20 April
            "bonuses_expiring__within_7d": [money("700.00"), money("30.00"), money("0")],
            "bonuses_expiring__within_10d": [money("1200.00"), money("30.00"), money("0")],
        },
        schema={
            "customer_id": pl.Int64,
            **dict.fromkeys(
                [
                    "bonus_balance",
                    "bonuses_accrued",
                    "bonuses_accrued__last_30d",
                    "bonuses_redeemed",
                    "bonuses_expiring__within_7d",
                    "bonuses_expiring__within_10d",
                ],
                AMOUNT,
            ),
        },
    )
    assert_frame_equal(out.select(expected.columns), expected)


# ----------------------------------------------------------------------------------------- attributes


def test_attribute_value_valid_at_the_run_date():
    src = frames(
        customers({"customer_id": 1}, {"customer_id": 2}, {"customer_id": 3}, {"customer_id": 4}),
        customer_attributes=[
            {
                "customer_id": 1,
                "name": "loyalty_tier",
                "value": "silver",
                "valid_from": ts("2025-01-01T00:00"),
                "valid_to": ts("2025-03-01T00:00"),
            },
            {"customer_id": 1, "name": "loyalty_tier", "value": "gold", "valid_from": ts("2025-03-01T00:00")},
            {"customer_id": 1, "name": "kids", "value": "2", "valid_from": ts("2024-01-01T00:00")},
            {
                "customer_id": 2,
                "name": "loyalty_tier",
                "value": '"platinum"',
                "valid_from": ts("2025-01-01T00:00"),
            },
            {
                "customer_id": 2,
                "name": "loyalty_tier",
                "value": "bronze",
                "valid_from": ts("2025-05-01T00:00"),
            },
            # ended before the cutoff (2025-04-10 21:00 UTC)
            {
                "customer_id": 3,
                "name": "loyalty_tier",
                "value": "gold",
                "valid_from": ts("2025-01-01T00:00"),
                "valid_to": ts("2025-04-10T20:00"),
            },
            # ends exactly at the cutoff: still valid on D
            {
                "customer_id": 4,
                "name": "loyalty_tier",
                "value": "silver",
                "valid_from": ts("2025-01-01T00:00"),
                "valid_to": ts("2025-04-10T21:00"),
            },
        ],
    )
    specs = [{"field": "attribute", "name": n, "op": "is_set"} for n in ("loyalty_tier", "kids")]
    now = _features(src, "2025-04-10", *specs)
    assert now.select("customer_id", "attribute__loyalty_tier", "attribute__kids").rows() == [
        (1, "gold", "2"),
        (2, "platinum", None),
        (3, None, None),
        (4, "silver", None),
    ]
    before = _features(src, "2025-02-15", *specs)
    assert before.get_column("attribute__loyalty_tier").to_list() == ["silver", "platinum", "gold", "silver"]


# ------------------------------------------------------------------------------------------ favourites


def test_favourite_categories_of_the_period_containing_d():
    june = {"period_start": d("2025-06-01"), "period_end": d("2025-06-30")}
    may = {"period_start": d("2025-05-01"), "period_end": d("2025-05-31")}
    src = frames(
        customers({"customer_id": 1}, {"customer_id": 2}, {"customer_id": 3}),
        favourite_categories=[
            # chosen 4 June locally (21:30 UTC on the 3rd is 00:30 Moscow)
            {"customer_id": 1, **june, "category_id": "dairy", "chosen_at": ts("2025-06-03T21:30")},
            {"customer_id": 1, **june, "category_id": "bakery", "chosen_at": ts("2025-06-02T10:00")},
            {"customer_id": 2, **may, "category_id": "pets", "chosen_at": ts("2025-05-02T10:00")},
            {
                "customer_id": 3,
                **june,
                "category_id": "dairy",
                "chosen_at": ts("2025-06-27T10:00"),
            },  # after D
        ],
    )
    out = _features(
        src,
        "2025-06-26",
        {"field": "favourite_chosen", "op": "eq", "value": True},
        {"field": "favourite_categories", "op": "is_empty"},
        {"field": "days_since_favourite_choice", "op": "is_set"},
        {"field": "favourite_chosen", "op": "eq", "value": True, "period": {"month": "2025-05"}},
    )
    expected = pl.DataFrame(
        {
            "customer_id": [1, 2, 3],
            "favourite_chosen": [True, False, False],
            "favourite_categories": [["bakery", "dairy"], [], None],
            "days_since_favourite_choice": [22, None, None],
            "favourite_chosen__month_2025_05": [False, True, False],
        },
        schema_overrides={"favourite_categories": pl.List(pl.String)},
    )
    assert_frame_equal(out.select(expected.columns), expected)


# ---------------------------------------------------------------------------- communications and site


def test_message_events_and_site_visits_counts():
    src = frames(
        customers({"customer_id": 1}, {"customer_id": 2}),
        communications=[
            {
                "message_id": "m1",
                "customer_id": 1,
                "campaign_id": "spring",
                "channel": "email",
                "sent_at": ts("2025-04-01T08:00"),
                "event": "opened",
                "event_at": ts("2025-04-01T09:00"),
            },
            {
                "message_id": "m2",
                "customer_id": 1,
                "campaign_id": "winter",
                "channel": "email",
                "sent_at": ts("2025-02-01T08:00"),
                "event": "opened",
                "event_at": ts("2025-02-01T09:00"),
            },
            {
                "message_id": "m3",
                "customer_id": 1,
                "campaign_id": None,
                "channel": "sms",
                "sent_at": ts("2025-04-05T08:00"),
                "event": "delivered",
                "event_at": ts("2025-04-05T08:01"),
            },
            {
                "message_id": "m4",
                "customer_id": 1,
                "campaign_id": "spring",
                "channel": "email",
                "sent_at": ts("2025-04-01T08:00"),
                "event": "clicked",
                "event_at": ts("2025-04-11T09:00"),
            },  # after D
        ],
        site_visits=[
            {
                "customer_id": 1,
                "ts": ts("2025-04-09T12:00"),
                "url": "/catalog/fish/guppy",
                "category_id": "aquarium_fish",
            },
            {"customer_id": 1, "ts": ts("2025-03-01T12:00"), "url": "/catalog/dairy", "category_id": "milk"},
            {"customer_id": 2, "ts": ts("2025-04-09T12:00"), "url": None, "category_id": None},
        ],
    )
    out = _features(
        src,
        "2025-04-10",
        {"field": "message_events", "event": "opened", "op": "ge", "value": 1},
        {"field": "message_events", "event": "opened", "window": {"last_days": 30}, "op": "ge", "value": 1},
        {
            "field": "message_events",
            "event": "opened",
            "channel": "email",
            "campaign": "spring",
            "op": "ge",
            "value": 1,
        },
        {"field": "message_events", "channel": "sms", "op": "ge", "value": 1},
        {"field": "message_events", "event": "clicked", "op": "ge", "value": 1},
        {"field": "site_visits", "op": "ge", "value": 1},
        {"field": "site_visits", "category": "pets", "op": "ge", "value": 1},
        {"field": "site_visits", "url_contains": "/fish", "op": "ge", "value": 1},
        {"field": "site_visits", "category": "food", "window": {"last_days": 7}, "op": "ge", "value": 1},
    )
    expected = pl.DataFrame(
        {
            "customer_id": [1, 2],
            "message_events__event_opened": [2, 0],
            "message_events__last_30d__event_opened": [1, 0],
            "message_events__event_opened__ch_email__camp_spring": [1, 0],
            "message_events__ch_sms": [1, 0],
            "message_events__event_clicked": [0, 0],
            "site_visits": [2, 1],
            "site_visits__cat_pets": [1, 0],
            "site_visits__url_/fish": [1, 0],
            "site_visits__last_7d__cat_food": [0, 0],  # the milk page was visited in March
        }
    )
    assert_frame_equal(out.select(expected.columns), expected)


def test_extra_customer_columns_as_text_and_missing_column_error():
    src = frames(
        customers({"customer_id": 1}, {"customer_id": 2}).with_columns(
            card_type=pl.Series(["plastic", None]), children=pl.Series([2, None])
        )
    )
    out = _features(
        src,
        "2025-04-10",
        {"field": "customer.card_type", "op": "is_set"},
        {"field": "customer.children", "op": "gt", "value": 1},
    )
    assert out.select("customer__card_type", "customer__children").rows() == [("plastic", "2"), (None, None)]
    with pytest.raises(ValueError, match="no column"):
        _features(src, "2025-04-10", {"field": "customer.nope", "op": "is_set"})


def test_no_customers_gives_an_empty_typed_frame():
    out = _features(frames(customers()), "2025-04-10", {"field": "purchase_count", "op": "gt", "value": 0})
    assert out.height == 0
    assert out.schema["purchase_count"] == pl.Int64
    assert date(2025, 4, 10)  # the run date itself needs no data


def test_last_days_window_edges():
    """`last_days: 30` on 10 April is 12 March .. 10 April, in local days."""
    src = frames(
        customers({"customer_id": 1}),
        checks=[
            {
                "check_id": "out",
                "customer_id": 1,
                "ts": ts("2025-03-11T20:59"),
                "total": money("1.00"),
            },  # 23:59 11 Mar
            {
                "check_id": "in1",
                "customer_id": 1,
                "ts": ts("2025-03-11T21:00"),
                "total": money("2.00"),
            },  # 00:00 12 Mar
            {
                "check_id": "in2",
                "customer_id": 1,
                "ts": ts("2025-04-10T20:59"),
                "total": money("4.00"),
            },  # 23:59 10 Apr
        ],
    )
    out = _features(
        src,
        "2025-04-10",
        {"field": "purchase_total", "window": {"last_days": 30}, "op": "gt", "value": 0},
        {"field": "purchase_total", "window": {"last_days": 1}, "op": "gt", "value": 0},
        {
            "field": "purchase_total",
            "window": {"from": "2025-03-11", "to": "2025-03-11"},
            "op": "gt",
            "value": 0,
        },
        {
            "field": "purchase_total",
            "window": {"from": "2025-04-01", "to": "2025-12-31"},
            "op": "gt",
            "value": 0,
        },
    )
    assert [
        out.item(0, c)
        for c in (
            "purchase_total__last_30d",
            "purchase_total__last_1d",
            "purchase_total__from_2025_03_11_to_2025_03_11",
            "purchase_total__from_2025_04_01_to_2025_12_31",
        )
    ] == [money("6.00"), money("4.00"), money("1.00"), money("4.00")]


# ------------------------------------------------------------------ local days around zone transitions

#: Customer zones with the transitions that matter for local days: London's DST (not at midnight),
#: Santiago's clocks jumping over midnight (2024-09-08 00:00 does not exist), Havana setting clocks back
#: from 01:00 to 00:00 (2024-11-03 starts twice), a fixed offset far east, and two program-zone fallbacks.
EDGE_ZONES = ["Europe/London", "America/Santiago", "America/Havana", "Asia/Vladivostok", None, "Mars/Olympus"]


def _edge_frames(zones: list[str | None], instants: list[datetime]) -> SourceFrames:
    """One customer per zone; each has a check and a bonus accrual at every instant (expiring 50 days on)."""
    checks, ledger = [], []
    for cid, _ in enumerate(zones, start=1):
        for n, at in enumerate(instants):
            checks.append({"check_id": f"c{cid}_{n}", "customer_id": cid, "ts": at, "total": money("1.00")})
            ledger.append(
                {
                    "txn_id": f"t{cid}_{n}",
                    "customer_id": cid,
                    "ts": at,
                    "kind": "accrual",
                    "amount": money("1.00"),
                    "expires_at": at + timedelta(days=50),
                }
            )
    rows = [{"customer_id": cid, "timezone": zone} for cid, zone in enumerate(zones, start=1)]
    return frames(customers(*rows), checks=checks, bonus_transactions=ledger)


def _around(*days: str) -> list[datetime]:
    """Instants every 20 minutes from 30 h before to 30 h after UTC midnight of each day (plus ±1 µs there)."""
    out: set[datetime] = set()
    for day in days:
        midnight = ts(f"{day}T00:00")
        out.update(midnight + timedelta(minutes=20 * k) for k in range(-90, 91))
        out.update(midnight + timedelta(minutes=20 * k) + delta for k in range(-90, 91) for delta in (_US, -_US))
    return sorted(out)


_US = timedelta(microseconds=1)


def _expected(zones: list[str | None], instants: list[datetime], run: date, windows: dict[str, tuple]) -> dict:
    """Per customer, the features recomputed row by row with `zoneinfo` (the definition, not the method)."""
    cutoff = datetime.combine(run + timedelta(days=1), datetime.min.time(), ZoneInfo("Europe/Moscow"))
    out: dict[str, list] = defaultdict(list)
    for zone in zones:
        tz = ZoneInfo(zone if zone in available_timezones() else "Europe/Moscow")
        seen = [at for at in instants if at < cutoff and at.astimezone(tz).date() <= run]
        local = [at.astimezone(tz).date() for at in seen]
        out["last_check_date"].append(max(local, default=None))
        out["first_check_date"].append(min(local, default=None))
        for name, (first, last) in windows.items():
            out[name].append(sum(first <= day <= last for day in local))
        # the ledger's lots are as of the cutoff: an accrual before it counts even when it is already
        # the next local day for the customer (far east), a lot that expired before it does not
        expiring = [
            at
            for at in instants
            if at < cutoff < at + timedelta(days=50)
            and run < (at + timedelta(days=50)).astimezone(tz).date() <= run + timedelta(days=10)
        ]
        out["bonuses_expiring__within_10d"].append(money(len(expiring)) * money("1.00"))
    return out


@pytest.mark.parametrize(
    ("run", "zones", "near"),
    [
        # day starts compared as instants (Havana left out): gap at midnight, DST, fixed offsets
        ("2024-09-07", [z for z in EDGE_ZONES if z != "America/Havana"], ("2024-09-08", "2024-08-09", "2024-03-31")),
        ("2024-10-26", EDGE_ZONES[:2] + EDGE_ZONES[3:], ("2024-10-27", "2024-09-08", "2024-09-17")),
        # Havana's repeated midnight: rows are converted to local dates instead, same results
        ("2024-11-10", EDGE_ZONES, ("2024-11-04", "2024-11-03", "2024-11-11", "2024-09-20")),
    ],
)
def test_local_days_at_zone_transitions_match_row_by_row_dates(run, zones, near):
    run_day = d(run)
    instants = _around(*near)
    windows = {
        "purchase_count__last_30d": (run_day - timedelta(days=29), run_day),
        "purchase_count__last_1d": (run_day, run_day),
        f"purchase_count__from_{near[1].replace('-', '_')}_to_{near[0].replace('-', '_')}": (d(near[1]), d(near[0])),
    }
    window_conditions = [
        {"field": "purchase_count", "window": {"last_days": 30}, "op": "ge", "value": 0},
        {"field": "purchase_count", "window": {"last_days": 1}, "op": "ge", "value": 0},
        {"field": "purchase_count", "window": {"from": near[1], "to": near[0]}, "op": "ge", "value": 0},
    ]
    out = _features(
        _edge_frames(zones, instants),
        run,
        {"field": "last_check_date", "op": "is_set"},
        {"field": "first_check_date", "op": "is_set"},
        {"field": "bonuses_expiring", "within_days": 10, "op": "gt", "value": 0},
        *window_conditions,
    )
    expected = _expected(zones, instants, run_day, windows)
    for column, values in expected.items():
        assert out.get_column(column).to_list() == values, column


def test_day_starts_are_first_instants_of_local_days_or_none_when_midnight_repeats():
    # Santiago jumps from 00:00 to 01:00 on 2024-09-08: that day starts at 01:00 -03 = 04:00 UTC
    assert _first_instant(d("2024-09-08"), "America/Santiago") == ts("2024-09-08T04:00")
    assert _first_instant(d("2024-10-27"), "Europe/London") == ts("2024-10-26T23:00")  # still BST
    assert _first_instant(d("2024-10-28"), "Europe/London") == ts("2024-10-28T00:00")  # GMT again
    london = _Context(_edge_frames(["Europe/London"], []), AsOf(d("2024-10-26")))
    starts = london.day_starts([d("2024-10-27"), d("2024-10-28")])
    assert starts is not None
    assert starts.filter(pl.col("_tz") == "Europe/London").row(0)[1:] == (
        ts("2024-10-26T23:00"),
        ts("2024-10-28T00:00"),
    )
    # Havana sets clocks back from 01:00 to 00:00 on 2024-11-03: local dates are not monotone there
    havana = _Context(_edge_frames(["America/Havana"], []), AsOf(d("2024-11-10")))
    assert havana.day_starts([d("2024-11-03")]) is None
    assert havana.day_starts([d("2024-11-11")]) is not None
    assert not havana.monotone(d("2024-10-01"), d("2024-11-11"))
    assert havana.monotone(d("2024-11-04"), d("2024-11-11"))
