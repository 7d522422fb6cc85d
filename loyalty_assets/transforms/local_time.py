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
        return _local_to_utc(local, zone).alias(out)

    return _per_zone(frame, build)


def _local_to_utc(local: pl.Expr, zone: str) -> pl.Expr:
    """A naive local datetime in `zone` → UTC; gaps move forward an hour, ambiguity takes the earlier."""
    exact = local.dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
    shifted = (local + pl.duration(hours=1)).dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
    return pl.coalesce(exact, shifted).dt.convert_time_zone("UTC")


def next_local_time(frame: pl.DataFrame, ts_column: str, at: time, out: str, days: int = 0) -> pl.DataFrame:
    """`out` = the first instant at or after `ts_column` whose local time (in `__zone`) is `at`.

    With `days`, the search starts `days` local calendar days later: `days=1, at=10:00` is 10:00 on
    the next local day, whatever the time of `ts_column`.
    """

    def build(zone: str) -> pl.Expr:
        local = pl.col(ts_column).dt.convert_time_zone(zone).dt.replace_time_zone(None)
        same_day = local.dt.truncate("1d") + pl.duration(days=days, hours=at.hour, minutes=at.minute)
        candidate = pl.when(same_day >= local).then(same_day).otherwise(same_day + pl.duration(days=1))
        return _local_to_utc(candidate, zone).alias(out)

    return _per_zone(frame, build)


def out_of_quiet_hours(frame: pl.DataFrame, ts_column: str, start: time, end: time, out: str) -> pl.DataFrame:
    """`out` = `ts_column`, or the next local `end` when the local time falls in [start, end).

    The quiet period may wrap midnight (21:00–09:00). Nothing is dropped: a message due at 23:00
    is moved to 09:00 the next morning.
    """

    def minutes(t: time) -> int:
        return t.hour * 60 + t.minute

    def build(zone: str) -> pl.Expr:
        local = pl.col(ts_column).dt.convert_time_zone(zone).dt.replace_time_zone(None)
        minute = local.dt.hour().cast(pl.Int32) * 60 + local.dt.minute().cast(pl.Int32)
        s, e = minutes(start), minutes(end)
        quiet = (minute >= s) & (minute < e) if s < e else (minute >= s) | (minute < e)
        same_day_end = local.dt.truncate("1d") + pl.duration(hours=end.hour, minutes=end.minute)
        moved = pl.when(same_day_end > local).then(same_day_end).otherwise(same_day_end + pl.duration(days=1))
        return pl.when(quiet).then(_local_to_utc(moved, zone)).otherwise(pl.col(ts_column)).alias(out)

    return _per_zone(frame, build)
