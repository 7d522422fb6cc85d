"""The warehouse side of the bonus ledger: the `bonus_lots` table and the accruals it is built from.

`bonus_lots` holds the lots of one date, the latest written, named by the one row of
`bonus_lots_as_of`. Writing it is one transaction that takes the table's lock, reads the date it
holds and skips the write when that date is later (a backfill of an older date never overwrites a
newer state), then writes the day's changes to the day before's lots (or, when the table does not
hold them, replaces every row): readers see the old state or the new one, never a mix. The date is
not a column of the lots: restamping every lot with D rewrote the whole table each day (5.1M rows at
1M customers), and a per-lot "last written" date would depend on the path (changes or a replace),
not on the data.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

import polars as pl
import sqlalchemy as sa

from loyalty_assets.sources.frames import OWN_ACCRUALS_SCHEMA, AsOf
from loyalty_assets.warehouse import bulk
from loyalty_assets.warehouse.warehouse import Warehouse

TABLE = "bonus_lots"
AS_OF_TABLE = "bonus_lots_as_of"
KEY = ["customer_id", "lot_id"]


def own_accruals_through(warehouse: Warehouse, as_of: AsOf) -> pl.DataFrame:
    """This project's accruals visible at the end of D: written by runs up to D, accrued before the cutoff.

    Unlike `DayState.own_accruals` (what D's features and triggers see, before D's campaigns
    run), D's own accruals count: the ledger of D runs after them.
    """
    written = warehouse.read("bonus_accruals", before=("partition_date", as_of.date + timedelta(days=1)))
    return written.filter(pl.col("accrued_at") < as_of.cutoff_literal).select(list(OWN_ACCRUALS_SCHEMA))


def _held(conn: sa.Connection, marker: sa.Table) -> tuple[date | None, str | None]:
    """The date the table holds and the digest of its lots (the latest marker row, if several)."""
    row = conn.execute(
        sa.select(marker.c.as_of_date, marker.c.lots_digest).order_by(marker.c.as_of_date.desc()).limit(1)
    ).first()
    if row is None:
        return None, None
    held = date.fromisoformat(row[0]) if isinstance(row[0], str) else row[0]
    return held, row[1]


def write_lots(
    warehouse: Warehouse,
    lots: pl.DataFrame,
    day: date,
    previous: pl.DataFrame | None = None,
    touched: pl.Series | None = None,
    *,
    carried: pl.DataFrame | None = None,
    every: Callable[[], pl.DataFrame] | None = None,
) -> int | str:
    """Make `bonus_lots` the lots as of `day`; rows written, or why the write was skipped.

    When the table holds `previous` (the lots the day before's run carried on), only the lots that
    changed are written (`_write_changes`): a day touches a few lots of the whole history.
    `touched` (`ledger.touched_customers` of the advance from `previous`) limits the comparison to
    the customers whose lots can differ. Otherwise (first date, a re-run, a backfill that starts
    over) the table is replaced, by `every()` when given: the lots of the whole history, closed
    ones included, when `lots` were advanced from a state without them. `carried` (default `lots`):
    the frame this run hands the next day, whose digest the marker keeps.
    """
    table, marker = warehouse.table(TABLE), warehouse.table(AS_OF_TABLE)
    with warehouse.transaction() as conn:
        warehouse.lock(conn, TABLE)
        held, stored_digest = _held(conn, marker)
        if held is not None and held > day:
            return f"skipped: holds the newer state of {held.isoformat()}"
        if previous is not None and held == day - timedelta(days=1) and _holds(conn, table, stored_digest, previous):
            now, before = lots, previous
            if touched is not None:
                mine = pl.col("customer_id").is_in(touched.implode())
                now, before = lots.filter(mine), previous.filter(mine)
            written = _write_changes(conn, table, now, before)
        else:
            written = warehouse.replace(TABLE, every() if every is not None else lots, {}, conn=conn)
        conn.execute(sa.delete(marker))
        conn.execute(sa.insert(marker).values(as_of_date=day, lots_digest=digest(lots if carried is None else carried)))
        return written


def digest(lots: pl.DataFrame) -> str:
    """Count and exact sums of a lots frame: what the marker row stores for the lots written.

    The next day compares it with the frame it starts from (the lots the day before's run returned):
    equal, the table holds that frame and only the changes are written; different (a run that wrote
    the table but not its frame, a re-run in between), the table is replaced. Scanning the table for
    the same sums cost a full read of it (5.1M rows at 1M customers) every day. An edit of
    `bonus_lots` by hand is not seen: delete the `bonus_lots_as_of` row to have the next run rewrite it.
    """
    sums = (str(Decimal(str(lots.get_column(c).sum()))) for c in ("amount", "remaining", "redeemed", "expired"))
    return ":".join([str(lots.height), *sums])


def _holds(conn: sa.Connection, table: sa.Table, stored_digest: str | None, lots: pl.DataFrame) -> bool:
    """Whether the table holds `lots`: by the marker's digest; a marker written before digests were
    kept (none stored) by the table's own count and sums, to the cent (one scan, once)."""
    if stored_digest is not None:
        return stored_digest == digest(lots)
    count, amount, remaining = conn.execute(
        sa.select(sa.func.count(), sa.func.sum(table.c.amount), sa.func.sum(table.c.remaining))
    ).one()
    if count != lots.height or count == 0:
        return bool(count == lots.height)
    # SQLite may sum the stored decimals as floats (a mismatch only costs a full replace)
    cents = Decimal("0.01")
    got = tuple(Decimal(str(v)).quantize(cents) for v in (amount, remaining))
    return got == tuple(Decimal(str(lots.get_column(c).sum())).quantize(cents) for c in ("amount", "remaining"))


def _write_changes(conn: sa.Connection, table: sa.Table, lots: pl.DataFrame, previous: pl.DataFrame) -> int:
    """Turn the table from `previous` into `lots`: delete the lots that changed or are gone, insert the
    changed and new ones (bulk, through a temporary table of keys); the other lots are not touched."""
    columns = lots.columns
    changed = lots.join(previous.select(columns), on=columns, how="anti", nulls_equal=True)
    gone = previous.select(KEY).join(lots.select(KEY), on=KEY, how="anti")
    stale_keys = pl.concat([changed.select(KEY), gone], how="vertical").unique()
    if stale_keys.height:
        keys = sa.Table(
            "bonus_lots_stale",
            sa.MetaData(),
            sa.Column("customer_id", sa.BigInteger, nullable=False),
            sa.Column("lot_id", sa.Text, nullable=False),
            prefixes=["TEMPORARY"],
        )
        keys.drop(conn, checkfirst=True)
        keys.create(conn)
        bulk.write(conn, keys, stale_keys)
        # a row-value IN: both databases drive it from the few keys through the primary key index
        stale = sa.select(keys.c.customer_id, keys.c.lot_id)
        conn.execute(sa.delete(table).where(sa.tuple_(table.c.customer_id, table.c.lot_id).in_(stale)))
        keys.drop(conn)
    return bulk.write(conn, table, changed)
