"""The global control group: N percent of the whole base held out of all campaigns.

Membership is drawn per period (re-formed every M months from a start date) by a stable hash of
(period start, customer id), so who was in it on any past date can always be recomputed and is also
stored per period in the warehouse — unlike tools that only know the current group.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from loyalty_assets.config.campaigns import GlobalControlGroup
from loyalty_assets.transforms.hashing import in_percent


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def period_of(group: GlobalControlGroup, day: date) -> tuple[date, date]:
    """The [start, end] (inclusive) of the period containing `day`; periods start on the 1st."""
    anchor = group.start.replace(day=1)
    months = (day.year - anchor.year) * 12 + day.month - anchor.month
    index = months // group.reform_every_months
    start = _add_months(anchor, index * group.reform_every_months)
    end = _add_months(start, group.reform_every_months) - timedelta(days=1)
    return start, end


def global_control_members(customer_ids: pl.Series, group: GlobalControlGroup, day: date) -> pl.DataFrame:
    """`customer_id, period_start, period_end` of the customers held out on `day`."""
    start, end = period_of(group, day)
    held = in_percent(customer_ids, f"global-control:{start.isoformat()}", float(group.percent))
    return pl.DataFrame({"customer_id": customer_ids.filter(held)}).with_columns(
        pl.lit(start).alias("period_start"), pl.lit(end).alias("period_end")
    )
