"""Campaign asset keys and the catalog's broken files as failing assets.

Each campaign shows as three outputs of the daily multi-asset (`defs.day`) under `campaign/<id>/`:
`triggered_customers` (with the fail-closed audience gate as its check), `bonus_accruals` (the chain
of steps for D and its accruals) and `message_outbox`. This module only names them.
"""

from pathlib import Path

import dagster as dg

from loyalty_assets.config.campaigns import Campaign, EventTrigger, FilterStep
from loyalty_assets.config.catalog import Catalog
from loyalty_assets.config.errors import DefinitionError
from loyalty_assets.config.filters import referenced_segments

#: The three outputs of each campaign, in the order the day computes them.
CAMPAIGN_OUTPUTS = ("triggered_customers", "bonus_accruals", "message_outbox")


def campaign_key(campaign_id: str, name: str) -> dg.AssetKey:
    return dg.AssetKey(["campaign", campaign_id, name])


def used_segments(campaign: Campaign, saved: set[str]) -> list[str]:
    """Saved segments whose members the campaign reads (audience, trigger, filter steps)."""
    wanted: set[str] = set()
    if campaign.audience is not None:
        if campaign.audience.segment:
            wanted.add(campaign.audience.segment)
        if campaign.audience.filter is not None:
            wanted |= referenced_segments(campaign.audience.filter)
    if isinstance(campaign.trigger, EventTrigger) and campaign.trigger.segment:
        wanted.add(campaign.trigger.segment)
    for step in campaign.all_steps():
        if isinstance(step, FilterStep):
            if step.segment:
                wanted.add(step.segment)
            if step.filter is not None:
                wanted |= referenced_segments(step.filter)
    return sorted(wanted & saved)


def invalid_definition_assets(catalog: Catalog, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    return [_invalid_definition_asset(error, partitions) for error in catalog.errors]


def _invalid_definition_asset(error: DefinitionError, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """A broken file shows up in the UI as an asset that fails with the file and field at fault."""
    stem = Path(error.file).stem.replace("-", "_").lower() or "unnamed"
    kind = Path(error.file).parent.name or "catalog"

    @dg.asset(
        key=dg.AssetKey(["invalid_definition", kind, stem]),
        group_name="invalid_definitions",
        partitions_def=partitions,
        description=f"INVALID: {error}",
    )
    def _asset() -> None:
        raise dg.Failure(description=str(error), metadata={"file": error.file, "field": error.field})

    return _asset


__all__ = ["campaign_key", "invalid_definition_assets", "used_segments"]
