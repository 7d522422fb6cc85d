"""Saved segments: outputs `segment/<id>/members` of the daily multi-asset (`defs.day`)."""

import dagster as dg


def segment_key(segment_id: str) -> dg.AssetKey:
    return dg.AssetKey(["segment", segment_id, "members"])
