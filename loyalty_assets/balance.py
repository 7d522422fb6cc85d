"""`loyalty balance <customer_id> --date D [--json]`: the customer card's detailed balance («Детализированный баланс»).

The lots of one customer as of the end of D, computed from the sources as the pipeline would (the
loyalty system's ledger, validated and cut at D's cutoff) plus this project's own accruals written
up to D: the same rules as the `bonus_ledger` asset (`transforms.ledger`), for any past date,
writing nothing. Amounts in JSON are strings with two decimals (exact, never binary floats);
instants are ISO 8601 in UTC.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import polars as pl

from loyalty_assets.config.catalog import load_catalog
from loyalty_assets.settings import Settings
from loyalty_assets.sources.frames import OWN_ACCRUALS_SCHEMA, AsOf
from loyalty_assets.sources.readers import SourceError, make_reader
from loyalty_assets.sources.schemas import SCHEMAS
from loyalty_assets.sources.validation import validate
from loyalty_assets.transforms.ledger import build_lots, ledger_entries
from loyalty_assets.warehouse.lots import own_accruals_through
from loyalty_assets.warehouse.warehouse import open_existing

JSON_LOT_FIELDS = ("lot_id", "source", "amount", "remaining", "accrued_at", "expires_at", "legal_entity")


class BalanceError(ValueError):
    """A user error: printed as one line."""


@dataclass(frozen=True)
class CustomerBalance:
    customer_id: int
    day: date
    balance: Any  # Decimal
    lots: pl.DataFrame  # transforms.ledger.LOT_SCHEMA, FIFO order

    def as_json(self) -> dict[str, Any]:
        def text(value: Any) -> str | None:
            if value is None:
                return None
            return value.isoformat() if isinstance(value, datetime) else str(value)

        return {
            "customer_id": self.customer_id,
            "date": self.day.isoformat(),
            "balance": str(self.balance),
            "lots": [{k: text(row[k]) for k in JSON_LOT_FIELDS} for row in self.lots.iter_rows(named=True)],
        }


def customer_balance(settings: Settings, customer_id: int, day: date) -> CustomerBalance:
    """The customer's lots and balance as of the end of `day` (program zone)."""
    program = load_catalog(settings.campaigns_dir).program
    point = AsOf(date=day, program_tz=program.timezone)
    read = make_reader(settings.data_dir, settings.source_database_url, point.cutoff)
    now = datetime.now(UTC)
    try:
        customers = validate(SCHEMAS["customers"], read("customers"), point, now=now).kept
        known = customers.get_column("customer_id")
        if customer_id not in known.to_list():
            raise BalanceError(f"customer {customer_id} is not in customers as of {day.isoformat()}")
        ledger = validate(
            SCHEMAS["bonus_transactions"], read("bonus_transactions"), point, now=now, known_customers=known
        ).kept.filter(pl.col("customer_id") == customer_id)
    except SourceError as exc:
        raise BalanceError(str(exc)) from exc
    warehouse = open_existing(settings.database_url)
    own = (
        own_accruals_through(warehouse, point).filter(pl.col("customer_id") == customer_id)
        if warehouse is not None
        else pl.DataFrame(schema=OWN_ACCRUALS_SCHEMA)
    )
    lots = build_lots(ledger_entries(ledger, own), point.cutoff)
    return CustomerBalance(customer_id, day, lots.get_column("remaining").sum(), lots)


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        result = customer_balance(settings, args.customer_id, args.date)
    except BalanceError as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.as_json(), ensure_ascii=False, indent=2))
        return 0
    print(f"customer {result.customer_id} on {result.day.isoformat()}: balance {result.balance}")
    if result.lots.is_empty():
        print("  (no lots)")
        return 0
    shown = result.lots.select(
        "lot_id", "source", "amount", "remaining", "redeemed", "expired", "accrued_at", "expires_at", "legal_entity"
    )
    with pl.Config(tbl_rows=500, tbl_cols=20, tbl_width_chars=200, tbl_hide_dataframe_shape=True, fmt_str_lengths=60):
        print(shown)
    return 0
