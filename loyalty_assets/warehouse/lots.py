"""The warehouse side of the bonus ledger: the `bonus_lots` table and the accruals it is built from.

`bonus_lots` holds the lots of one date, the latest written. Replacing it is one transaction that
takes the table's lock, reads the date it holds and skips the write when that date is later (a
backfill of an older date never overwrites a newer state), then deletes every row and inserts the
new lots: readers see the old state or the new one, never a mix.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import sqlalchemy as sa

from loyalty_assets.sources.frames import OWN_ACCRUALS_SCHEMA, AsOf
from loyalty_assets.warehouse.warehouse import Warehouse

TABLE = "bonus_lots"


def own_accruals_through(warehouse: Warehouse, as_of: AsOf) -> pl.DataFrame:
    """This project's accruals visible at the end of D: written by runs up to D, accrued before the cutoff.

    Unlike `DayState.own_accruals` (what D's features and triggers see, before D's campaigns
    run), D's own accruals count: the ledger of D runs after them.
    """
    written = warehouse.read("bonus_accruals", before=("partition_date", as_of.date + timedelta(days=1)))
    return written.filter(pl.col("accrued_at") < as_of.cutoff_literal).select(list(OWN_ACCRUALS_SCHEMA))


def _held_date(conn: sa.Connection, table: sa.Table) -> date | None:
    held = conn.execute(sa.select(sa.func.max(table.c.as_of_date))).scalar_one_or_none()
    return date.fromisoformat(held) if isinstance(held, str) else held


def write_lots(warehouse: Warehouse, lots: pl.DataFrame, day: date) -> int | str:
    """Make `bonus_lots` the lots as of `day`; rows written, or why the write was skipped."""
    table = warehouse.table(TABLE)
    with warehouse.transaction() as conn:
        warehouse.lock(conn, TABLE)
        held = _held_date(conn, table)
        if held is not None and held > day:
            return f"skipped: holds the newer state of {held.isoformat()}"
        return warehouse.replace(TABLE, lots.with_columns(pl.lit(day).alias("as_of_date")), {}, conn=conn)
