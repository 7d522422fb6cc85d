"""Each campaign becomes five daily-partitioned assets under `campaign/<id>/`.

- `entrants`: who the trigger fired for on D, narrowed by audience, history and control groups
  (a stored frame), with a blocking check that holds everything back when the audience jumps;
- `triggered_customers`: the entrants written to the warehouse;
- `journey`: the chain of steps run for today's entrants and for those whose wait ends today; it
  depends on its own previous day, so backfills run in date order;
- `bonus_accruals` and `message_outbox`: what the journey's steps produced.

Each writing asset replaces its own rows for (campaign, date), and its activity-log stage, in one
transaction. Business logic is in `transforms.campaign_day`; this module only wires it.
"""

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from loyalty_assets.config.campaigns import Campaign, EventTrigger, FilterStep
from loyalty_assets.config.catalog import Catalog
from loyalty_assets.config.errors import DefinitionError
from loyalty_assets.config.filters import referenced_segments
from loyalty_assets.defs.features import FEATURES_KEY
from loyalty_assets.defs.partitions import as_of
from loyalty_assets.defs.resources import WarehouseResource
from loyalty_assets.defs.segments import segment_key
from loyalty_assets.defs.sources import source_key
from loyalty_assets.sources.frames import SourceFrames
from loyalty_assets.sources.schemas import SCHEMAS
from loyalty_assets.transforms.activity import (
    accrual_activity,
    entry_activity,
    journey_activity,
    message_activity,
)
from loyalty_assets.transforms.audience import masked_sample
from loyalty_assets.transforms.campaign_day import (
    audience_gate,
    campaign_accruals,
    campaign_entrants,
    campaign_journeys,
    campaign_messages,
    segment_actions,
)
from loyalty_assets.transforms.entry import ENTRANTS_SCHEMA
from loyalty_assets.transforms.journey import ACTION_SCHEMA
from loyalty_assets.warehouse.history import (
    own_accruals_before,
    read_history,
    read_members,
    read_pending_due,
    recent_messages,
)
from loyalty_assets.warehouse.warehouse import Warehouse, schema_of

SOURCE_INS = {table: dg.AssetIn(source_key(table)) for table in SCHEMAS}


def campaign_key(campaign_id: str, name: str) -> dg.AssetKey:
    return dg.AssetKey(["campaign", campaign_id, name])


def used_segments(campaign: Campaign, saved: set[str]) -> list[str]:
    """Saved segments whose members the campaign reads (audience, trigger, filter steps)."""
    wanted: set[str] = set()
    if campaign.audience is not None:
        if campaign.audience.segment:
            wanted.add(campaign.audience.segment)
        if campaign.audience.filter is not None:
            wanted |= referenced_segments(campaign.audience.filter)
    if isinstance(campaign.trigger, EventTrigger) and campaign.trigger.segment:
        wanted.add(campaign.trigger.segment)
    for step in campaign.all_steps():
        if isinstance(step, FilterStep):
            if step.segment:
                wanted.add(step.segment)
            if step.filter is not None:
                wanted |= referenced_segments(step.filter)
    return sorted(wanted & saved)


def write_stage(
    wh: Warehouse, campaign_id: str, day: date, stage: str, outputs: dict[str, pl.DataFrame], activity: pl.DataFrame
) -> int:
    """Replace a stage's output tables and its activity-log rows for (campaign, day) in one transaction.

    Returns the rows written to the first output table.
    """
    scope = {"campaign_id": campaign_id, "partition_date": day}
    with wh.transaction() as conn:
        written = [wh.replace(table, frame, scope, conn=conn) for table, frame in outputs.items()]
        wh.replace("activity_log", activity, {**scope, "stage": stage}, conn=conn)
    return written[0]


def build_campaign_assets(
    catalog: Catalog, partitions: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition | dg.AssetChecksDefinition]:
    defs: list[dg.AssetsDefinition | dg.AssetChecksDefinition] = []
    ordered = sorted(catalog.campaigns.values(), key=lambda c: (c.settings.priority, c.id))
    for index, campaign in enumerate(ordered):
        defs.extend(_campaign_assets(catalog, campaign, partitions, higher_priority=[c.id for c in ordered[:index]]))
    for error in catalog.errors:
        defs.append(_invalid_definition_asset(error, partitions))
    return defs


