"""The shared per-customer features asset: computed once per day for every segment and campaign."""

import dagster as dg
import polars as pl

from loyalty_assets.config.catalog import Catalog
from loyalty_assets.config.filters import Filter
from loyalty_assets.defs.partitions import as_of
from loyalty_assets.defs.resources import WarehouseResource
from loyalty_assets.defs.sources import source_key
from loyalty_assets.sources.frames import SourceFrames
from loyalty_assets.sources.schemas import SCHEMAS
from loyalty_assets.transforms.features import compute_features, required_features
from loyalty_assets.warehouse.history import own_accruals_before

FEATURES_KEY = dg.AssetKey(["customer_features"])


def catalog_filters(catalog: Catalog) -> list[Filter]:
    """Every filter the catalog uses: saved segments and campaigns' inline audiences."""
    filters = [s.filter for s in catalog.segments.values()]
    filters += [c.audience.filter for c in catalog.campaigns.values() if c.audience and c.audience.filter]
    return filters


def build_features_asset(catalog: Catalog, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    specs = required_features(catalog_filters(catalog))

    @dg.asset(
        key=FEATURES_KEY,
        ins={table: dg.AssetIn(source_key(table)) for table in SCHEMAS},
        group_name="segments",
        partitions_def=partitions,
        kinds={"polars"},
        description=(
            "One row per customer visible at D with the profile and every parameterised feature the "
            f"catalog's filters use ({len(specs)} specs), shared by all segments and campaigns."
        ),
    )
    def customer_features(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, **tables: pl.DataFrame
    ) -> dg.Output[pl.DataFrame]:
        point = as_of(context, catalog.program)
        frames = SourceFrames.from_tables({**tables, "own_accruals": own_accruals_before(warehouse.warehouse, point)})
        features = compute_features(frames, point, specs)
        return dg.Output(
            features,
            metadata={
                "dagster/row_count": dg.MetadataValue.int(features.height),
                "feature_columns": dg.MetadataValue.int(features.width),
                "specs": dg.MetadataValue.json(sorted(s.column for s in specs)),
            },
        )

    return customer_features
