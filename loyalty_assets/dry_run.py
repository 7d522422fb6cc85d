"""What a campaign would do on a date, computed exactly as the assets do it, writing nothing.

The dry run validates the day's sources, computes the shared features and the saved segments in
memory, reads the campaign's history (earlier entrants, waiting customers, recent messages) from the
warehouse when one exists, and runs the same `transforms.campaign_day` functions as the assets.
Given the same warehouse state, its counts equal the real run's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from loyalty_assets.config.catalog import Catalog
from loyalty_assets.sources.frames import OWN_ACCRUALS_SCHEMA, AsOf, SourceFrames
from loyalty_assets.sources.readers import make_reader
from loyalty_assets.sources.snapshot import load_snapshot
from loyalty_assets.transforms.campaign_day import (
    CampaignHistory,
    EntrantsResult,
    campaign_accruals,
    campaign_entrants,
    campaign_journeys,
    campaign_messages,
)
from loyalty_assets.transforms.features import compute_features, required_features
from loyalty_assets.transforms.journey import JourneyDay
from loyalty_assets.transforms.masking import mask_email, mask_phone
from loyalty_assets.transforms.messages import MessageBatch
from loyalty_assets.transforms.segments import evaluate_segments
from loyalty_assets.warehouse.history import own_accruals_before, read_history, read_members, recent_messages
from loyalty_assets.warehouse.warehouse import Warehouse, open_existing


@dataclass(frozen=True)
class DryRun:
    campaign_id: str
    day: date
    counts: dict[str, int | str]
    sample: pl.DataFrame  # masked messages


def _day_state(
    catalog: Catalog, data_dir: Path, point: AsOf, own: pl.DataFrame, source_url: str | None
) -> tuple[SourceFrames, pl.DataFrame, dict[str, pl.DataFrame]]:
    """The day's validated sources, shared features and saved segments' members, as the assets compute them."""
    snapshot = load_snapshot(make_reader(data_dir, source_url, point.cutoff), point, own_accruals=own)
    filters = [s.filter for s in catalog.segments.values()]
    filters += [c.audience.filter for c in catalog.campaigns.values() if c.audience and c.audience.filter]
    features = compute_features(snapshot.frames, point, required_features(filters))
    return snapshot.frames, features, evaluate_segments(catalog.segments, features)


@dataclass(frozen=True)
class DayInputs:
    """Everything a campaign's run for D reads: the day's sources, features, members and history."""

    point: AsOf
    warehouse: Warehouse | None
    frames: SourceFrames
    features: pl.DataFrame
    members_today: dict[str, pl.DataFrame]
    members_yesterday: dict[str, pl.DataFrame]
    history: CampaignHistory


@dataclass(frozen=True)
class DayOutputs:
    """What the run's functions produce for the campaign on D (nothing written)."""

    entered: EntrantsResult
    journey: JourneyDay
    accruals: pl.DataFrame
    batch: MessageBatch


def day_inputs(
    catalog: Catalog,
    campaign_id: str,
    day: date,
    *,
    data_dir: Path,
    database_url: str,
    source_database_url: str | None = None,
) -> DayInputs:
    """The inputs the assets would read for `campaign_id` on `day` (the warehouse's history when it exists)."""
    if campaign_id not in catalog.campaigns:
        raise KeyError(f"unknown campaign {campaign_id!r}; known: {sorted(catalog.campaigns)}")
    program = catalog.program
    point = AsOf(day, program.timezone)
    warehouse = open_existing(database_url)
    own = own_accruals_before(warehouse, point) if warehouse else pl.DataFrame(schema=OWN_ACCRUALS_SCHEMA)
    frames, features, members_today = _day_state(catalog, data_dir, point, own, source_database_url)
    if warehouse is not None:
        members_today = {**read_members(warehouse, [], point, manual_ids=catalog.manual_segments), **members_today}
        members_yesterday = read_members(
            warehouse, sorted(catalog.segments), point, days_back=1, manual_ids=catalog.manual_segments
        )
        history = read_history(warehouse, campaign_id, point)
    else:
        yesterday = AsOf(day - timedelta(days=1), program.timezone)
        _, _, members_yesterday = _day_state(catalog, data_dir, yesterday, own, source_database_url)
        empty = pl.DataFrame(schema={"customer_id": pl.Int64()})
        members_today |= {sid: empty for sid in catalog.manual_segments}
        members_yesterday |= {sid: empty for sid in catalog.manual_segments}
        history = CampaignHistory.empty()
    return DayInputs(point, warehouse, frames, features, members_today, members_yesterday, history)


def run_day(catalog: Catalog, campaign_id: str, inputs: DayInputs) -> DayOutputs:
    """The campaign's day through the assets' functions: entrants → journeys → accruals → messages."""
    campaign = catalog.campaigns[campaign_id]
    program = catalog.program
    point, warehouse, frames, features = inputs.point, inputs.warehouse, inputs.frames, inputs.features
    history = inputs.history
    entered = campaign_entrants(
        campaign,
        program=program,
        as_of=point,
        frames=frames,
        features=features,
        segments=catalog.segments,
        members_today=inputs.members_today,
        members_yesterday=inputs.members_yesterday,
        history=history,
        manual_segments=catalog.manual_segments,
    )
    journey = campaign_journeys(
        campaign,
        entered.entrants,
        as_of=point,
        features=features,
        members=inputs.members_today,
        pending_due=history.pending_due,
    )
    accruals = campaign_accruals(campaign, journey.actions)
    earlier_accruals = None
    if warehouse is not None:
        earlier_accruals = warehouse.read(
            "bonus_accruals", {"campaign_id": campaign_id}, before=("partition_date", point.date)
        )
    cap = program.frequency_cap
    recent = recent_messages(warehouse, campaign_id, point, cap.days) if cap and warehouse else None
    all_accruals = (
        pl.concat([earlier_accruals.select(accruals.columns).cast(accruals.schema), accruals])
        if earlier_accruals is not None
        else accruals
    )
    batch = campaign_messages(
        campaign,
        journey.actions,
        program=program,
        as_of=point,
        frames=frames,
        accruals=all_accruals,
        renderer=catalog.renderer(),
        recent_messages=recent,
    )
    return DayOutputs(entered, journey, accruals, batch)


def dry_run(
    catalog: Catalog,
    campaign_id: str,
    day: date,
    *,
    data_dir: Path,
    database_url: str,
    source_database_url: str | None = None,
    sample: int = 5,
) -> DryRun:
    """Counts per stage, step, branch and variant, and a masked sample of the messages."""
    inputs = day_inputs(
        catalog, campaign_id, day, data_dir=data_dir, database_url=database_url, source_database_url=source_database_url
    )
    out = run_day(catalog, campaign_id, inputs)
    entered, journey, accruals, batch, history = out.entered, out.journey, out.accruals, out.batch, inputs.history
    counts: dict[str, int | str] = {f"entry:{k}": v for k, v in entered.counts.items()}
    counts |= {f"journey:{k}": v for k, v in journey.counts.items()}
    counts["journey:resumed_from_earlier_days"] = history.pending_due.height
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
