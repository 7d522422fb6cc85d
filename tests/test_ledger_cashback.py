"""Favourite-category cashback (seed 001), worked out by hand; the shipped campaign example accrues it.

Categories: food ─┬─ dairy ── milk;  food ── bakery;  pets ── pet_food. Program zone Moscow; run
date 10 June 2025 unless said ([9 Jun 21:00, 10 Jun 21:00) UTC). Favourites are for June.

| customer | zone | favourites (preference) | check on D | cashback |
|---|---|---|---|---|
| 1 | Moscow | dairy 5, bakery 7.5 | C1: milk 199.90 (dairy), bread 45.50, pet food 300 | 9.995 + 3.4125 → 13.41 |
| 1 | | | C2: milk 10.10 | 0.505 → 0.51 (half up; not 0.50) |
| 3 | Moscow | food 3, dairy 5 | C3: milk 100.00 | the higher percent, once: 5.00 (not 8.00) |
| 4 | Moscow | bakery 5, chosen 10 Jun 12:00 UTC | C4 at 10:00 UTC: bread 40.00 | chosen after the check: nothing |
| 5 | Moscow | dairy "abc" | C5: milk 50.00 | unparsable preference: nothing |
| 2 | Vladivostok | pet_food 7% (June) | C6 30 Jun 15:00 UTC = 1 Jul 01:00 local | July for her: nothing (run 30 Jun) |
| 2 | | pet_food 7% (June) | C7 30 Jun 10:00 UTC = 20:00 local | "7%" read as 7: 21.00 on 300.00 |
"""

from __future__ import annotations

import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from loyalty_assets.config.catalog import DEFAULT_CATALOG, load_catalog
from loyalty_assets.sources.frames import AsOf, SourceFrames
from loyalty_assets.transforms.accruals import build_accruals
from loyalty_assets.transforms.campaign_day import campaign_journeys
from loyalty_assets.transforms.cashback import category_closure, favourite_cashback
from loyalty_assets.transforms.entry import ENTRANTS_SCHEMA
from loyalty_assets.transforms.features import compute_features
from loyalty_assets.transforms.journey import TOKEN_SCHEMA
from loyalty_assets.transforms.triggers import fire
from loyalty_assets.warehouse.warehouse import Warehouse
from tests.conftest import FIXTURES, keep_campaigns, make_settings, run_days
from tests.engine_fixtures import VLAT, customers, money, rows_of, table, ts

D = date(2025, 6, 10)
CATEGORIES = [
    {"category_id": "food", "name": "Food", "parent_id": None},
    {"category_id": "dairy", "name": "Dairy", "parent_id": "food"},
    {"category_id": "milk", "name": "Milk", "parent_id": "dairy"},
    {"category_id": "bakery", "name": "Bakery", "parent_id": "food"},
    {"category_id": "pets", "name": "Pets", "parent_id": None},
    {"category_id": "pet_food", "name": "Pet food", "parent_id": "pets"},
]


def fav(cid: int, category: str, preference: str, chosen: str = "2025-06-01T09:00") -> dict[str, Any]:
    return {
        "customer_id": cid,
        "period_start": date(2025, 6, 1),
        "period_end": date(2025, 6, 30),
        "category_id": category,
        "chosen_at": ts(chosen),
        "preference": preference,
    }


def check(check_id: str, cid: int, at: str, *lines: tuple[str, str]) -> tuple[dict, list[dict]]:
    total = sum((Decimal(a) for _, a in lines), Decimal(0))
    head = {"check_id": check_id, "customer_id": cid, "ts": ts(at), "total": money(total)}
    items = [
        {
            "check_id": check_id,
            "line_no": n,
            "product_id": f"p{n}",
            "category_id": c,
            "quantity": Decimal(1),
            "amount": money(a),
        }
        for n, (c, a) in enumerate(lines, start=1)
    ]
    return head, items


CHECKS = [
    check("C1", 1, "2025-06-10T08:00", ("milk", "199.90"), ("bakery", "45.50"), ("pet_food", "300.00")),
    check("C2", 1, "2025-06-10T09:00", ("milk", "10.10")),
    check("C3", 3, "2025-06-10T09:00", ("milk", "100.00")),
    check("C4", 4, "2025-06-10T10:00", ("bakery", "40.00")),
    check("C5", 5, "2025-06-10T10:00", ("milk", "50.00")),
    check("C6", 2, "2025-06-30T15:00", ("pet_food", "300.00")),
    check("C7", 2, "2025-06-30T10:00", ("pet_food", "300.00")),
]


def frames() -> SourceFrames:
    return SourceFrames.from_tables(
        {
            "customers": customers(*({"customer_id": i} for i in (1, 3, 4, 5)), {"customer_id": 2, "timezone": VLAT}),
            "categories": table("categories", CATEGORIES),
            "checks": table("checks", [h for h, _ in CHECKS]),
            "check_items": table("check_items", [i for _, items in CHECKS for i in items]),
            "favourite_categories": table(
                "favourite_categories",
                [
                    fav(1, "dairy", "5"),
                    fav(1, "bakery", "7.5"),
                    fav(3, "food", "3"),
                    fav(3, "dairy", "5"),
                    fav(4, "bakery", "5", chosen="2025-06-10T12:00"),
                    fav(5, "dairy", "abc"),
                    fav(2, "pet_food", "7%"),
                ],
            ),
        }
    )


def test_category_closure_includes_sub_categories() -> None:
    closure = category_closure(table("categories", CATEGORIES))
    food = sorted(closure.filter(pl.col("ancestor") == "food")["category_id"])
    assert food == ["bakery", "dairy", "food", "milk"]


