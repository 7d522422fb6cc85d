"""The point-in-time view a run for date D works on.

Every transform (segment features, triggers, accruals, messages) receives an `AsOf` and a
`SourceFrames`, never raw files: this keeps the business logic free of I/O and makes a backfill of a
past date see exactly what a run on that day saw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import polars as pl

from loyalty_assets.sources.schemas import MONEY, SCHEMAS, UTC_TS

OWN_ACCRUALS_SCHEMA: dict[str, pl.DataType] = {
    "accrual_id": pl.String(),  # the bonus ledger's lot source (transforms.ledger)
    "customer_id": pl.Int64(),
    "amount": MONEY,
    "accrued_at": UTC_TS,
    "expires_at": UTC_TS,
    "legal_entity": pl.String(),
    "campaign_id": pl.String(),
}


@dataclass(frozen=True)
class AsOf:
    """The run date D and the instant that ends it.

    `cutoff` is the start of D+1 in the program's time zone, as an aware UTC datetime: a row is
    visible to the run when its visibility timestamp is strictly before it.
    """

    date: date
    program_tz: str = "Europe/Moscow"

    @property
    def cutoff(self) -> datetime:
        local_end = datetime.combine(self.date + timedelta(days=1), time(0), ZoneInfo(self.program_tz))
        return local_end.astimezone(ZoneInfo("UTC"))

    @property
    def start(self) -> datetime:
        """The start of D in the program's zone, as an aware UTC datetime (events of D are in [start, cutoff))."""
        local_start = datetime.combine(self.date, time(0), ZoneInfo(self.program_tz))
        return local_start.astimezone(ZoneInfo("UTC"))

    @property
    def start_literal(self) -> pl.Expr:
        return utc_literal(self.start)

    @property
    def cutoff_literal(self) -> pl.Expr:
        """The cutoff as a Polars literal comparable with the contract's UTC timestamps."""
        return utc_literal(self.cutoff)


@lru_cache(maxsize=4096)
def utc_literal(instant: datetime) -> pl.Expr:
    """An aware instant as a Polars UTC literal; built once per instant (an expression is immutable,
    and building a zoned literal costs ~0.4 ms, which a catch-up of many days paid thousands of times)."""
    return pl.lit(instant).cast(pl.Datetime("us", "UTC"))


def empty_frame(table: str) -> pl.DataFrame:
    """An empty frame with the contract schema of `table`."""
    return pl.DataFrame(schema=SCHEMAS[table].columns)


@dataclass(frozen=True)
class SourceFrames:
    """The nine contract tables as of one date, validated and typed per `sources.schemas`.

    History tables hold only the rows visible at the cutoff (e.g. `customer_attributes` keeps every
    version with `valid_from` before the cutoff; the value valid at D is the one whose `valid_to` is
    null or after the cutoff). `own_accruals` are the bonus accruals this project wrote itself before
    the cutoff, which count toward balances next to the loyalty system's ledger.
    """

    customers: pl.DataFrame
    checks: pl.DataFrame
    check_items: pl.DataFrame
    categories: pl.DataFrame
    customer_attributes: pl.DataFrame
    favourite_categories: pl.DataFrame
    bonus_transactions: pl.DataFrame
    communications: pl.DataFrame
    site_visits: pl.DataFrame
    own_accruals: pl.DataFrame
    # what is derived from these frames once per day and read by several steps (e.g. the bonus lots)
    _derived: dict[object, pl.DataFrame] = field(default_factory=dict, init=False, compare=False, repr=False)

    def derived(self, key: object, build: Callable[[], pl.DataFrame]) -> pl.DataFrame:
        """`build()` the first time `key` is asked for on these frames, the same frame afterwards."""
        if key not in self._derived:
            self._derived[key] = build()
        return self._derived[key]

    @classmethod
    def from_tables(cls, tables: dict[str, pl.DataFrame]) -> SourceFrames:
        """Build from a dict; tables not given are empty with their contract schema."""
        values: dict[str, pl.DataFrame] = {}
        for f in fields(cls):
            if not f.init:
                continue
            if f.name == "own_accruals":
                values[f.name] = tables.get(f.name, pl.DataFrame(schema=OWN_ACCRUALS_SCHEMA))
            else:
                values[f.name] = tables.get(f.name, empty_frame(f.name))
        return cls(**values)
