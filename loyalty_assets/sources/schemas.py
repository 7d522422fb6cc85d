"""The nine source tables of the data contract, as Polars schemas.

One place states every column's type, which columns are required, the table's key and the
timestamp that decides when a row becomes visible to a run. Readers, validators, the sample-data
generator and the segment features all import from here, so a contract change is one edit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

UTC_TS = pl.Datetime("us", "UTC")
MONEY = pl.Decimal(14, 2)
QUANTITY = pl.Decimal(14, 3)


@dataclass(frozen=True)
class TableSchema:
    """Contract of one source table.

    `visible_at` names the timestamp column that must be at or before a run's cutoff for the row to
    exist as of that run (point in time); `None` means the table has no history (e.g. categories).
    """

    name: str
    columns: dict[str, pl.DataType]
    required: tuple[str, ...]
    key: tuple[str, ...]
    visible_at: str | None = None
    not_null: tuple[str, ...] = field(default=())
    customer_column: str | None = "customer_id"


CUSTOMERS = TableSchema(
    name="customers",
    columns={
        "customer_id": pl.Int64(),
        "registered_at": UTC_TS,
        "birth_date": pl.Date(),
        "gender": pl.String(),
        "first_name": pl.String(),
        "email": pl.String(),
        "phone": pl.String(),
        "push_token": pl.String(),
        "email_subscribed": pl.Boolean(),
        "sms_subscribed": pl.Boolean(),
        "push_subscribed": pl.Boolean(),
        "email_valid": pl.Boolean(),
        "timezone": pl.String(),
        "city": pl.String(),
        "labels": pl.List(pl.String()),
    },
    required=(
        "customer_id",
        "registered_at",
        "email_subscribed",
        "sms_subscribed",
        "push_subscribed",
        "email_valid",
    ),
    key=("customer_id",),
    visible_at="registered_at",
    not_null=("customer_id", "registered_at"),
    customer_column=None,
)

CHECKS = TableSchema(
    name="checks",
    columns={
        "check_id": pl.String(),
        "customer_id": pl.Int64(),
        "ts": UTC_TS,
        "store_id": pl.String(),
        "total": MONEY,
        "discount": MONEY,
        "bonus_spent": MONEY,
    },
    required=("check_id", "customer_id", "ts", "total"),
    key=("check_id",),
    visible_at="ts",
    not_null=("check_id", "customer_id", "ts", "total"),
)

CHECK_ITEMS = TableSchema(
    name="check_items",
    columns={
        "check_id": pl.String(),
        "line_no": pl.Int64(),
        "product_id": pl.String(),
        "category_id": pl.String(),
        "quantity": QUANTITY,
        "amount": MONEY,
    },
    required=("check_id", "line_no", "product_id", "category_id", "quantity", "amount"),
    key=("check_id", "line_no"),
    not_null=("check_id", "line_no", "product_id", "category_id", "quantity", "amount"),
    customer_column=None,
)

CATEGORIES = TableSchema(
    name="categories",
    columns={"category_id": pl.String(), "name": pl.String(), "parent_id": pl.String()},
    required=("category_id", "name"),
    key=("category_id",),
    not_null=("category_id", "name"),
    customer_column=None,
)

CUSTOMER_ATTRIBUTES = TableSchema(
    name="customer_attributes",
    columns={
        "customer_id": pl.Int64(),
        "name": pl.String(),
        "value": pl.String(),
        "valid_from": UTC_TS,
        "valid_to": UTC_TS,
    },
    required=("customer_id", "name", "value", "valid_from"),
    key=("customer_id", "name", "valid_from"),
    visible_at="valid_from",
    not_null=("customer_id", "name", "valid_from"),
)

FAVOURITE_CATEGORIES = TableSchema(
    name="favourite_categories",
    columns={
        "customer_id": pl.Int64(),
        "period_start": pl.Date(),
        "period_end": pl.Date(),
        "category_id": pl.String(),
        "chosen_at": UTC_TS,
        "preference": pl.String(),
    },
    required=("customer_id", "period_start", "period_end", "category_id", "chosen_at"),
    key=("customer_id", "period_start", "category_id"),
    visible_at="chosen_at",
    not_null=("customer_id", "period_start", "period_end", "category_id", "chosen_at"),
)

BONUS_TRANSACTIONS = TableSchema(
    name="bonus_transactions",
    columns={
        "txn_id": pl.String(),
        "customer_id": pl.Int64(),
        "ts": UTC_TS,
        "kind": pl.String(),
        "amount": MONEY,
        "expires_at": UTC_TS,
        "legal_entity": pl.String(),
        "source": pl.String(),
    },
    required=("txn_id", "customer_id", "ts", "kind", "amount"),
    key=("txn_id",),
    visible_at="ts",
    not_null=("txn_id", "customer_id", "ts", "kind", "amount"),
)

COMMUNICATIONS = TableSchema(
    name="communications",
    columns={
        "message_id": pl.String(),
        "customer_id": pl.Int64(),
        "campaign_id": pl.String(),
        "channel": pl.String(),
        "sent_at": UTC_TS,
        "event": pl.String(),
        "event_at": UTC_TS,
    },
    required=("message_id", "customer_id", "channel", "sent_at", "event", "event_at"),
    key=("message_id", "event"),
    visible_at="event_at",
    not_null=("message_id", "customer_id", "channel", "event", "event_at"),
)

SITE_VISITS = TableSchema(
    name="site_visits",
    columns={
        "customer_id": pl.Int64(),
        "ts": UTC_TS,
        "url": pl.String(),
        "category_id": pl.String(),
    },
    required=("customer_id", "ts"),
    key=("customer_id", "ts"),
    visible_at="ts",
    not_null=("customer_id", "ts"),
)

SCHEMAS: dict[str, TableSchema] = {
    s.name: s
    for s in (
        CUSTOMERS,
        CHECKS,
        CHECK_ITEMS,
        CATEGORIES,
        CUSTOMER_ATTRIBUTES,
        FAVOURITE_CATEGORIES,
        BONUS_TRANSACTIONS,
        COMMUNICATIONS,
        SITE_VISITS,
    )
}

#: Allowed values of the enumerated columns; anything else is quarantined.
ENUMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("customers", "gender"): ("F", "M"),
    ("bonus_transactions", "kind"): ("accrual", "redemption", "expiry"),
    ("communications", "channel"): ("email", "sms", "push", "viber"),
    ("communications", "event"): (
        "sent",
        "delivered",
        "opened",
        "clicked",
        "bounced",
        "unsubscribed",
    ),
}

#: Columns that must not be negative.
NON_NEGATIVE: dict[str, tuple[str, ...]] = {
    "checks": ("total", "discount", "bonus_spent"),
    "check_items": ("quantity", "amount"),
}
