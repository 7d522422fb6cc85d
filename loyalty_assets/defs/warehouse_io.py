"""Outputs whose rows live in the warehouse: written by the asset, loaded back from the table.

`loyalty_day` writes each campaign's rows (`warehouse.campaign_rows`) and each segment's members
(`warehouse.membership`) in its own transactions: the warehouse table is the output's storage. A second
copy of the same rows as a Parquet file per date was never read by any asset and cost, at 1M customers
on a heavy day, the outbox bodies written twice. So `handle_output` stores nothing, and `load_input` —
for an asset added downstream, or `Definitions.load_asset_value` — reads the partition's rows from the
table, the same rows the asset wrote (with the table's own columns, e.g. `campaign_id`).
"""

from datetime import date

import dagster as dg
import polars as pl

from loyalty_assets.defs.resources import shared_warehouse
from loyalty_assets.warehouse.membership import members_on

WAREHOUSE_IO = "warehouse_io_manager"


class WarehouseTableIOManager(dg.ConfigurableIOManager):
    """`campaign/<id>/<table>` ↔ rows of `<table>` for (campaign, date); `segment/<id>/members` ↔ members on D."""

    url: str

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        return None  # the asset wrote the rows in its own transaction

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        path = context.asset_key.path
        day = date.fromisoformat(context.asset_partition_key)
        wh = shared_warehouse(self.url)
        if path[0] == "campaign" and len(path) == 3:
            return wh.read(path[2], {"campaign_id": path[1], "partition_date": day})
        if path[0] == "segment" and len(path) == 3:
            return members_on(wh, path[1], day)
        raise dg.Failure(f"{'/'.join(path)} is not stored in the warehouse (no table for it)")
