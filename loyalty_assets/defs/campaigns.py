"""Each campaign becomes three daily-partitioned assets under `campaign/<id>/`.

- `triggered_customers`: who the trigger fired for, narrowed by audience, history and control group;
- `bonus_accruals`: the accrual entries for them;
- `message_outbox`: the rendered messages (and, in the activity log, who got none and why).

Each asset replaces its own rows for (campaign, date) and its activity-log stage in one transaction.
Downstream assets read their inputs back from the warehouse, so any one of them can be re-run alone.
"""

from datetime import date

import dagster as dg
import polars as pl

from loyalty_assets.config.campaigns import Campaign
from loyalty_assets.config.catalog import Catalog
from loyalty_assets.config.errors import DefinitionError
from loyalty_assets.defs.features import FEATURES_KEY
from loyalty_assets.defs.partitions import as_of
from loyalty_assets.defs.resources import WarehouseResource
from loyalty_assets.defs.segments import segment_key
from loyalty_assets.defs.sources import source_key
from loyalty_assets.sources.frames import SourceFrames
from loyalty_assets.transforms.accruals import build_accruals
from loyalty_assets.transforms.activity import accrual_activity, entry_activity, message_activity
from loyalty_assets.transforms.audience import audience_ids, masked_sample
from loyalty_assets.transforms.entry import ENTRANTS_SCHEMA, select_entrants
from loyalty_assets.transforms.messages import build_messages
from loyalty_assets.transforms.triggers import fire


def campaign_key(campaign_id: str, name: str) -> dg.AssetKey:
    return dg.AssetKey(["campaign", campaign_id, name])


def _group(campaign_id: str) -> str:
    return f"campaign_{campaign_id}"


def read_entrants(warehouse: WarehouseResource, campaign_id: str, day: date) -> pl.DataFrame:
    rows = warehouse.warehouse.read(
        "triggered_customers", {"campaign_id": campaign_id, "partition_date": day}
    )
    return rows.select(list(ENTRANTS_SCHEMA)).sort("customer_id")


