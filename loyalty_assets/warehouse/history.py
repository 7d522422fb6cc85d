"""What earlier runs wrote, read back as inputs of later dates (cross-day state)."""

from __future__ import annotations

import polars as pl

from loyalty_assets.sources.frames import OWN_ACCRUALS_SCHEMA, AsOf
from loyalty_assets.warehouse.warehouse import Warehouse


def own_accruals_before(warehouse: Warehouse, as_of: AsOf) -> pl.DataFrame:
    """Bonus accruals this project wrote for dates before D and accrued before D's cutoff.

    They count toward balances and "bonuses accrued" next to the loyalty system's own ledger.
    """
    written = warehouse.read("bonus_accruals", before=("partition_date", as_of.date))
    return written.filter(pl.col("accrued_at") < as_of.cutoff_literal).select(list(OWN_ACCRUALS_SCHEMA))
