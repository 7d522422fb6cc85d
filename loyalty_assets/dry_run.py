"""What a campaign would do on a date, computed exactly as the assets do it, writing nothing.

The dry run validates the day's sources and calls `transforms.campaign_day.run_day`, the function
the daily asset calls, with the state the run of D−1 stored (`loyalty_state`: earlier entrants,
waiting customers, recent messages, own accruals). Given the same stored state, its counts equal
the real run's. Without a stored state for D−1 (nothing ran yet, or D−1 was never run) it starts
from D−1 computed in memory from an empty state, so enter/leave triggers still see yesterday.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from loyalty_assets.config.catalog import Catalog
from loyalty_assets.settings import Settings
from loyalty_assets.sources.frames import AsOf, SourceFrames
from loyalty_assets.sources.readers import make_reader
from loyalty_assets.sources.snapshot import load_snapshot
from loyalty_assets.transforms.campaign_day import CampaignHistory, DayResult, EntrantsResult, run_day
from loyalty_assets.transforms.day_state import DayState
from loyalty_assets.transforms.journey import JourneyDay
from loyalty_assets.transforms.masking import mask_email, mask_phone
from loyalty_assets.transforms.messages import MessageBatch
from loyalty_assets.warehouse.history import read_state


@dataclass(frozen=True)
class DryRun:
    campaign_id: str
    day: date
    counts: dict[str, int | str]
    sample: pl.DataFrame  # masked messages


def _run(
    catalog: Catalog, data_dir: Path, point: AsOf, state: DayState, source_url: str | None, only: list[str]
) -> tuple[SourceFrames, DayResult]:
    snapshot = load_snapshot(
        make_reader(data_dir, source_url, point.cutoff), point, own_accruals=state.own_accruals(point)
    )
    return snapshot.frames, run_day(catalog, snapshot.frames, point, state, only=only)


def _previous_state(
    catalog: Catalog, data_dir: Path, day: date, source_url: str | None, storage_dir: Path | None
) -> DayState:
    """The state D−1's run stored; without one, D−1 computed in memory from an empty state."""
    stored = read_state(storage_dir or Settings.from_env().storage_dir, day - timedelta(days=1))
    if stored is not None:
        return DayState.from_frames(stored)
    yesterday = AsOf(day - timedelta(days=1), catalog.program.timezone)
    return _run(catalog, data_dir, yesterday, DayState.empty(), source_url, [])[1].state


@dataclass(frozen=True)
class DayInputs:
    """What a campaign's day read (the day's sources, features, members, its history from the state)."""

    point: AsOf
    frames: SourceFrames
    features: pl.DataFrame
    members_today: dict[str, pl.DataFrame]
    members_yesterday: dict[str, pl.DataFrame]
    history: CampaignHistory
    result: DayResult


@dataclass(frozen=True)
class DayOutputs:
    """What the day produced for the campaign (nothing written); no steps when its gate failed."""

    entered: EntrantsResult
    journey: JourneyDay | None
    accruals: pl.DataFrame | None
    batch: MessageBatch | None


def day_inputs(
    catalog: Catalog,
    campaign_id: str,
    day: date,
    *,
    data_dir: Path,
    source_database_url: str | None = None,
    storage_dir: Path | None = None,
) -> DayInputs:
    """Run D for `campaign_id` (and the campaigns before it under the frequency cap) as the asset does."""
    if campaign_id not in catalog.campaigns:
        raise KeyError(f"unknown campaign {campaign_id!r}; known: {sorted(catalog.campaigns)}")
    point = AsOf(day, catalog.program.timezone)
    state = _previous_state(catalog, data_dir, day, source_database_url, storage_dir)
    frames, result = _run(catalog, data_dir, point, state, source_database_url, [campaign_id])
    history = CampaignHistory(
        triggered=state.campaign_triggered(campaign_id),
        outbox=state.campaign_outbox(campaign_id),
        pending_due=state.pending_due(campaign_id, point),
    )
    return DayInputs(point, frames, result.features, result.members, result.members_yesterday, history, result)


def campaign_outputs(inputs: DayInputs, campaign_id: str) -> DayOutputs:
    """The campaign's part of the day `day_inputs` ran."""
    mine = next(r for r in inputs.result.campaigns if r.campaign.id == campaign_id)
    return DayOutputs(mine.entered, mine.journey, mine.accruals, mine.messages)


def dry_run(
    catalog: Catalog,
    campaign_id: str,
    day: date,
    *,
    data_dir: Path,
    database_url: str | None = None,
    source_database_url: str | None = None,
    sample: int = 5,
    storage_dir: Path | None = None,
) -> DryRun:
    """Counts per stage, step, branch and variant, and a masked sample of the messages.

    `storage_dir` holds the stored `loyalty_state` (default: `LOYALTY_STORAGE_DIR`); the warehouse
    (`database_url`, kept for callers) is not read: it is the pipeline's output, not its state.
    """
    if campaign_id not in catalog.campaigns:
        raise KeyError(f"unknown campaign {campaign_id!r}; known: {sorted(catalog.campaigns)}")
    program = catalog.program
    point = AsOf(day, program.timezone)
    state = _previous_state(catalog, data_dir, day, source_database_url, storage_dir)
    result = _run(catalog, data_dir, point, state, source_database_url, [campaign_id])[1]
    mine = next(r for r in result.campaigns if r.campaign.id == campaign_id)
    entered = mine.entered
    counts: dict[str, int | str] = {f"entry:{k}": v for k, v in entered.counts.items()}
    counts["gate"] = "passed" if mine.gate.passed else f"FAILED: {mine.gate.description}"
    counts["journey:resumed_from_earlier_days"] = mine.resumed
    if mine.journey is None or mine.accruals is None or mine.messages is None:
        return DryRun(campaign_id=campaign_id, day=day, counts=dict(sorted(counts.items())), sample=pl.DataFrame())
    journey, accruals, batch = mine.journey, mine.accruals, mine.messages
    counts |= {f"journey:{k}": v for k, v in journey.counts.items()}
    counts["journey:left_waiting"] = journey.pending.height
    counts["accruals"] = accruals.height
    counts["accrued_total"] = str(accruals.get_column("amount").sum() if accruals.height else 0)
    counts["messages"] = batch.outbox.height
    for channel, n in batch.outbox.group_by("channel").len().iter_rows():
        counts[f"messages:{channel}"] = n
    for reason, n in batch.skipped.group_by("reason").len().iter_rows():
        counts[f"skipped:{reason}"] = n
    masked = batch.outbox.head(sample).select(
        "customer_id",
        "channel",
        pl.when(pl.col("channel") == "sms")
        .then(mask_phone(pl.col("recipient")))
        .when(pl.col("channel") == "email")
        .then(mask_email(pl.col("recipient")))
        .otherwise(pl.lit("***"))
        .alias("recipient"),
        "subject",
        "send_at",
        "batch_no",
        "variant",
    )
    return DryRun(campaign_id=campaign_id, day=day, counts=dict(sorted(counts.items())), sample=masked)
