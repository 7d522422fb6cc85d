"""Each campaign's results as a daily-partitioned asset `campaign/<id>/results` (wiring only).

The partition D holds the results of the campaign's entrants from its start up to D, on the data
visible at D's cutoff, so a re-run or a backfill of D gives the same figures. They are written to
`campaign_results` (replacing that campaign and date) and shown as Markdown and table metadata.
The figures are computed by `transforms.results` through `reporting.inputs.results_for`, the same
call `loyalty report` makes.
"""

import dagster as dg
import polars as pl

from loyalty_assets.config.catalog import Catalog
from loyalty_assets.defs.partitions import as_of
from loyalty_assets.defs.resources import WarehouseResource
from loyalty_assets.defs.sources import source_key
from loyalty_assets.reporting.inputs import period_start, results_for
from loyalty_assets.reporting.markdown import results_markdown
from loyalty_assets.sources.frames import SourceFrames
from loyalty_assets.transforms.results import GROUP_SCHEMA, format_value

RESULT_SOURCES = ("customers", "checks", "communications", "bonus_transactions")
CAMPAIGN_OUTPUTS = ("triggered_customers", "bonus_accruals", "message_outbox")


def results_key(campaign_id: str) -> dg.AssetKey:
    return dg.AssetKey(["campaign", campaign_id, "results"])


def build_results_assets(catalog: Catalog, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """One results asset per valid campaign; it depends on every campaign's outbox (last touch)."""
    others = [dg.AssetKey(["campaign", other, "message_outbox"]) for other in sorted(catalog.campaigns)]
    return [_results_asset(catalog, cid, partitions, others) for cid in sorted(catalog.campaigns)]


def _results_asset(
    catalog: Catalog, cid: str, partitions: dg.PartitionsDefinition, outboxes: list[dg.AssetKey]
) -> dg.AssetsDefinition:
    own = [dg.AssetKey(["campaign", cid, name]) for name in CAMPAIGN_OUTPUTS]
    deps: list[dg.AssetKey] = sorted(set(own) | set(outboxes), key=lambda k: k.to_user_string())

    @dg.asset(
        key=results_key(cid),
        ins={table: dg.AssetIn(source_key(table)) for table in RESULT_SOURCES},
        deps=deps,
        group_name=f"campaign_{cid}",
        partitions_def=partitions,
        kinds={"polars", "sql"},
        description=f"{catalog.campaigns[cid].name}: test vs control, money, A/B, funnel up to D → campaign_results.",
    )
    def results(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, **tables: pl.DataFrame
    ) -> dg.MaterializeResult:
        point = as_of(context, catalog.program)
        wh = warehouse.warehouse
        start = period_start(catalog, cid)
        frames = SourceFrames.from_tables(dict(tables))
        outcome = results_for(catalog, cid, wh, frames, start, point.date)
        table = outcome.table().with_columns(pl.lit(start).alias("period_start")).rename({"group": "group_name"})
        written = wh.replace("campaign_results", table, {"campaign_id": cid, "partition_date": point.date})
        groups = outcome.groups
        return dg.MaterializeResult(
            metadata={
                "results": dg.MetadataValue.md(results_markdown(outcome)),
                "groups": dg.MetadataValue.table(
                    records=[
                        dg.TableRecord({k: format_value(v) if v is not None else None for k, v in row.items()})
                        for row in groups.iter_rows(named=True)
                    ],
                    schema=dg.TableSchema(columns=[dg.TableColumn(name, "string") for name in GROUP_SCHEMA]),
                ),
                "incremental_revenue": dg.MetadataValue.text(
                    format_value(outcome.money.get("incremental_revenue")) or "n/a"
                ),
                "sample_ratio_mismatch": dg.MetadataValue.bool(outcome.sample_ratio.mismatch),
                "ab_winner": dg.MetadataValue.text(
                    (outcome.ab.winner or f"none yet: {outcome.ab.reason}")
                    if outcome.ab is not None
                    else "no A/B split"
                ),
                "dagster/row_count": dg.MetadataValue.int(written),
            }
        )

    return results
