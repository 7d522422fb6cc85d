"""Assemble the code location from the catalog and the environment; no business logic here."""

import warnings

import dagster as dg

from loyalty_assets.config.catalog import load_catalog
from loyalty_assets.defs.campaigns import invalid_definition_assets
from loyalty_assets.defs.control_groups import build_global_control_asset
from loyalty_assets.defs.day import STEP_IO, STEP_IO_DIR, build_day_asset
from loyalty_assets.defs.ledger import build_ledger_asset
from loyalty_assets.defs.partitions import daily_partitions
from loyalty_assets.defs.resources import (
    SOURCE_IO_MANAGER,
    SOURCE_STORE_DIR,
    ParquetIOManager,
    SourceResource,
    SourceStoreIOManager,
    WarehouseResource,
)
from loyalty_assets.defs.results import build_results_assets
from loyalty_assets.defs.schedules import closing_schedule, daily_job, daily_schedule, sources_job
from loyalty_assets.defs.sources import build_source_assets
from loyalty_assets.defs.summary import build_summary_asset
from loyalty_assets.defs.warehouse_io import WAREHOUSE_IO, WarehouseTableIOManager
from loyalty_assets.settings import Settings

# Partitioned asset checks are "preview" in Dagster 1.13; without them a check of a daily asset
# would read another day's data (see STYLE.md), so we use them knowingly.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")


def run_executor(shards: int) -> dg.ExecutorDefinition:
    """One process for the whole run when the day is one step (orchestration, not compute, dominated
    a small day's time); with customer shards, a process per step, as many at once as there are
    cores (the launchpad's `execution: config: multiprocess: max_concurrent` sets another number,
    `in_process:` runs the shards in turn). Production swaps in `dagster-k8s` or `dagster-celery`
    (README "Customer shards")."""
    if shards == 1:
        return dg.in_process_executor
    return dg.multi_or_in_process_executor


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """The Dagster definitions for `settings` (default: from the environment variables)."""
    settings = settings or Settings.from_env()
    catalog = load_catalog(settings.campaigns_dir)
    partitions = daily_partitions(catalog.program)
    job = daily_job()
    assets = [
        *build_source_assets(catalog.program, partitions, settings.storage_dir / SOURCE_STORE_DIR),
        build_day_asset(catalog, partitions, settings.storage_dir),
        *build_global_control_asset(catalog.program, partitions),
        *invalid_definition_assets(catalog, partitions),
        build_ledger_asset(catalog, partitions),
        *build_results_assets(catalog, partitions),
    ]
    return dg.Definitions(
        assets=[*assets, build_summary_asset(catalog, partitions, assets)],
        jobs=[job, sources_job()],
        schedules=[daily_schedule(job, catalog.program), closing_schedule(job, catalog.program)],
        resources={
            "warehouse": WarehouseResource(url=settings.database_url),
            "sources": SourceResource(data_dir=str(settings.data_dir), database_url=settings.source_database_url),
            "io_manager": ParquetIOManager(base_dir=str(settings.storage_dir)),
            WAREHOUSE_IO: WarehouseTableIOManager(url=settings.database_url),
            STEP_IO: dg.FilesystemIOManager(base_dir=str(settings.storage_dir / STEP_IO_DIR)),
            SOURCE_IO_MANAGER: SourceStoreIOManager(
                base_dir=str(settings.storage_dir / SOURCE_STORE_DIR), program_tz=catalog.program.timezone
            ),
        },
        executor=run_executor(catalog.program.shards),
    )
