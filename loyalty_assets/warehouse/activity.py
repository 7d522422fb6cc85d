"""The customer's complete activity history, assembled from the tables that hold each decision.

`activity_events` stores only skips, waits and the ends of journeys entered earlier; entries, accruals,
queued messages and the ends of journeys ended by the run that entered them are derived here (as the
SQL view `activity_log` derives them) from `triggered_customers`, `bonus_accruals` and
`message_outbox` (never reading the message bodies) with the same functions that once wrote them, so
the rows — event ids and details included — are those the full log held, at a fraction of its size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from loyalty_assets.transforms.activity import (
    ACTIVITY_SCHEMA,
    ENDED_COLUMNS,
    LOGGED_KINDS,
    accrual_activity,
    derived_end_activity,
    entry_activity,
    queued_activity,
)
from loyalty_assets.warehouse.warehouse import Warehouse

#: The columns of a history row: the activity row plus where it was recorded.
HISTORY_COLUMNS = (*ACTIVITY_SCHEMA, "stage", "partition_date")

_DERIVED = (
    (
        "triggered_customers",
        "triggered",
        ("customer_id", "occasion", "triggered_at", "is_control", *ENDED_COLUMNS),
    ),
    (
        "bonus_accruals",
        "accruals",
        ("accrual_id", "customer_id", "accrued_at", "amount", "expires_at", "legal_entity", "occasion"),
    ),
    ("message_outbox", "messages", ("message_id", "customer_id", "send_at", "channel", "step_id", "occasion")),
)
#: At one instant, the order a customer lived it: entered, accrued, messaged, then the journey's end.
_STAGE_ORDER = {"triggered": 0, "accruals": 1, "messages": 2, "journey": 3}
_BUILD = {"triggered": entry_activity, "accruals": accrual_activity, "messages": queued_activity}


def customer_activity(
    wh: Warehouse, where: Mapping[str, Any] | None = None, kinds: tuple[str, ...] | None = None
) -> pl.DataFrame:
    """Activity rows matching `where` (any of `campaign_id`, `partition_date`, `customer_id`), in time order.

    `kinds` keeps only those kinds, and skips reading the tables that cannot hold them.
    """
    where = dict(where or {})
    unknown = sorted(set(where) - {"campaign_id", "partition_date", "customer_id"})
    if unknown:
        raise KeyError(f"customer_activity filters on campaign_id, partition_date, customer_id, not {unknown}")
    parts = []
    if kinds is None or set(kinds) & set(LOGGED_KINDS):
        parts.append(wh.read("activity_events", where, columns=HISTORY_COLUMNS))
    for table, stage, columns in _DERIVED:
        rows = wh.read(table, where, columns=(*columns, "campaign_id", "partition_date"))
        for (campaign_id,), mine in rows.partition_by("campaign_id", as_dict=True, maintain_order=True).items():
            built = _BUILD[stage](str(campaign_id), mine)
            parts.append(built.with_columns(pl.lit(stage).alias("stage"), mine.get_column("partition_date")))
            if stage == "triggered":  # the ends of journeys ended by the run that entered them
                ended = mine.filter(pl.col("ended_at").is_not_null())
                built = derived_end_activity(str(campaign_id), ended)
                parts.append(built.with_columns(pl.lit("journey").alias("stage"), ended.get_column("partition_date")))
    history = pl.concat([p.select(HISTORY_COLUMNS) for p in parts]) if parts else pl.DataFrame()
    if kinds is not None:
        history = history.filter(pl.col("kind").is_in(kinds))
    rank = pl.col("stage").replace_strict(_STAGE_ORDER, default=len(_STAGE_ORDER), return_dtype=pl.Int8)
    return history.sort("ts", rank, "event_id")
