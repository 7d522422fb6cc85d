"""Asset checks: fail-closed gates on the inputs, declared beside the assets they guard."""

from datetime import timedelta

import dagster as dg
import polars as pl

from loyalty_assets.config.campaigns import Program
from loyalty_assets.defs.partitions import as_of
from loyalty_assets.defs.sources import source_key
from loyalty_assets.sources.frames import AsOf
from loyalty_assets.transforms.campaign_day import checks_volume_gate


def build_source_checks(program: Program, partitions: dg.PartitionsDefinition) -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(
        asset=source_key("checks"),
        name="yesterdays_checks_arrived",
        blocking=True,
        partitions_def=partitions,
        description=(
            "Fail-closed: yesterday's checks must be at least min_checks_ratio × the 28-day median; "
            "otherwise nothing downstream (features, segments, campaigns) runs for this date."
        ),
    )
    def yesterdays_checks_arrived(context: dg.AssetCheckExecutionContext, checks: pl.LazyFrame) -> dg.AssetCheckResult:
        point = as_of(context, program)
        # only the timestamps of the gate's 29 days are read from the source store
        window_start = AsOf(point.date - timedelta(days=29), program.timezone).start_literal
        recent = checks.select("ts").filter(pl.col("ts") >= window_start).collect()
        gate = checks_volume_gate(recent, point, program.min_checks_ratio, program.gate_override_dates)
        override = f"add {point.date.isoformat()} to gate_override_dates in program.yaml"
        return dg.AssetCheckResult(
            passed=gate.passed,
            description=gate.description,
            metadata={
                **{k: str(v) for k, v in gate.metadata.items()},
                # What to do, as a line the UI shows beside the result.
                "override": dg.MetadataValue.text(override if not gate.passed else "not needed"),
            },
        )

    return [yesterdays_checks_arrived]
