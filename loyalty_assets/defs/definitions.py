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


#: The values of `LOYALTY_EXECUTOR`, and the package each needs beyond dagster (extra `cluster`).
EXECUTORS = {"in_process": None, "multiprocess": None, "k8s": "dagster-k8s", "celery": "dagster-celery"}


class ExecutorError(ValueError):
    """`LOYALTY_EXECUTOR` names no executor, or one whose package is not installed."""


#: What a step process of the multiprocess executor starts with: forked from a server that imported
#: these once, a step skips ~3 s of imports (1M customers, 4 shards: the run 102 → 80 s wall).
PRELOADED = ["polars", "dagster", "loyalty_assets.defs.definitions"]


def _step_processes(config: dict[str, int]) -> dict[str, object]:
    return {
        "max_concurrent": config["max_concurrent"],
        "start_method": {"forkserver": {"preload_modules": PRELOADED}},
    }


#: A process per step, as many at once as `max_concurrent` (0: one per core), forked from a
#: forkserver that preloaded `PRELOADED`.
STEP_PROCESSES = dg.multiprocess_executor.configured(
    _step_processes,
    name="multiprocess",
    config_schema={"max_concurrent": dg.Field(int, default_value=0, is_required=False)},
    description="A process per step (forked from a server that preloaded polars, dagster and the definitions).",
)


def run_executor(shards: int, name: str | None = None) -> dg.ExecutorDefinition:
    """How a run's steps execute. By default, one process for the whole run when the day is one step
    (orchestration, not compute, dominated a small day's time), and with customer shards a process
    per step (`STEP_PROCESSES`: the launchpad's `execution: config: max_concurrent: 2` sets how many
    at once). `name` (from `LOYALTY_EXECUTOR`) picks one: `in_process` (the shards in turn),
    `multiprocess`, `k8s` (a Kubernetes job per step, `dagster-k8s`), `celery` (Celery workers,
    `dagster-celery`); run configurations for the last two in `loyalty_assets/deploy/`."""
    if name is None:
        return dg.in_process_executor if shards == 1 else STEP_PROCESSES
    if name not in EXECUTORS:
        raise ExecutorError(f"LOYALTY_EXECUTOR={name!r}: expected one of {', '.join(EXECUTORS)}")
    try:
        if name == "k8s":
            from dagster_k8s import k8s_job_executor

            return k8s_job_executor
        if name == "celery":
            from dagster_celery import celery_executor

            return celery_executor
    except ImportError as exc:
        raise ExecutorError(
            f"LOYALTY_EXECUTOR={name}: install {EXECUTORS[name]} (pip install 'loyalty_assets[cluster]')"
        ) from exc
    return dg.in_process_executor if name == "in_process" else STEP_PROCESSES


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
        executor=run_executor(catalog.program.shards, settings.executor),
    )