def build_campaign_assets(catalog: Catalog, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    assets: list[dg.AssetsDefinition] = []
    for campaign_id in sorted(catalog.campaigns):
        assets.extend(_campaign_assets(catalog, catalog.campaigns[campaign_id], partitions))
    for error in catalog.errors:
        assets.append(_invalid_definition_asset(error, partitions))
    return assets


def _campaign_assets(
    catalog: Catalog, campaign: Campaign, partitions: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition]:
    program = catalog.program
    cid = campaign.id
    audience = campaign.audience
    segment_deps = [segment_key(audience.segment)] if audience is not None and audience.segment else []

    @dg.asset(
        key=campaign_key(cid, "triggered_customers"),
        ins={
            "customers": dg.AssetIn(source_key("customers")),
            "checks": dg.AssetIn(source_key("checks")),
            "customer_attributes": dg.AssetIn(source_key("customer_attributes")),
            "features": dg.AssetIn(FEATURES_KEY),
        },
        deps=segment_deps,
        group_name=_group(cid),
        partitions_def=partitions,
        kinds={"polars", "sql"},
        description=f"{campaign.name}: customers the trigger fired for on D → triggered_customers.",
    )
    def triggered_customers(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        customers: pl.DataFrame,
        checks: pl.DataFrame,
        customer_attributes: pl.DataFrame,
        features: pl.DataFrame,
    ) -> dg.MaterializeResult:
        point = as_of(context, program)
        wh = warehouse.warehouse
        if campaign.is_live_on(point.date):
            frames = SourceFrames.from_tables(
                {"customers": customers, "checks": checks, "customer_attributes": customer_attributes}
            )
            fired = fire(campaign.trigger, frames, point)
            segment_members = (
                wh.read("segment_members", {"segment_id": audience.segment, "partition_date": point.date})
                if audience is not None and audience.segment
                else None
            )
            members = audience_ids(campaign, features, segment_members, catalog.segments)
            history = wh.read("triggered_customers", {"campaign_id": cid}).select(
                "customer_id", "occasion", "partition_date"
            )
            entrants, counts = select_entrants(
                campaign, fired, run_date=point.date, audience=members, history=history
            )
        else:
            entrants, counts = pl.DataFrame(schema=ENTRANTS_SCHEMA), {"not_live": 1}
        scope = {"campaign_id": cid, "partition_date": point.date}
        with wh.transaction() as conn:
            written = wh.replace("triggered_customers", entrants, scope, conn=conn)
            wh.replace(
                "activity_log", entry_activity(cid, entrants), {**scope, "stage": "triggered"}, conn=conn
            )
        return dg.MaterializeResult(
            metadata={
                **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
                "live": dg.MetadataValue.bool(campaign.is_live_on(point.date)),
                "sample_masked": dg.MetadataValue.json(masked_sample(entrants, features)),
                "dagster/row_count": dg.MetadataValue.int(written),
            }
        )

    @dg.asset(
        key=campaign_key(cid, "bonus_accruals"),
        deps=[campaign_key(cid, "triggered_customers")],
        group_name=_group(cid),
        partitions_def=partitions,
        kinds={"polars", "sql"},
        description=f"{campaign.name}: bonus accrual entries for D's entrants → bonus_accruals.",
    )
    def bonus_accruals(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        point = as_of(context, program)
        wh = warehouse.warehouse
        accruals = build_accruals(campaign, read_entrants(warehouse, cid, point.date))
        scope = {"campaign_id": cid, "partition_date": point.date}
        with wh.transaction() as conn:
            written = wh.replace("bonus_accruals", accruals, scope, conn=conn)
            wh.replace(
                "activity_log", accrual_activity(cid, accruals), {**scope, "stage": "accruals"}, conn=conn
            )
        total = accruals.get_column("amount").sum() if written else 0
        return dg.MaterializeResult(
            metadata={
                "accruals": dg.MetadataValue.int(written),
                "accrued_total": dg.MetadataValue.text(str(total)),
                "dagster/row_count": dg.MetadataValue.int(written),
            }
        )

    @dg.asset(
        key=campaign_key(cid, "message_outbox"),
        ins={"customers": dg.AssetIn(source_key("customers"))},
        deps=[campaign_key(cid, "bonus_accruals")],
        group_name=_group(cid),
        partitions_def=partitions,
        kinds={"polars", "sql"},
        description=f"{campaign.name}: rendered messages for D's entrants → message_outbox.",
    )
    def message_outbox(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, customers: pl.DataFrame
    ) -> dg.MaterializeResult:
        point = as_of(context, program)
        wh = warehouse.warehouse
        scope = {"campaign_id": cid, "partition_date": point.date}
        entrants = read_entrants(warehouse, cid, point.date)
        accruals = wh.read("bonus_accruals", scope)
        batch = build_messages(campaign, entrants, accruals, customers, catalog.renderer(), point)
        with wh.transaction() as conn:
            written = wh.replace("message_outbox", batch.outbox, scope, conn=conn)
            wh.replace(
                "activity_log",
                message_activity(cid, batch.outbox, batch.skipped),
                {**scope, "stage": "messages"},
                conn=conn,
            )
        per_channel = batch.outbox.group_by("channel").len().sort("channel")
        skipped = batch.skipped.group_by("reason").len().sort("reason")
        return dg.MaterializeResult(
            metadata={
                "messages": dg.MetadataValue.int(written),
                "per_channel": dg.MetadataValue.json(dict(per_channel.iter_rows())),
                "skipped_per_reason": dg.MetadataValue.json(dict(skipped.iter_rows())),
                "batches": dg.MetadataValue.int(int(batch.outbox.get_column("batch_no").max() or 0)),
                "dagster/row_count": dg.MetadataValue.int(written),
            }
        )

    return [triggered_customers, bonus_accruals, message_outbox]


def _invalid_definition_asset(
    error: DefinitionError, partitions: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    """A broken file shows up in the UI as an asset that fails with the file and field at fault."""
    from pathlib import Path

    stem = Path(error.file).stem.replace("-", "_").lower() or "unnamed"
    kind = Path(error.file).parent.name or "catalog"

    @dg.asset(
        key=dg.AssetKey(["invalid_definition", kind, stem]),
        group_name="invalid_definitions",
        partitions_def=partitions,
        description=f"INVALID: {error}",
    )
    def _asset() -> None:
        raise dg.Failure(description=str(error), metadata={"file": error.file, "field": error.field})

    return _asset
