"""The shared per-customer features: an output of the daily multi-asset (`defs.day`)."""

import dagster as dg

from loyalty_assets.transforms.campaign_day import catalog_filters

FEATURES_KEY = dg.AssetKey(["customer_features"])

__all__ = ["FEATURES_KEY", "catalog_filters"]
