"""A campaign's audience on date D: a saved segment's members, an inline filter, or both (AND)."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from loyalty_assets.config.campaigns import Campaign
from loyalty_assets.config.filters import referenced_segments
from loyalty_assets.config.segments import SegmentDefinition
from loyalty_assets.transforms.masking import mask_email, mask_phone
from loyalty_assets.transforms.segments import evaluate_segments, filter_customers


def audience_ids(
    campaign: Campaign,
    features: pl.DataFrame,
    segment_members: pl.DataFrame | None,
    segments: Mapping[str, SegmentDefinition] | None = None,
    known_members: Mapping[str, pl.DataFrame] | None = None,
) -> pl.Series | None:
    """Customer ids allowed to enter, or None when the campaign has no audience restriction.

    An inline filter may refer to saved segments (`field: segment`); they are evaluated here on the
    same features, so the answer equals those segments' members that day.
    """
    audience = campaign.audience
    if audience is None or (audience.segment is None and audience.filter is None):
        return None
    allowed = features.select("customer_id")
    if audience.segment is not None:
        if segment_members is None:
            raise ValueError(f"campaign {campaign.id}: members of segment {audience.segment!r} were not given")
        allowed = allowed.join(segment_members.select("customer_id"), on="customer_id", how="semi")
    if audience.filter is not None:
        saved = dict(segments or {})
        referenced: dict[str, SegmentDefinition] = {}
        members: dict[str, pl.DataFrame] = {}
        for sid in referenced_segments(audience.filter):
            if sid in saved:
                referenced |= closure(saved, sid)
            elif known_members is not None and sid in known_members:
                members[sid] = known_members[sid]  # a manual segment kept by campaign steps
            else:
                members[sid] = pl.DataFrame(schema={"customer_id": pl.Int64()})  # nobody added yet
        if referenced:
            manual = {sid: m for sid, m in (known_members or {}).items() if sid not in saved}
            members |= evaluate_segments(referenced, features, manual_members(referenced, manual))
        matching = filter_customers(audience.filter, features, members, sample_salt=campaign.id)
        allowed = allowed.join(matching, on="customer_id", how="semi")
    return allowed.get_column("customer_id")


def closure(segments: dict[str, SegmentDefinition], segment_id: str) -> dict[str, SegmentDefinition]:
    """The segment and every saved segment it references, transitively (what evaluating it needs).

    References to manual segments (kept by campaign steps) are not definitions: see `manual_references`.
    """
    wanted, frontier = {segment_id}, [segment_id]
    while frontier:
        for ref in referenced_segments(segments[frontier.pop()].filter):
            if ref not in wanted and ref in segments:
                wanted.add(ref)
                frontier.append(ref)
    return {sid: segments[sid] for sid in wanted}


def manual_references(segments: Mapping[str, SegmentDefinition]) -> set[str]:
    """Ids the given saved segments reference that are not among them (manual segments)."""
    return {ref for d in segments.values() for ref in referenced_segments(d.filter) if ref not in segments}


def manual_members(
    segments: Mapping[str, SegmentDefinition], known: Mapping[str, pl.DataFrame]
) -> dict[str, pl.DataFrame]:
    """Members of the manual segments `segments` reference; one nobody was added to yet is empty."""
    empty = pl.DataFrame(schema={"customer_id": pl.Int64()})
    return {sid: known.get(sid, empty) for sid in manual_references(segments)}


def masked_sample(customers: pl.DataFrame, features: pl.DataFrame, size: int = 5) -> list[dict[str, object]]:
    """A few customers for the UI with e-mails and phones masked (metadata is no place for PII)."""
    return (
        customers.select("customer_id")
        .head(size)
        .join(features.select("customer_id", "first_name", "email", "phone"), on="customer_id", how="left")
        .with_columns(mask_email(pl.col("email")).alias("email"), mask_phone(pl.col("phone")).alias("phone"))
        .with_columns(pl.all().cast(pl.String()))
        .to_dicts()
    )
