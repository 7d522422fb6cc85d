"""Each campaign's results as a daily-partitioned asset `campaign/<id>/results` (wiring only).

The partition D holds the results of the campaign's entrants from its start up to D, on the data
visible at D's cutoff, so a re-run or a backfill of D gives the same figures. They are written to
`campaign_results` (replacing that campaign and date) and shown as Markdown and table metadata.
The figures are computed by `transforms.results` through `reporting.inputs.results_for`, the same
call `loyalty report` makes. The event tables come in as the source store's lazy scans as of D:
each campaign loads only the checks its windows and touches reach and the events of the messages it
reads, so the cost follows the entrants since the campaign's start, not the length of history.
"""

from collections.abc import Iterator
from datetime import date

import dagster as dg
import polars as pl

from loyalty_assets.config.catalog import Catalog
from loyalty_assets.defs.campaigns import CAMPAIGN_OUTPUTS, campaign_key
from loyalty_assets.defs.partitions import as_of
from loyalty_assets.defs.resources import WarehouseResource
from loyalty_assets.defs.sources import source_key
from loyalty_assets.reporting.inputs import (
    ResultSources,
    all_message_facts,
    period_start,
    results_for,
    touch_window_start,
)
from loyalty_assets.reporting.markdown import results_markdown
from loyalty_assets.transforms.results import GROUP_SCHEMA, format_value, reachable_events
from loyalty_assets.warehouse.warehouse import Warehouse

RESULT_SOURCES = ("customers", "checks", "communications", "bonus_transactions")


def results_key(campaign_id: str) -> dg.AssetKey:
    return dg.AssetKey(["campaign", campaign_id, "results"])


def build_results_assets(catalog: Catalog, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """One step for every campaign's results asset (a step per campaign would cost a step's bookkeeping each).

    Each `campaign/<id>/results` depends on its campaign's outputs and on every campaign's outbox
    (last touch across campaigns).
    """
    if not catalog.campaigns:
        return []
    outboxes = [dg.AssetKey(["campaign", other, "message_outbox"]) for other in sorted(catalog.campaigns)]
    specs = []
    for cid in sorted(catalog.campaigns):
        own = [campaign_key(cid, name) for name in CAMPAIGN_OUTPUTS]
        sources = [source_key(table) for table in RESULT_SOURCES]
        deps = sorted(set(own) | set(outboxes) | set(sources), key=lambda k: k.to_user_string())
        specs.append(
            dg.AssetSpec(
                results_key(cid),
                deps=deps,
                group_name=f"campaign_{cid}",
                kinds={"polars", "sql"},
                description=f"{catalog.campaigns[cid].name}: test vs control, money, A/B, funnel up to D → "
                "campaign_results.",
            )
        )

    @dg.multi_asset(
        name="campaign_results",
        specs=specs,
        ins={table: dg.AssetIn(source_key(table)) for table in RESULT_SOURCES},  # typed by the annotations below
        partitions_def=partitions,
    )
    def campaign_results(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        customers: pl.DataFrame,
        checks: pl.LazyFrame,  # the store's scans as of D: each campaign loads what its entrants reach
        communications: pl.LazyFrame,
        bonus_transactions: pl.LazyFrame,
    ) -> Iterator[dg.MaterializeResult]:
        point = as_of(context, catalog.program)
        wh = warehouse.warehouse
        earliest = min(touch_window_start(catalog, period_start(catalog, cid)) for cid in catalog.campaigns)
        messages = all_message_facts(catalog, wh, earliest, point.date)  # read once for every campaign
        # loaded once for every campaign: the events of all of them's messages, the redemptions
        events = reachable_events(communications, [messages])
        redemptions = bonus_transactions.filter(pl.col("kind") == "redemption").select("kind", "source", "amount")
        frames = ResultSources(customers, checks, events.lazy(), redemptions.collect().lazy())
        for cid in sorted(catalog.campaigns):
            yield _campaign_results(catalog, cid, wh, frames, point.date, messages)

    return [campaign_results]


def _campaign_results(
    catalog: Catalog, cid: str, wh: Warehouse, frames: ResultSources, day: date, messages: pl.DataFrame
) -> dg.MaterializeResult:
    start = period_start(catalog, cid)
    outcome = results_for(catalog, cid, wh, frames, start, day, messages)
    table = outcome.table().with_columns(pl.lit(start).alias("period_start")).rename({"group": "group_name"})
    written = wh.replace("campaign_results", table, {"campaign_id": cid, "partition_date": day})
    groups = outcome.groups
    return dg.MaterializeResult(
        asset_key=results_key(cid),
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
                (outcome.ab.winner or f"none yet: {outcome.ab.reason}") if outcome.ab is not None else "no A/B split"
            ),
            "dagster/row_count": dg.MetadataValue.int(written),
        },
    )
