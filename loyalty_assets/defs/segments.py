"""Saved segments as daily-partitioned assets writing `segment_members` and `target_audiences`."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl

from loyalty_assets.config.catalog import Catalog
from loyalty_assets.defs.features import FEATURES_KEY
from loyalty_assets.defs.partitions import as_of
from loyalty_assets.defs.resources import WarehouseResource
from loyalty_assets.transforms.audience import closure, manual_members, manual_references, masked_sample
from loyalty_assets.transforms.segments import evaluate_segments
from loyalty_assets.warehouse.audiences import export_audiences
from loyalty_assets.warehouse.history import read_members


def segment_key(segment_id: str) -> dg.AssetKey:
    return dg.AssetKey(["segment", segment_id, "members"])


def build_segment_assets(catalog: Catalog, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    return [_segment_asset(catalog, sid, partitions) for sid in sorted(catalog.segments)]


def _segment_asset(catalog: Catalog, segment_id: str, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    definition = catalog.segments[segment_id]
    needed = closure(catalog.segments, segment_id)

    @dg.asset(
        key=segment_key(segment_id),
        ins={"features": dg.AssetIn(FEATURES_KEY)},
        deps=[segment_key(s) for s in sorted(needed) if s != segment_id],
        group_name="segments",
        partitions_def=partitions,
        kinds={"polars"},
        description=f"{definition.name}. Members on D → segment_members"
        + (f"; exported as target audiences {list(definition.audiences)}." if definition.audiences else "."),
    )
    def _asset(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, features: pl.DataFrame
    ) -> dg.Output[pl.DataFrame]:
        point = as_of(context, catalog.program)
        wh = warehouse.warehouse
        # Manual segments (kept by campaign steps) a saved segment reads: members added before D began.
        manual = manual_members(needed, read_members(wh, [], point, manual_ids=manual_references(needed)))
        members = evaluate_segments(needed, features, manual)[segment_id]
        previous = wh.read(
            "segment_members", {"segment_id": segment_id, "partition_date": point.date - timedelta(days=1)}
        ).select("customer_id")
        written = wh.replace("segment_members", members, {"segment_id": segment_id, "partition_date": point.date})
        exports = export_audiences(
            wh,
            members,
            labels=definition.audiences,
            segment_id=segment_id,
            partition_date=point.date,
            exported_at=datetime.now(UTC),
        )
        sample = masked_sample(members, features)
        metadata = {
            "members": dg.MetadataValue.int(written),
            "entered": dg.MetadataValue.int(members.join(previous, on="customer_id", how="anti").height),
            "left": dg.MetadataValue.int(previous.join(members, on="customer_id", how="anti").height),
            "previous_day_known": dg.MetadataValue.bool(previous.height > 0),
            "target_audiences": dg.MetadataValue.json(exports),
            "sample_masked": dg.MetadataValue.json(sample),
            "dagster/row_count": dg.MetadataValue.int(written),
        }
        return dg.Output(members, metadata=metadata)

    return _asset
