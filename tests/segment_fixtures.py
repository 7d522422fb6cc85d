"""Small, hand-written source frames for the segment and feature tests.

Rows are written as dicts with only the columns that matter to the test; everything else gets a
neutral default, so each test reads like the scenario it checks. The category tree is shared:

    food ─┬─ dairy ─┬─ milk
          │         └─ cheese
          └─ bakery
    pets ─── aquarium_fish
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import polars as pl

from loyalty_assets.sources.frames import OWN_ACCRUALS_SCHEMA, SourceFrames
from loyalty_assets.sources.schemas import SCHEMAS


def ts(text: str) -> datetime:
    """An aware UTC timestamp from `2025-03-31T22:30` (the contract's zone-less timestamps are UTC)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def d(text: str) -> date:
    return date.fromisoformat(text)


def money(value: str | int) -> Decimal:
    return Decimal(str(value))


CUSTOMER_DEFAULTS: dict[str, Any] = {
    "registered_at": ts("2024-01-10T09:00"),
    "birth_date": None,
    "gender": None,
    "first_name": None,
    "email": None,
    "phone": None,
    "push_token": None,
    "email_subscribed": False,
    "sms_subscribed": False,
    "push_subscribed": False,
    "email_valid": True,
    "timezone": None,
    "city": None,
    "labels": None,
}

CATEGORY_ROWS = [
    {"category_id": "food", "name": "Food", "parent_id": None},
    {"category_id": "dairy", "name": "Dairy", "parent_id": "food"},
    {"category_id": "milk", "name": "Milk", "parent_id": "dairy"},
    {"category_id": "cheese", "name": "Cheese", "parent_id": "dairy"},
    {"category_id": "bakery", "name": "Bakery", "parent_id": "food"},
    {"category_id": "pets", "name": "Pets", "parent_id": None},
    {"category_id": "aquarium_fish", "name": "Aquarium fish", "parent_id": "pets"},
]


def table(name: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """A contract-typed frame of `rows`; missing columns are null."""
    schema = OWN_ACCRUALS_SCHEMA if name == "own_accruals" else SCHEMAS[name].columns
    return pl.DataFrame([{c: r.get(c) for c in schema} for r in rows], schema=schema, orient="row")


def customers(*rows: dict[str, Any]) -> pl.DataFrame:
    """Customers with defaults for every column not given (registered 2024-01-10, nothing subscribed)."""
    return table("customers", [{**CUSTOMER_DEFAULTS, **r} for r in rows])


def checks_with_items(*checks: dict[str, Any]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Checks given as `{check_id, customer_id, ts, total, items: [(product, category, qty, amount)]}`."""
    check_rows, item_rows = [], []
    for c in checks:
        items = c.get("items", [])
        check_rows.append({k: v for k, v in c.items() if k != "items"})
        for line_no, (product, category, qty, amount) in enumerate(items, start=1):
            item_rows.append(
                {
                    "check_id": c["check_id"],
                    "line_no": line_no,
                    "product_id": product,
                    "category_id": category,
                    "quantity": Decimal(str(qty)),
                    "amount": money(amount),
                }
            )
    return table("checks", check_rows), table("check_items", item_rows)


def frames(
    customer_rows: pl.DataFrame,
    *,
    checks: list[dict[str, Any]] = (),  # type: ignore[assignment]
    **tables: list[dict[str, Any]],
) -> SourceFrames:
    """SourceFrames from customers, checks (with items) and any other table given as row dicts."""
    check_df, items_df = checks_with_items(*checks)
    built = {name: table(name, rows) for name, rows in tables.items()}
    built.setdefault("categories", table("categories", CATEGORY_ROWS))
    return SourceFrames.from_tables({"customers": customer_rows, "checks": check_df, "check_items": items_df, **built})
