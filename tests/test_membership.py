"""Segment membership as intervals: the same answers as daily snapshots, in any date order."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty_assets.warehouse.membership import (
    INTERVAL_SCHEMA,
    members_by_date,
    members_on,
    membership_changes,
    write_membership,
)
from loyalty_assets.warehouse.warehouse import Warehouse

D1 = date(2025, 6, 1)


def day(n: int) -> date:
    return D1 + timedelta(days=n - 1)


def frame(ids: list[int]) -> pl.DataFrame:
    return pl.DataFrame({"customer_id": ids}, schema={"customer_id": pl.Int64()})


def test_a_week_of_turnover_writes_only_the_changes(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    # 1 stays all week; 2 leaves on 3 Jun; 3 joins on 2 Jun, leaves on 4 Jun, comes back on 6 Jun
    week = {1: [1, 2], 2: [1, 2, 3], 3: [1, 3], 4: [1], 5: [1], 6: [1, 3], 7: [1, 3]}
    for n, ids in week.items():
        write_membership(wh, "vip", day(n), frame(ids))
    rows = wh.read("segment_members").sort("customer_id", "entered_on")
    assert rows.select("customer_id", "entered_on", "left_on").rows() == [
        (1, day(1), None),
        (2, day(1), day(3)),
        (3, day(2), day(4)),
        (3, day(6), None),
    ]
    for n, ids in week.items():
        assert members_on(wh, "vip", day(n))["customer_id"].to_list() == ids
        assert members_by_date(wh, day(n)).rows() == [("vip", i) for i in ids]  # what the summary reads
    assert members_by_date(wh, day(8)).is_empty()  # nobody ran that date: no members, typed
    assert members_by_date(wh, day(8)).schema == {"segment_id": pl.String(), "customer_id": pl.Int64()}
    # a re-run of any date changes nothing; the view answers per run date
    write_membership(wh, "vip", day(3), frame([1, 3]))
    assert wh.read("segment_members").height == 4
    assert wh.count("segment_runs", {"segment_id": "vip"}) == 7


def test_a_backfill_in_reverse_order_leaves_the_same_rows(warehouse_url: str, tmp_path) -> None:
    week = {1: [1, 2], 2: [1, 2, 3], 3: [1, 3], 4: [1], 5: [1], 6: [1, 3], 7: [1, 3]}
    forward = Warehouse(f"sqlite:///{tmp_path / 'forward.db'}")
    for n, ids in week.items():
        write_membership(forward, "vip", day(n), frame(ids))
    backward = Warehouse(warehouse_url)
    for n, ids in reversed(week.items()):
        write_membership(backward, "vip", day(n), frame(ids))
    key = ["customer_id", "entered_on"]
    assert backward.read("segment_members").sort(key).equals(forward.read("segment_members").sort(key))


def apply(table: pl.DataFrame, ids: list[int], n: int, newest: bool) -> pl.DataFrame:
    deleted, inserted = membership_changes(table, pl.Series(ids, dtype=pl.Int64), day(n), newest)
    kept = table.join(deleted, on=["customer_id", "entered_on"], how="anti")
    return pl.concat([kept, inserted]).sort("customer_id", "entered_on")


def on(table: pl.DataFrame, n: int) -> list[int]:
    d = day(n)
    inside = (pl.col("entered_on") <= d) & (pl.col("left_on").is_null() | (pl.col("left_on") > d))
    return sorted(table.filter(inside)["customer_id"].to_list())


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 8), st.lists(st.integers(1, 4), unique=True, max_size=4)),
        min_size=1,
        max_size=14,
    )
)
def test_any_order_of_writes_answers_like_daily_snapshots(writes: list[tuple[int, list[int]]]) -> None:
    """Whatever the order (re-runs, backfills, gaps), each date run answers what was last written for it."""
    table = pl.DataFrame(schema=INTERVAL_SCHEMA)
    latest: dict[int, list[int]] = {}
    for n, ids in writes:
        table = apply(table, ids, n, newest=not any(m > n for m in latest))
        latest[n] = sorted(ids)
    for n, ids in latest.items():
        assert on(table, n) == ids
    # no two stays of one customer overlap or touch (they would have been merged)
    ordered = table.sort("customer_id", "entered_on").with_columns(
        pl.col("entered_on").shift(-1).over("customer_id").alias("next_start")
    )
    assert ordered.filter(pl.col("next_start").is_not_null() & (pl.col("left_on") >= pl.col("next_start"))).is_empty()
