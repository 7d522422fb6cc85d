"""Answers without writing: a segment's size and a masked sample for a date, straight from the sources.

This is the marketer's "how many women bought dairy last month?": it reads and validates the
sources as the pipeline would for that date, computes only the features the segment needs, and
writes nothing anywhere.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl

from loyalty_assets.config.catalog import Catalog, load_catalog
from loyalty_assets.settings import Settings
from loyalty_assets.sources.frames import AsOf
from loyalty_assets.sources.readers import make_reader
from loyalty_assets.sources.snapshot import load_snapshot
from loyalty_assets.transforms.audience import closure, manual_members, manual_references
from loyalty_assets.transforms.campaign_day import day_features
from loyalty_assets.transforms.day_state import DayState
from loyalty_assets.transforms.masking import mask_email, mask_phone
from loyalty_assets.transforms.segments import SegmentPreview, evaluate_segments
from loyalty_assets.warehouse.history import read_state


def preview(
    catalog: Catalog,
    data_dir: Path,
    segment_id: str,
    day: date,
    *,
    sample: int = 10,
    database_url: str | None = None,
    source_database_url: str | None = None,
    storage_dir: Path | None = None,
) -> SegmentPreview:
    """Count the members of `segment_id` on `day` and show a masked sample (lowest ids first).

    Own accruals (which count toward balances) come from the `loyalty_state` of D−1 in
    `storage_dir` when that date was run; `database_url` is kept for callers and not read.
    """
    if segment_id not in catalog.segments:
        raise KeyError(f"unknown segment {segment_id!r}; known: {sorted(catalog.segments)}")
    point = AsOf(date=day, program_tz=catalog.program.timezone)
    stored = read_state(storage_dir, day - timedelta(days=1)) if storage_dir is not None else None
    state = DayState.from_frames(stored) if stored is not None else None
    accruals = state.own_accruals(point) if state is not None else None
    snapshot = load_snapshot(make_reader(data_dir, source_database_url, point.cutoff), point, own_accruals=accruals)
    needed = closure(catalog.segments, segment_id)
    features = day_features(catalog, snapshot.frames, point, [s.filter for s in needed.values()])
    # manual segments a saved segment reads: their members as D begins (empty before any run)
    manual = state.manual_members(manual_references(needed), day, point.program_tz) if state is not None else {}
    members = evaluate_segments(needed, features, manual_members(needed, manual))[segment_id]
    rows = (
        members.head(sample)
        .join(features.select("customer_id", "first_name", "email", "phone"), on="customer_id", how="left")
        .with_columns(mask_email(pl.col("email")).alias("email"), mask_phone(pl.col("phone")).alias("phone"))
    )
    return SegmentPreview(segment_id=segment_id, count=members.height, sample=rows)


def preview_from_sources(settings: Settings, segment_id: str, day: date, *, sample: int = 10) -> SegmentPreview:
    return preview(
        load_catalog(settings.campaigns_dir),
        settings.data_dir,
        segment_id,
        day,
        sample=sample,
        database_url=settings.database_url,
        source_database_url=settings.source_database_url,
        storage_dir=settings.storage_dir,
    )
