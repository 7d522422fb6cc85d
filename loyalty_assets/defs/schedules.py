"""The daily job and its schedule."""

from datetime import timedelta

import dagster as dg
from dagster._core.definitions.partitions.partitioned_schedule import UnresolvedPartitionedAssetScheduleDefinition
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from loyalty_assets.config.campaigns import Program

DAILY_JOB = "daily_loyalty"
#: Tags on the runs the schedules launch (filterable in the UI's run list).
SCHEDULE_TAGS = {"launched_by": "schedule", "pipeline": "loyalty"}


def _default_status(program: Program) -> dg.DefaultScheduleStatus:
    """STOPPED unless `program.yaml` sets `schedules_running: true` (see `Program.schedules_running`)."""
    return dg.DefaultScheduleStatus.RUNNING if program.schedules_running else dg.DefaultScheduleStatus.STOPPED


def daily_job() -> UnresolvedAssetJobDefinition:
    """Every asset (sources → features → segments → campaigns) for one date."""
    return dg.define_asset_job(
        DAILY_JOB,
        selection=dg.AssetSelection.all() - dg.AssetSelection.groups("invalid_definitions"),
        description="The whole daily pipeline for one program-local date.",
        tags={"pipeline": "loyalty"},
    )


def sources_job() -> UnresolvedAssetJobDefinition:
    """Ingestion and validation only: to look at quarantine before campaigns run."""
    return dg.define_asset_job(
        "ingest_sources",
        selection=dg.AssetSelection.groups("sources"),
        description="Sources and quarantine only: to look at bad rows before campaigns run.",
        tags={"pipeline": "loyalty"},
    )


def daily_schedule(
    job: UnresolvedAssetJobDefinition, program: Program
) -> dg.ScheduleDefinition | UnresolvedPartitionedAssetScheduleDefinition:
    """Materialise today's partition at `daily_run_at` program time (messages planned for later today)."""
    return dg.build_schedule_from_partitioned_job(
        job,
        hour_of_day=program.daily_run_at.hour,
        minute_of_hour=program.daily_run_at.minute,
        name="daily_loyalty_schedule",
        default_status=_default_status(program),
        description=f"Today's partition at {program.daily_run_at:%H:%M} {program.timezone}.",
        tags=SCHEDULE_TAGS,
    )


def closing_schedule(job: UnresolvedAssetJobDefinition, program: Program) -> dg.ScheduleDefinition:
    """Re-run yesterday's partition after midnight, now that its day is complete.

    The morning run for D sees D only partly (checks of D arrive during D); this run makes D's
    final state equal what a backfill of D produces. Re-running is idempotent: deterministic ids,
    and messages already dispatched keep their ids.
    """

    @dg.schedule(
        name="daily_loyalty_closing_schedule",
        job=job,
        cron_schedule=f"{program.closing_run_at.minute} {program.closing_run_at.hour} * * *",
        execution_timezone=program.timezone,
        default_status=_default_status(program),
        description=f"Yesterday's partition again at {program.closing_run_at:%H:%M} {program.timezone}, once complete.",
        tags=SCHEDULE_TAGS,
    )
    def _closing(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        yesterday = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
        return dg.RunRequest(run_key=f"closing-{yesterday}", partition_key=yesterday)

    return _closing
