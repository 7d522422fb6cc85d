"""Deterministic ids of what a campaign step produces: the one place their format is written.

`<campaign>:<step>[:<channel>]:<customer>:<occasion>` — the same customer, step and occasion give the
same id on every re-run and backfill, which is what makes the warehouse writes idempotent and lets
the loyalty module and the sender deduplicate. Accruals and manual-segment events use the plain form;
messages add the channel (one step may address one channel only, but ids stay unambiguous).
"""

from __future__ import annotations

import polars as pl


def step_output_id(campaign_id: str, step_id: str, *, channel: str | None = None) -> pl.Expr:
    """The id expression over frames with `customer_id` and `occasion` columns."""
    prefix = f"{campaign_id}:{step_id}:" + (f"{channel}:" if channel else "")
    return pl.concat_str(pl.lit(prefix), pl.col("customer_id").cast(pl.String()), pl.lit(":"), pl.col("occasion"))
