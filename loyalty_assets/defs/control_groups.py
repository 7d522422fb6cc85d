"""The global control group, stored per period so who was held out on any past date is known."""

import dagster as dg
import polars as pl

from loyalty_assets.config.campaigns import GlobalControlGroup, Program
from loyalty_assets.defs.metadata import OWNERS, column_schema, daily_freshness, tags
from loyalty_assets.defs.partitions import as_of
from loyalty_assets.defs.resources import WarehouseResource
from loyalty_assets.defs.sources import source_key
from loyalty_assets.transforms.control_groups import global_control_members

GLOBAL_CONTROL_KEY = dg.AssetKey(["global_control_group"])


def build_global_control_asset(program: Program, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    if program.global_control_group is None:
        return []
    group: GlobalControlGroup = program.global_control_group

    @dg.asset(
        key=GLOBAL_CONTROL_KEY,
        ins={"customers": dg.AssetIn(source_key("customers"))},
        group_name="segments",
        partitions_def=partitions,
        kinds={"polars", "sql"},
        owners=OWNERS,
        tags=tags("control_group"),
        freshness_policy=daily_freshness(program),
        description=(
            f"{group.percent}% of the base held out of every campaign, re-drawn every "
            f"{group.reform_every_months} months → global_control_group (per period)."
        ),
    )
    def global_control_group(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, customers: pl.LazyFrame
    ) -> dg.MaterializeResult:
        point = as_of(context, program)
        ids = customers.select("customer_id").collect().get_column("customer_id")  # the one column it needs
        members = global_control_members(ids, group, point.date)
        start = members.get_column("period_start")[0] if members.height else None
        wh = warehouse.warehouse
        if start is not None:
            with wh.transaction() as conn:
                # Rows of customers registered since earlier runs join the period; nobody leaves it.
                existing = wh.read("global_control_group", {"period_start": start}, conn=conn).select("customer_id")
                merged = pl.concat([existing, members.select("customer_id")]).unique().sort("customer_id")
                wh.replace(
                    "global_control_group",
                    merged.with_columns(pl.lit(members.get_column("period_end")[0]).alias("period_end")),
                    {"period_start": start},
                    conn=conn,
                )
        return dg.MaterializeResult(
            metadata={
                "held_out": dg.MetadataValue.int(members.height),
                "period_start": dg.MetadataValue.text(str(start)),
                "base": dg.MetadataValue.int(ids.len()),
                "dagster/row_count": dg.MetadataValue.int(members.height),
                **column_schema(members.schema),
            }
        )

    return [global_control_group]
