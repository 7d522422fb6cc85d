"""The Dagster code location `loyalty_assets` (see workspace.yaml)."""

from loyalty_assets.defs.definitions import build_definitions

defs = build_definitions()
