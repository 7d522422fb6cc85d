"""`loyalty`: the command line for data engineers and marketers.

    loyalty run --date 2025-06-26                 the daily pipeline for one date, in process
    loyalty backfill --start A --end B            every date from A to B inclusive, in date order
    loyalty summary --date D                      rows per output table and campaign for D
    loyalty validate                              check every campaign and segment file
    loyalty segment preview ID --date D           count and masked sample, nothing written
    loyalty campaign dry-run ID --date D          what a campaign would do on D, nothing written
    loyalty report ID --from A --to B --out F     campaign results as an offline HTML report
    loyalty explain CUSTOMER --campaign ID --date D   why a customer did or did not enter, and what followed
    loyalty backtest ID --from A --to B           a campaign over past dates in a scratch warehouse

All commands honour LOYALTY_DATA_DIR, LOYALTY_CAMPAIGNS_DIR and LOYALTY_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING

import polars as pl

from loyalty_assets.config.catalog import load_catalog
from loyalty_assets.reporting import cli as results_cli
from loyalty_assets.settings import Settings
from loyalty_assets.warehouse.warehouse import Warehouse

if TYPE_CHECKING:
    from dagster import DagsterInstance

OUTPUT_TABLES = (
    ("triggered_customers", "campaign_id"),
    ("bonus_accruals", "campaign_id"),
    ("message_outbox", "campaign_id"),
    ("activity_log", "campaign_id"),
    ("segment_members", "segment_id"),
    ("source_quarantine", "source_table"),
)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from exc


def summary(settings: Settings, day: date) -> pl.DataFrame:
    """Rows per output table and campaign (or segment, or source table) for one date."""
    warehouse = Warehouse(settings.database_url)
    parts = []
    for table, by in OUTPUT_TABLES:
        rows = warehouse.read(table, {"partition_date": day})
        parts.append(
            rows.group_by(by)
            .len()
            .select(pl.lit(table).alias("table"), pl.col(by).alias("of"), pl.col("len").alias("rows"))
        )
    audiences = warehouse.read("target_audiences", {"partition_date": day})
    parts.append(
        audiences.group_by("audience")
        .len()
        .select(
            pl.lit("target_audiences").alias("table"),
            pl.col("audience").alias("of"),
            pl.col("len").alias("rows"),
        )
    )
    return pl.concat(parts).sort("table", "of")


def run_dates(settings: Settings, days: Sequence[date]) -> bool:
    """Materialise every asset for each date in order, in this process; False on the first failure."""

    from loyalty_assets.defs.definitions import build_definitions
    from loyalty_assets.defs.schedules import DAILY_JOB

    defs = build_definitions(settings)
    job = defs.resolve_job_def(DAILY_JOB)
    with _instance() as instance:
        for day in days:
            result = job.execute_in_process(partition_key=day.isoformat(), instance=instance, raise_on_error=False)
            print(f"{day.isoformat()}: {'ok' if result.success else 'FAILED'} (run {result.run_id})")
            if not result.success:
                return False
    return True


def _instance() -> DagsterInstance:
    """The persistent instance at $DAGSTER_HOME (created if missing, so runs show in the UI), else ephemeral."""
    import os
    from pathlib import Path

    import dagster as dg

    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.ephemeral()
    Path(home).mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.get()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="loyalty", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="the daily pipeline for one date")
    run.add_argument("--date", type=_date, required=True)
    backfill = commands.add_parser("backfill", help="every date from --start to --end inclusive, in order")
    backfill.add_argument("--start", type=_date, required=True)
    backfill.add_argument("--end", type=_date, required=True)
    summ = commands.add_parser("summary", help="rows per output table for a date")
    summ.add_argument("--date", type=_date, required=True)
    commands.add_parser("validate", help="validate the catalog of campaigns and segments")
    segment = commands.add_parser("segment", help="segment tools")
    segment_commands = segment.add_subparsers(dest="segment_command", required=True)
    preview = segment_commands.add_parser("preview", help="count a segment and show a masked sample")
    preview.add_argument("segment_id")
    preview.add_argument("--date", type=_date, required=True)
    preview.add_argument("--sample", type=int, default=10)

    campaign = commands.add_parser("campaign", help="campaign tools")
    campaign_commands = campaign.add_subparsers(dest="campaign_command", required=True)
    dry = campaign_commands.add_parser("dry-run", help="counts per step, branch and variant and a masked sample")
    dry.add_argument("campaign_id")
    dry.add_argument("--date", type=_date, required=True)
    dry.add_argument("--sample", type=int, default=5)

    results_cli.add_commands(commands)

    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.command in results_cli.COMMANDS:
        return results_cli.run(args, settings)
    pl.Config.set_tbl_rows(200)
    pl.Config.set_tbl_hide_dataframe_shape(True)

    if args.command == "summary":
        table = summary(settings, args.date)
        print(f"Output for {args.date.isoformat()} in {_safe_url(settings.database_url)}:")
        print(table if table.height else "  (nothing written for this date)")
        return 0
    if args.command == "run":
        return 0 if run_dates(settings, [args.date]) else 1
    if args.command == "backfill":
        if args.end < args.start:
            parser.error("--end is before --start")
        days = [args.start + timedelta(days=i) for i in range((args.end - args.start).days + 1)]
        return 0 if run_dates(settings, days) else 1
    if args.command == "validate":
        catalog = load_catalog(settings.campaigns_dir)
        valid = f"{len(catalog.campaigns)} campaigns, {len(catalog.segments)} segments"
        print(f"{valid} valid in {settings.campaigns_dir}")
        for error in catalog.errors:
            print(f"ERROR {error}", file=sys.stderr)
        return 1 if catalog.errors else 0
    if args.command == "segment" and args.segment_command == "preview":
        from loyalty_assets.preview import preview_from_sources

        result = preview_from_sources(settings, args.segment_id, args.date, sample=args.sample)
        print(f"segment {result.segment_id} on {args.date.isoformat()}: {result.count} customers")
        print(result.sample)
        return 0
    if args.command == "campaign" and args.campaign_command == "dry-run":
        from loyalty_assets.dry_run import dry_run

        result = dry_run(
            load_catalog(settings.campaigns_dir),
            args.campaign_id,
            args.date,
            data_dir=settings.data_dir,
            database_url=settings.database_url,
            source_database_url=settings.source_database_url,
            sample=args.sample,
        )
        print(f"dry run of {result.campaign_id} on {result.day.isoformat()} (nothing written):")
        for name, value in result.counts.items():
            print(f"  {name:<40} {value}")
        print(result.sample)
        return 0
    return 2


def _safe_url(url: str) -> str:
    """The database URL without its password (logs are no place for secrets)."""
    import sqlalchemy as sa

    return sa.engine.make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    raise SystemExit(main())
