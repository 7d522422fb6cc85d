"""Anniversary arithmetic on date columns, vectorised.

The k-th anniversary (k counted in months) of an anchor date D0 is the same day-of-month k months
later. When that day does not exist in the target month (29 February in a non-leap year, the 31st of
a 30-day month) the policy decides: `next_day` observes it on the 1st of the following month (the
default: 29 Feb → 1 Mar), `last_day` on the month's last day (29 Feb → 28 Feb).
"""

from __future__ import annotations

from datetime import date
from typing import Literal

import polars as pl

MissingDay = Literal["next_day", "last_day"]


def anniversary(anchor: pl.Expr, months_after: pl.Expr, missing_day: MissingDay) -> pl.Expr:
    """The observed date `months_after` months after `anchor` (never an invalid date)."""
    month_index = anchor.dt.year().cast(pl.Int64) * 12 + anchor.dt.month().cast(pl.Int64) - 1 + months_after
    first = pl.date(month_index // 12, month_index % 12 + 1, 1)
    days_in_month = first.dt.month_end().dt.day().cast(pl.Int64)
    day = anchor.dt.day().cast(pl.Int64)
    exact = first + pl.duration(days=pl.min_horizontal(day, days_in_month) - 1)
    if missing_day == "next_day":
        return pl.when(day > days_in_month).then(first.dt.month_end() + pl.duration(days=1)).otherwise(exact)
    return exact


def anniversary_hits(
    anchor: pl.Expr,
    target: date,
    *,
    interval_months: int,
    missing_day: MissingDay,
    min_k: int = 1,
) -> tuple[pl.Expr, pl.Expr]:
    """(hit, k): whether some anniversary k·interval months after `anchor` is observed on `target`.

    Only two candidates can land on `target`: the anniversary in `target`'s month, and (for the
    `next_day` policy) the previous month's one rolled over to the 1st. Both are checked.
    """
    months_between = (target.year * 12 + target.month - 1) - (
        anchor.dt.year().cast(pl.Int64) * 12 + anchor.dt.month().cast(pl.Int64) - 1
    )
    hits = []
    for k in (months_between, months_between - 1):
        valid = (k >= min_k) & (k % interval_months == 0) & (anniversary(anchor, k, missing_day) == pl.lit(target))
        hits.append((valid.fill_null(False), k))
    (hit_same, k_same), (hit_prev, k_prev) = hits
    hit = hit_same | hit_prev
    k = pl.when(hit_same).then(k_same).when(hit_prev).then(k_prev)
    return hit, k
