"""The daily partitions every asset shares: one per program-local date."""

from datetime import date

import dagster as dg

from loyalty_assets.config.campaigns import Program
from loyalty_assets.sources.frames import AsOf


def daily_partitions(program: Program) -> dg.DailyPartitionsDefinition:
    """Dates from `partitions_start` to today inclusive (`end_offset=1`): today's run is for today."""
    return dg.DailyPartitionsDefinition(
        start_date=program.partitions_start.isoformat(),
        timezone=program.timezone,
        end_offset=1,
    )


#: D reads D−1 (a self-dependency carrying state from day to day).
PREVIOUS_DAY = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
#: D reads both D and D−1 (e.g. the summary's members entered and left since yesterday).
DAY_AND_PREVIOUS = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=0)


def as_of(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext | dg.OpExecutionContext, program: Program
) -> AsOf:
    """The run date D of this partition and its cutoff in the program's zone."""
    return AsOf(date=date.fromisoformat(context.partition_key), program_tz=program.timezone)
