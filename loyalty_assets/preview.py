"""Answers without writing: a segment's size and a masked sample for a date, straight from the sources.

This is the marketer's "how many women bought dairy last month?": it reads and validates the
sources as the pipeline would for that date, computes only the features the segment needs, and
writes nothing anywhere.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from loyalty_assets.config.catalog import Catalog, load_catalog
from loyalty_assets.settings import Settings
from loyalty_assets.sources.frames import AsOf
from loyalty_assets.sources.readers import make_reader
from loyalty_assets.sources.snapshot import load_snapshot
from loyalty_assets.transforms.audience import closure, manual_members, manual_references
from loyalty_assets.transforms.features import compute_features, required_features
from loyalty_assets.transforms.masking import mask_email, mask_phone
from loyalty_assets.transforms.segments import SegmentPreview, evaluate_segments
from loyalty_assets.warehouse.history import own_accruals_before, read_members
from loyalty_assets.warehouse.warehouse import open_existing


def preview(
    catalog: Catalog,
    data_dir: Path,
    segment_id: str,
    day: date,
    *,
    sample: int = 10,
    database_url: str | None = None,
    source_database_url: str | None = None,
) -> SegmentPreview:
    """Count the members of `segment_id` on `day` and show a masked sample (lowest ids first)."""
    if segment_id not in catalog.segments:
        raise KeyError(f"unknown segment {segment_id!r}; known: {sorted(catalog.segments)}")
    point = AsOf(date=day, program_tz=catalog.program.timezone)
    accruals = None
    existing = open_existing(database_url) if database_url else None
    if existing is not None:
        accruals = own_accruals_before(existing, point)
    snapshot = load_snapshot(make_reader(data_dir, source_database_url, point.cutoff), point, own_accruals=accruals)
    needed = closure(catalog.segments, segment_id)
    features = compute_features(snapshot.frames, point, required_features([s.filter for s in needed.values()]))
    manual = read_members(existing, [], point, manual_ids=manual_references(needed)) if existing is not None else {}
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
    )
