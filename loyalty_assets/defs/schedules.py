"""The daily job and its schedule."""

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from loyalty_assets.config.campaigns import Program

DAILY_JOB = "daily_loyalty"


def daily_job() -> UnresolvedAssetJobDefinition:
    """Every asset (sources → features → segments → campaigns) for one date."""
    return dg.define_asset_job(
        DAILY_JOB,
        selection=dg.AssetSelection.all() - dg.AssetSelection.groups("invalid_definitions"),
        description="The whole daily pipeline for one program-local date.",
    )


def sources_job() -> UnresolvedAssetJobDefinition:
    """Ingestion and validation only: to look at quarantine before campaigns run."""
    return dg.define_asset_job("ingest_sources", selection=dg.AssetSelection.groups("sources"))


def daily_schedule(job: UnresolvedAssetJobDefinition, program: Program) -> dg.ScheduleDefinition:
    """Materialise today's partition at `daily_run_at` program time (messages planned for later today)."""
    return dg.build_schedule_from_partitioned_job(
        job,
        hour_of_day=program.daily_run_at.hour,
        minute_of_hour=program.daily_run_at.minute,
        name="daily_loyalty_schedule",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
