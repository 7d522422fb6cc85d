"""Customer-local dates and times.

A customer's "day" is the local date in their own zone (or the program's zone when they have none):
a check at 2025-03-31T22:30Z is on 1 April for a Moscow customer. Polars converts zones per column,
not per row, so frames are split by zone (a handful of groups, never one per row), converted and
put back together in the original order.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import time

import polars as pl

ZONE = "__zone"
_ORDER = "__order"


def with_zone(frame: pl.DataFrame, program_tz: str, tz_column: str = "timezone") -> pl.DataFrame:
    """Add `__zone`: the customer's zone, or the program's when it is missing."""
    return frame.with_columns(pl.col(tz_column).fill_null(program_tz).alias(ZONE))


def _per_zone(frame: pl.DataFrame, build: Callable[[str], pl.Expr]) -> pl.DataFrame:
    """Add the column `build(zone)` computes, per zone group; keeps the input order."""
    if frame.is_empty():
        return frame.with_columns(build("UTC"))
    numbered = frame.with_row_index(_ORDER)
    parts = [
        group.with_columns(build(str(zone)))
        for (zone,), group in numbered.partition_by(ZONE, as_dict=True, maintain_order=True).items()
    ]
    return pl.concat(parts, how="vertical_relaxed").sort(_ORDER).drop(_ORDER)


def add_local_date(frame: pl.DataFrame, ts_column: str, out: str) -> pl.DataFrame:
    """`out` = local date of the UTC timestamp `ts_column` in each row's `__zone`."""
    return _per_zone(frame, lambda zone: pl.col(ts_column).dt.convert_time_zone(zone).dt.date().alias(out))


def add_local_instant(frame: pl.DataFrame, date_column: str, at: time, out: str) -> pl.DataFrame:
    """`out` = the UTC instant of `date_column` at local time `at` in each row's `__zone`.

    A local time that does not exist (a spring-forward gap) moves forward by the gap; an ambiguous
    one (autumn) takes the earlier instant, so a message is never sent twice or skipped.
    """

    def build(zone: str) -> pl.Expr:
        local = pl.col(date_column).cast(pl.Datetime("us")) + pl.duration(hours=at.hour, minutes=at.minute)
        exact = local.dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
        shifted = (local + pl.duration(hours=1)).dt.replace_time_zone(
            zone, ambiguous="earliest", non_existent="null"
        )
        return pl.coalesce(exact, shifted).dt.convert_time_zone("UTC").alias(out)

    return _per_zone(frame, build)