def test_cashback_per_check_by_hand() -> None:
    src = frames()
    earned = favourite_cashback(src, AsOf(D), src.checks.filter(pl.col("ts") < ts("2025-06-11T00:00")))
    assert rows_of(earned, "check_id", "favourite_amount", "cashback") == [
        ("C1", money("245.40"), money("13.41")),
        ("C2", money("10.10"), money("0.51")),
        ("C3", money("100.00"), money("5.00")),
        ("C4", money("0"), money("0")),
        ("C5", money("0"), money("0")),
    ]


def test_trigger_fires_once_per_check_with_the_cashback() -> None:
    hits = fire(_campaign().trigger, frames(), AsOf(D))
    assert rows_of(hits, "customer_id", "occasion", "check_id", "check_total", "event_amount", "triggered_at") == [
        (1, "purchase:C1", "C1", money("545.40"), money("13.41"), ts("2025-06-10T08:00")),
        (1, "purchase:C2", "C2", money("10.10"), money("0.51"), ts("2025-06-10T09:00")),
        (3, "purchase:C3", "C3", money("100.00"), money("5.00"), ts("2025-06-10T09:00")),
    ]
    june_30 = fire(_campaign().trigger, frames(), AsOf(date(2025, 6, 30)))
    assert rows_of(june_30, "customer_id", "check_id", "event_amount") == [(2, "C7", money("21.00"))]


def _campaign():  # type: ignore[no-untyped-def]
    return load_catalog(DEFAULT_CATALOG).campaigns["favourite_category_cashback"]


def test_shipped_campaign_accrues_the_cashback_with_lifetime_and_legal_entity() -> None:
    campaign = _campaign()
    hits = fire(campaign.trigger, frames(), AsOf(D))
    entrants = hits.with_columns(pl.lit(None, pl.String).alias("variant"), pl.lit(False).alias("is_control"))
    day = campaign_journeys(
        campaign,
        entrants.select(list(ENTRANTS_SCHEMA)),
        as_of=AsOf(D),
        features=compute_features(frames(), AsOf(D)),
        members={},
        pending_due=pl.DataFrame(schema=TOKEN_SCHEMA),
    )
    accruals = build_accruals(campaign, day.actions)
    assert rows_of(accruals, "accrual_id", "amount", "accrued_at", "expires_at", "legal_entity") == [
        (
            "favourite_category_cashback:cashback:1:purchase:C1",
            money("13.41"),
            ts("2025-06-10T08:00"),
            ts("2025-08-09T08:00"),
            "LE-Main",
        ),
        (
            "favourite_category_cashback:cashback:1:purchase:C2",
            money("0.51"),
            ts("2025-06-10T09:00"),
            ts("2025-08-09T09:00"),
            "LE-Main",
        ),
        (
            "favourite_category_cashback:cashback:3:purchase:C3",
            money("5.00"),
            ts("2025-06-10T09:00"),
            ts("2025-08-09T09:00"),
            "LE-Main",
        ),
    ]


def test_cashback_end_to_end_and_reminder_variables(tmp_path: Path, catalog_dir: Path, warehouse_url: str) -> None:
    """`fixtures/favourites` + one June check of Anna (customer 1; dairy 5, bakery 5): dairy 200.00 and
    bakery 30.00 earn 10.00 + 1.50 = 11.50, pet food 100.00 nothing. The cashback campaign accrues it on
    10 June (a re-run does not accrue twice); the reminder of 26 June tells her what she earned and can
    still earn (5% until 30 June: 5 days, 26th included; 50.00 per 1000). Boris (pet food 7) bought
    nothing: earned 0.00, 70.00 per 1000."""
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / "favourites", data)
    with (data / "checks.csv").open("a", encoding="utf8") as f:
        f.write("K1,1,2025-06-10 09:00:00,S01,330.00,0.00,0.00\n")
    with (data / "check_items.csv").open("a", encoding="utf8") as f:
        f.write("K1,1,MILK,dairy,1.000,200.00\nK1,2,BREAD,bakery,1.000,30.00\nK1,3,FOOD,pet_food,1.000,100.00\n")
    keep_campaigns(catalog_dir, "favourite_category_cashback", "favourite_category_reminder")
    settings = make_settings(data, catalog_dir, warehouse_url, tmp_path / "storage")
    run_days(settings, [date(2025, 6, 10), date(2025, 6, 10), date(2025, 6, 26)])
    wh = Warehouse(warehouse_url)
    accruals = wh.read("bonus_accruals", {"campaign_id": "favourite_category_cashback"})
    assert rows_of(accruals, "accrual_id", "amount", "legal_entity") == [
        ("favourite_category_cashback:cashback:1:purchase:K1", money("11.50"), "LE-Main")
    ]
    lots = wh.read("bonus_lots")
    assert rows_of(lots, "customer_id", "lot_id", "remaining") == [
        (1, "accrual:favourite_category_cashback:cashback:1:purchase:K1", money("11.50"))
    ]
    outbox = wh.read("message_outbox", {"campaign_id": "favourite_category_reminder"})
    body = dict(zip(outbox["customer_id"], outbox["body"], strict=True))
    assert "You have earned 11.50 bonuses on them this month." in body[1]
    assert "Until 30.06.2025 (5 days left) you can still earn\n    5% back: 50.00 bonuses on every 1000" in body[1]
    assert "You have earned 0.00 bonuses" in body[2] and "7% back: 70.00 bonuses" in body[2]
