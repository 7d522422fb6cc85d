"""One asset per source table: read, type, validate, quarantine, and cut at the run's cutoff.

Checks and their lines are one multi-asset because a line is visible exactly when its check is.
Every other customer table depends on `customers` for the unknown-customer rule.
"""

from datetime import UTC, date, datetime

import dagster as dg
import polars as pl

from loyalty_assets.config.campaigns import Program
from loyalty_assets.defs.metadata import OWNERS, column_schema, counts_table, table_metadata, tags
from loyalty_assets.defs.partitions import as_of
from loyalty_assets.defs.resources import SourceResource, WarehouseResource
from loyalty_assets.sources.schemas import SCHEMAS
from loyalty_assets.sources.snapshot import CUSTOMER_TABLES, validate_checks
from loyalty_assets.sources.validation import ValidationResult, quarantine_summary, validate

GROUP = "sources"


def source_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["source", table])


def _record(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, table: str, result: ValidationResult
) -> dict[str, dg.MetadataValue]:
    """Store the quarantine (replacing this table's rows for the date) and describe the split."""
    warehouse.warehouse.replace(
        "source_quarantine",
        result.quarantine,
        {"source_table": table, "partition_date": as_of_date(context)},
    )
    by_rule = quarantine_summary(result.quarantine)
    if by_rule:
        context.log.warning(f"{table}: {result.counts['rows_quarantined']} rows quarantined: {by_rule}")
    metadata: dict[str, dg.MetadataValue] = {
        **{k: dg.MetadataValue.int(v) for k, v in result.counts.items()},
        "quarantined_by_rule": counts_table(by_rule, key="rule (column)", value="rows"),
        "dagster/row_count": dg.MetadataValue.int(result.kept.height),
        **column_schema(result.kept.schema),  # type: ignore[dict-item]
    }
    if result.quarantine.height:  # masked: the offending row itself (`row`) is left out
        metadata.update(table_metadata("quarantine_sample", result.quarantine, sample=5))
    return metadata


def as_of_date(context: dg.AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


def build_source_assets(program: Program, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """The nine source assets of the contract."""

    @dg.multi_asset(
        outs={
            "checks": dg.AssetOut(
                key=source_key("checks"),
                kinds={"polars"},
                description="Checks up to the end of D.",
                owners=OWNERS,
                tags=tags("source"),
            ),
            "check_items": dg.AssetOut(
                key=source_key("check_items"),
                kinds={"polars"},
                description="Lines of the visible checks.",
                owners=OWNERS,
                tags=tags("source"),
            ),
        },
        ins={"customers": dg.AssetIn(source_key("customers"))},
        group_name=GROUP,
        partitions_def=partitions,
    )
    def checks(
        context: dg.AssetExecutionContext,
        sources: SourceResource,
        warehouse: WarehouseResource,
        customers: pl.DataFrame,
    ) -> tuple[dg.Output[pl.DataFrame], dg.Output[pl.DataFrame]]:
        point = as_of(context, program)
        checks_result, items_result = validate_checks(
            lambda table: sources.read(table, point.cutoff),
            point,
            now=datetime.now(UTC),
            known_customers=customers.get_column("customer_id"),
        )
        return (
            dg.Output(
                checks_result.kept,
                output_name="checks",
                metadata=_record(context, warehouse, "checks", checks_result),
            ),
            dg.Output(
                items_result.kept,
                output_name="check_items",
                metadata=_record(context, warehouse, "check_items", items_result),
            ),
        )

    return [
        _standalone_table_asset("customers", "Customers registered by the end of D", program, partitions),
        _standalone_table_asset("categories", "The category tree (no history)", program, partitions),
        checks,
        *(_customer_table_asset(t, program, partitions) for t in CUSTOMER_TABLES),
    ]


def _standalone_table_asset(
    table: str, description: str, program: Program, partitions: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    """A source table validated on its own (no other table's keys to check against)."""

    @dg.asset(
        key=source_key(table),
        group_name=GROUP,
        partitions_def=partitions,
        kinds={"polars"},
        description=f"{description}, validated (quarantine: source_quarantine).",
        owners=OWNERS,
        tags=tags("source"),
    )
    def _asset(
        context: dg.AssetExecutionContext, sources: SourceResource, warehouse: WarehouseResource
    ) -> dg.Output[pl.DataFrame]:
        point = as_of(context, program)
        result = validate(SCHEMAS[table], sources.read(table, point.cutoff), point, now=datetime.now(UTC))
        return dg.Output(result.kept, metadata=_record(context, warehouse, table, result))

    return _asset


def _customer_table_asset(table: str, program: Program, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=source_key(table),
        ins={"customers": dg.AssetIn(source_key("customers"))},
        group_name=GROUP,
        partitions_def=partitions,
        kinds={"polars"},
        description=f"{table} as of the end of D, validated (quarantine: source_quarantine).",
        owners=OWNERS,
        tags=tags("source"),
    )
    def _asset(
        context: dg.AssetExecutionContext,
        sources: SourceResource,
        warehouse: WarehouseResource,
        customers: pl.DataFrame,
    ) -> dg.Output[pl.DataFrame]:
        point = as_of(context, program)
        result = validate(
            SCHEMAS[table],
            sources.read(table, point.cutoff),
            point,
            now=datetime.now(UTC),
            known_customers=customers.get_column("customer_id"),
        )
        return dg.Output(result.kept, metadata=_record(context, warehouse, table, result))

    return _asset
