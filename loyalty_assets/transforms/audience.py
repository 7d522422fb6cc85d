"""A campaign's audience on date D: a saved segment's members, an inline filter, or both (AND)."""

from __future__ import annotations

import polars as pl

from loyalty_assets.config.campaigns import Campaign
from loyalty_assets.transforms.segments import filter_customers


def audience_ids(
    campaign: Campaign, features: pl.DataFrame, segment_members: pl.DataFrame | None
) -> pl.Series | None:
    """Customer ids allowed to enter, or None when the campaign has no audience restriction."""
    audience = campaign.audience
    if audience is None or (audience.segment is None and audience.filter is None):
        return None
    allowed = features.select("customer_id")
    if audience.segment is not None:
        if segment_members is None:
            raise ValueError(f"campaign {campaign.id}: members of segment {audience.segment!r} were not given")
        allowed = allowed.join(segment_members.select("customer_id"), on="customer_id", how="semi")
    if audience.filter is not None:
        matching = filter_customers(audience.filter, features, sample_salt=campaign.id)
        allowed = allowed.join(matching, on="customer_id", how="semi")
    return allowed.get_column("customer_id")