def _campaign_assets(
    catalog: Catalog, campaign: Campaign, partitions: dg.PartitionsDefinition, higher_priority: list[str]
) -> list[dg.AssetsDefinition | dg.AssetChecksDefinition]:
    program = catalog.program
    cid = campaign.id
    group = f"campaign_{cid}"
    segments_used = used_segments(campaign, set(catalog.segments))
    key = lambda name: campaign_key(cid, name)  # noqa: E731

    @dg.asset(
        key=key("entrants"),
        ins={**SOURCE_INS, "features": dg.AssetIn(FEATURES_KEY)},
        deps=[segment_key(s) for s in segments_used],
        group_name=group,
        partitions_def=partitions,
        kinds={"polars"},
        description=f"{campaign.name}: who enters on D (trigger, audience, re-entry, control groups, variant).",
    )
    def entrants(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        features: pl.DataFrame,
        **tables: pl.DataFrame,
    ) -> dg.Output[pl.DataFrame]:
        point = as_of(context, program)
        wh = warehouse.warehouse
        frames = SourceFrames.from_tables({**tables, "own_accruals": own_accruals_before(wh, point)})
        result = campaign_entrants(
            campaign,
            program=program,
            as_of=point,
            frames=frames,
            features=features,
            segments=catalog.segments,
            members_today=read_members(wh, segments_used, point, manual_ids=catalog.manual_segments),
            members_yesterday=read_members(wh, segments_used, point, days_back=1, manual_ids=catalog.manual_segments),
            history=read_history(wh, cid, point),
            manual_segments=catalog.manual_segments,
        )
        metadata: dict[str, object] = {k: dg.MetadataValue.int(v) for k, v in result.counts.items()}
        if result.decision is not None:
            metadata["ab_decision"] = dg.MetadataValue.json(
                {
                    "winner": result.decision.winner,
                    "rates": result.decision.rates,
                    "reason": result.decision.reason,
                }
            )
        metadata["sample_masked"] = dg.MetadataValue.json(masked_sample(result.entrants, features))
        metadata["dagster/row_count"] = dg.MetadataValue.int(result.entrants.height)
        return dg.Output(result.entrants, metadata=metadata)

    @dg.asset_check(
        asset=key("entrants"),
        name="audience_within_expected_range",
        blocking=True,
        partitions_def=partitions,
        description="Fail-closed: no outputs when today's entrants jump far above yesterday's.",
    )
    def audience_check(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, entrants: pl.DataFrame
    ) -> dg.AssetCheckResult:
        point = as_of(context, program)
        yesterday = warehouse.warehouse.read(
            "triggered_customers", {"campaign_id": cid, "partition_date": point.date - timedelta(days=1)}
        )
        gate = audience_gate(campaign.settings.gates, point.date, entrants.height, yesterday.height or None)
        return dg.AssetCheckResult(
            passed=gate.passed,
            description=gate.description,
            metadata={k: str(v) for k, v in gate.metadata.items()},
        )

    @dg.asset(
        key=key("triggered_customers"),
        ins={"entrants": dg.AssetIn(key("entrants"))},
        group_name=group,
        partitions_def=partitions,
        kinds={"sql"},
        description=f"{campaign.name}: D's entrants → triggered_customers (with is_control and variant).",
    )
    def triggered_customers(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, entrants: pl.DataFrame
    ) -> dg.MaterializeResult:
        point = as_of(context, program)
        wh = warehouse.warehouse
        written = write_stage(
            wh, cid, point.date, "triggered", {"triggered_customers": entrants}, entry_activity(cid, entrants)
        )
        return dg.MaterializeResult(metadata={"dagster/row_count": dg.MetadataValue.int(written)})

    @dg.asset(
        key=key("journey"),
        ins={"entrants": dg.AssetIn(key("entrants")), "features": dg.AssetIn(FEATURES_KEY)},
        deps=[
            key("triggered_customers"),
            dg.AssetDep(
                key("journey"),
                partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1),
            ),
        ],
        group_name=group,
        partitions_def=partitions,
        kinds={"polars", "sql"},
        description=f"{campaign.name}: the chain of steps for D (new entrants, waits ending on D) → journey_pending.",
    )
    def journey(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        entrants: pl.DataFrame,
        features: pl.DataFrame,
    ) -> dg.Output[pl.DataFrame]:
        point = as_of(context, program)
        wh = warehouse.warehouse
        pending_due = read_pending_due(wh, cid, point)
        day = campaign_journeys(
            campaign,
            entrants,
            as_of=point,
            features=features,
            members=read_members(wh, segments_used, point, manual_ids=catalog.manual_segments),
            pending_due=pending_due,
        )
        outputs = {
            "journey_pending": day.pending.rename({"at": "due_at"}),
            "manual_segment_events": segment_actions(campaign, day.actions),
        }
        write_stage(wh, cid, point.date, "journey", outputs, journey_activity(cid, day))
        return dg.Output(
            day.actions,
            metadata={
                **{k: dg.MetadataValue.int(v) for k, v in day.counts.items()},
                "resumed_from_earlier_days": dg.MetadataValue.int(pending_due.height),
                "actions": dg.MetadataValue.int(day.actions.height),
                "left_waiting": dg.MetadataValue.int(day.pending.height),
                "exits": dg.MetadataValue.json(dict(day.exits.group_by("reason").len().sort("reason").iter_rows())),
            },
        )

    @dg.asset(
        key=key("bonus_accruals"),
        ins={"journey": dg.AssetIn(key("journey"))},
        group_name=group,
        partitions_def=partitions,
        kinds={"sql"},
        description=f"{campaign.name}: accrual entries of D's accrue steps → bonus_accruals.",
    )
    def bonus_accruals(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, journey: pl.DataFrame
    ) -> dg.MaterializeResult:
        point = as_of(context, program)
        wh = warehouse.warehouse
        accruals = campaign_accruals(campaign, journey.cast(ACTION_SCHEMA))  # type: ignore[arg-type]
        written = write_stage(
            wh, cid, point.date, "accruals", {"bonus_accruals": accruals}, accrual_activity(cid, accruals)
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
        key=key("message_outbox"),
        ins={
            "journey": dg.AssetIn(key("journey")),
            "customers": dg.AssetIn(source_key("customers")),
            "categories": dg.AssetIn(source_key("categories")),
            "favourite_categories": dg.AssetIn(source_key("favourite_categories")),
            # favourite-category cashback earned this period, for reminder templates (transforms.cashback)
            "checks": dg.AssetIn(source_key("checks")),
            "check_items": dg.AssetIn(source_key("check_items")),
        },
        deps=[key("bonus_accruals"), *(campaign_key(other, "message_outbox") for other in higher_priority)],
        group_name=group,
        partitions_def=partitions,
        kinds={"polars", "sql"},
        description=f"{campaign.name}: rendered messages of D's send steps → message_outbox.",
    )
    def message_outbox(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        journey: pl.DataFrame,
        customers: pl.DataFrame,
        categories: pl.DataFrame,
        favourite_categories: pl.DataFrame,
        checks: pl.DataFrame,
        check_items: pl.DataFrame,
    ) -> dg.MaterializeResult:
        point = as_of(context, program)
        wh = warehouse.warehouse
        actions = journey.cast(ACTION_SCHEMA)  # type: ignore[arg-type]
        occasions = actions.get_column("occasion").unique().to_list()
        accruals = wh.read("bonus_accruals", {"campaign_id": cid, "occasion": occasions}) if occasions else None
        cap = program.frequency_cap
        recent = recent_messages(wh, cid, point, cap.days) if cap is not None else None
        frames = SourceFrames.from_tables(
            {
                "customers": customers,
                "categories": categories,
                "favourite_categories": favourite_categories,
                "checks": checks,
                "check_items": check_items,
            }
        )
        batch = campaign_messages(
            campaign,
            actions,
            program=program,
            as_of=point,
            frames=frames,
            accruals=accruals if accruals is not None else pl.DataFrame(schema=wh_schema(wh, "bonus_accruals")),
            renderer=catalog.renderer(),
            recent_messages=recent,
        )
        activity = message_activity(cid, batch.outbox, batch.skipped)
        written = write_stage(wh, cid, point.date, "messages", {"message_outbox": batch.outbox}, activity)
        per_channel = batch.outbox.group_by("channel").len().sort("channel")
        per_variant = batch.outbox.group_by("variant").len().sort("variant")
        skipped = batch.skipped.group_by("reason").len().sort("reason")
        return dg.MaterializeResult(
            metadata={
                "messages": dg.MetadataValue.int(written),
                "per_channel": dg.MetadataValue.json(dict(per_channel.iter_rows())),
                "per_variant": dg.MetadataValue.json({str(k): v for k, v in per_variant.iter_rows()}),
                "skipped_per_reason": dg.MetadataValue.json(dict(skipped.iter_rows())),
                "batches": dg.MetadataValue.int(int(batch.outbox.get_column("batch_no").max() or 0)),
                "dagster/row_count": dg.MetadataValue.int(written),
            }
        )

    return [entrants, audience_check, triggered_customers, journey, bonus_accruals, message_outbox]


def wh_schema(wh: Warehouse, table: str) -> dict[str, pl.DataType]:
    return schema_of(wh.table(table))


def _invalid_definition_asset(error: DefinitionError, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """A broken file shows up in the UI as an asset that fails with the file and field at fault."""
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


__all__ = ["ENTRANTS_SCHEMA", "build_campaign_assets", "campaign_key"]
