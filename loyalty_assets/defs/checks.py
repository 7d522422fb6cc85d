"""Asset checks: fail-closed gates on the inputs, declared beside the assets they guard.

The checks-volume gate is evaluated inside the `sources` step (a check spec of that multi-asset):
as a separate `@asset_check` it was a Dagster step of its own every date (its start, input, data
version lookups and success events) for a query of a few thousand timestamps.
"""

from datetime import timedelta

import dagster as dg
import polars as pl

from loyalty_assets.config.campaigns import Program
from loyalty_assets.sources.frames import AsOf
from loyalty_assets.transforms.campaign_day import checks_volume_gate

CHECKS_ARRIVED = "yesterdays_checks_arrived"


def checks_arrived_spec(asset: dg.AssetKey, partitions: dg.PartitionsDefinition) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        CHECKS_ARRIVED,
        asset=asset,
        blocking=True,
        partitions_def=partitions,
        description=(
            "Fail-closed: yesterday's checks must be at least min_checks_ratio × the 28-day median; "
            "otherwise nothing downstream (features, segments, campaigns) runs for this date."
        ),
    )


def checks_arrived(asset: dg.AssetKey, checks: pl.LazyFrame, point: AsOf, program: Program) -> dg.AssetCheckResult:
    """The gate's result for D from the checks as of D (only the timestamps of its 29 days are read)."""
    window_start = AsOf(point.date - timedelta(days=29), program.timezone).start_literal
    recent = checks.select("ts").filter(pl.col("ts") >= window_start).collect()
    gate = checks_volume_gate(recent, point, program.min_checks_ratio, program.gate_override_dates)
    override = f"add {point.date.isoformat()} to gate_override_dates in program.yaml"
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=CHECKS_ARRIVED,
        passed=gate.passed,
        description=gate.description,
        metadata={
            **{k: str(v) for k, v in gate.metadata.items()},
            # What to do, as a line the UI shows beside the result.
            "override": dg.MetadataValue.text(override if not gate.passed else "not needed"),
        },
    )
