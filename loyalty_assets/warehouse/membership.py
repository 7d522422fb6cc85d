"""Segment membership stored as intervals (`segment_members`), written as a day's changes.

Setting "the members on D" is an operation on each customer's set of member days: D is added or
removed, and touching intervals are merged or split. That makes a write idempotent and independent
of the order dates are run in (a backfill of an old date after newer ones leaves the same rows as
day-by-day runs). An open interval (`left_on` NULL) lasts until the latest run date, so a date
newer than every earlier run closes the intervals of those who left, and changes nothing for those
who stay: a daily run writes turnover, not the whole segment.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import sqlalchemy as sa

from loyalty_assets.warehouse import bulk
from loyalty_assets.warehouse.warehouse import Warehouse

INTERVAL_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.Int64(),
    "entered_on": pl.Date(),
    "left_on": pl.Date(),
}


def membership_changes(
    intervals: pl.DataFrame, members: pl.Series, day: date, newest: bool
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows to delete (`customer_id, entered_on`) and insert (`INTERVAL_SCHEMA`) to make `members` the members on `day`.

    `intervals` are the segment's rows that touch `day` (contain it, end on it, or start the day
    after); `newest` says no later date was run, so an open interval need not continue past `day`.
    """
    d, nxt = pl.lit(day, pl.Date()), pl.lit(day + timedelta(days=1), pl.Date())
    ids = members.cast(pl.Int64).unique().implode()
    rows = intervals.select(list(INTERVAL_SCHEMA)).cast(INTERVAL_SCHEMA)  # type: ignore[arg-type]
    contains = (pl.col("entered_on") <= d) & (pl.col("left_on").is_null() | (pl.col("left_on") > d))
    holding = rows.filter(contains)
    is_member = pl.col("customer_id").is_in(ids)

    # members without a stay on D: one new stay, merged with the one ending on D and the one from D+1
    joining = pl.DataFrame({"customer_id": members.cast(pl.Int64).unique()}).join(
        holding.select("customer_id"), on="customer_id", how="anti"
    )
    before = rows.filter(pl.col("left_on") == d).join(joining, on="customer_id", how="semi")
    after = rows.filter(pl.col("entered_on") == nxt).join(joining, on="customer_id", how="semi")
    joined = (
        joining.join(before.select("customer_id", pl.col("entered_on").alias("b")), on="customer_id", how="left")
        .join(
            after.select("customer_id", pl.col("left_on").alias("a"), pl.lit(True).alias("has_after")),
            on="customer_id",
            how="left",
        )
        .select(
            "customer_id",
            pl.coalesce("b", d).alias("entered_on"),
            pl.when(pl.col("has_after").fill_null(False))
            .then(pl.col("a"))
            .otherwise(pl.lit(None, pl.Date()) if newest else nxt)
            .alias("left_on"),
        )
    )

    # stays holding D of customers no longer members: cut D out
    leaving = holding.filter(~is_member)
    head = leaving.filter(pl.col("entered_on") < d).select("customer_id", "entered_on", d.alias("left_on"))
    tail_end = pl.col("left_on")
    tail = leaving.filter((tail_end.is_null() & (not newest)) | (tail_end.is_not_null() & (tail_end > nxt))).select(
        "customer_id", nxt.alias("entered_on"), "left_on"
    )

    deleted = pl.concat([before, after, leaving]).select("customer_id", "entered_on")
    inserted = pl.concat([joined, head, tail]).cast(INTERVAL_SCHEMA)  # type: ignore[arg-type]
    return deleted, inserted.sort("customer_id", "entered_on")


def write_membership(wh: Warehouse, segment_id: str, day: date, members: pl.DataFrame) -> int:
    """Record `members` (customer_id) as the segment's members on `day`; returns how many they are."""
    table = wh.table("segment_members")
    runs = wh.table("segment_runs")
    c = table.c
    with wh.transaction() as conn:
        wh.lock(conn, "segment_members", f"segment_id={segment_id}")
        later = conn.execute(
            sa.select(sa.func.count()).where(runs.c.segment_id == segment_id, runs.c.partition_date > day)
        ).scalar_one()
        # The intervals touching D (holding it, ending on it, or starting on D+1), read in bulk as the
        # open ones plus the closed ones ending on D or later, then narrowed in Polars.
        columns = list(INTERVAL_SCHEMA)
        open_rows = wh.read("segment_members", {"segment_id": segment_id, "left_on": None}, conn=conn, columns=columns)
        closed = wh.read(
            "segment_members", {"segment_id": segment_id}, since=("left_on", day), conn=conn, columns=columns
        )
        current = pl.concat([open_rows, closed]).filter(
            (pl.col("entered_on") <= day) | (pl.col("entered_on") == day + timedelta(days=1))
        )
        deleted, inserted = membership_changes(current, members.get_column("customer_id"), day, newest=later == 0)
        if deleted.height:  # the day's turnover only
            conn.execute(
                sa.delete(table).where(
                    c.segment_id == segment_id,
                    c.customer_id == sa.bindparam("cid"),
                    c.entered_on == sa.bindparam("eon"),
                ),
                [{"cid": cid, "eon": eon} for cid, eon in deleted.iter_rows()],
            )
        bulk.write(conn, table, inserted.select(pl.lit(segment_id).alias("segment_id"), *INTERVAL_SCHEMA))
        conn.execute(sa.delete(runs).where(runs.c.segment_id == segment_id, runs.c.partition_date == day))
        conn.execute(sa.insert(runs), [{"segment_id": segment_id, "partition_date": day, "members": members.height}])
    return members.height


def members_on(wh: Warehouse, segment_id: str, day: date) -> pl.DataFrame:
    """`customer_id` of the segment's members on `day` (the documented "members on D" query)."""
    c = wh.table("segment_members").c
    query = (
        sa.select(c.customer_id)
        .where(c.segment_id == segment_id, c.entered_on <= day, sa.or_(c.left_on.is_(None), c.left_on > day))
        .order_by(c.customer_id)
    )
    with wh.engine.connect() as conn:
        return pl.DataFrame([tuple(r) for r in conn.execute(query)], schema={"customer_id": pl.Int64()}, orient="row")


def members_by_date(wh: Warehouse, day: date) -> pl.DataFrame:
    """(`segment_id`, `customer_id`) of every saved segment computed for `day` (the view's rows for D).

    Only segments with a run on `day` (`segment_runs`) count: membership on a date nobody ran is
    unknown, not empty.
    """
    m = wh.table("segment_members").c
    r = wh.table("segment_runs").c
    query = (
        sa.select(m.segment_id, m.customer_id)
        .join_from(wh.table("segment_members"), wh.table("segment_runs"), m.segment_id == r.segment_id)
        .where(r.partition_date == day, m.entered_on <= day, sa.or_(m.left_on.is_(None), m.left_on > day))
        .order_by(m.segment_id, m.customer_id)
    )
    schema: dict[str, pl.DataType] = {"segment_id": pl.String(), "customer_id": pl.Int64()}
    with wh.engine.connect() as conn:
        result = conn.execute(query)
        try:  # the driver's plain tuples (a text and an integer need no decoding): Row objects cost more
            return bulk.fetched(result.cursor, schema)
        finally:
            result.close()
