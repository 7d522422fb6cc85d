"""`daily_summary`: the overview across campaigns for a date, as Markdown tables in the UI.

Wiring only: the computation is `loyalty_assets.summary` (shared with `loyalty summary`).
"""

from collections.abc import Iterable, Sequence
from datetime import date

import dagster as dg

from loyalty_assets.config.catalog import Catalog
from loyalty_assets.defs.campaigns import CAMPAIGN_OUTPUTS, campaign_key
from loyalty_assets.defs.control_groups import GLOBAL_CONTROL_KEY
from loyalty_assets.defs.metadata import OWNERS, daily_freshness, markdown, table_metadata, tags
from loyalty_assets.defs.partitions import DAY_AND_PREVIOUS
from loyalty_assets.defs.resources import WarehouseResource
from loyalty_assets.defs.segments import segment_key
from loyalty_assets.summary import read_summary, to_markdown

SUMMARY_KEY = dg.AssetKey(["daily_summary"])


def failed_gates(
    instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey], catalog: Catalog, day: date
) -> set[str]:
    """Campaigns held back on `day` by a failed gate, from the checks recorded in the instance.

    A campaign's own gate sits on `campaign/<id>/…`; any other gate (the sources') holds back all.
    """
    from dagster._core.event_api import PartitionKeyFilter
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        list(check_keys), partition_filter=PartitionKeyFilter(key=day.isoformat())
    )
    failed: set[str] = set()
    for key, record in latest.items():
        if record.status != AssetCheckExecutionRecordStatus.FAILED:
            continue
        path = key.asset_key.path
        failed.update([path[1]] if path[0] == "campaign" and len(path) > 1 else catalog.campaigns)
    return failed


def build_summary_asset(
    catalog: Catalog,
    partitions: dg.PartitionsDefinition,
    upstream: Sequence[dg.AssetsDefinition],
) -> dg.AssetsDefinition:
    """The summary asset, downstream of the assets whose rows it reads (`summary.read_summary`): every
    campaign's triggered customers, accruals and outbox (with their activity), every segment's
    members of D and of D−1 (entered and left; with the audiences exported) and the global control group.

    Why not every asset of the date: each declared dependency costs the step a data-version lookup
    in the instance, and the sources, features, state, ledger and results are not read here.
    """
    present = {key for asset in upstream for key in asset.keys}
    read = [campaign_key(cid, name) for cid in sorted(catalog.campaigns) for name in CAMPAIGN_OUTPUTS]
    deps: list[dg.AssetKey | dg.AssetDep] = [key for key in [*read, GLOBAL_CONTROL_KEY] if key in present]
    deps += [
        dg.AssetDep(segment_key(sid), partition_mapping=DAY_AND_PREVIOUS)
        for sid in sorted(catalog.segments)
        if segment_key(sid) in present
    ]
    check_keys = [key for asset in upstream for key in asset.check_keys]

    @dg.asset(
        key=SUMMARY_KEY,
        deps=deps,
        partitions_def=partitions,
        group_name="overview",
        owners=OWNERS,
        tags=tags("overview"),
        kinds={"polars"},
        freshness_policy=daily_freshness(catalog.program),
        description=(
            "One line per campaign for the date (status or why nothing happened, triggered, control, "
            "accruals, messages per channel, skipped per reason, batches), segments and audiences."
        ),
    )
    def daily_summary(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        day = date.fromisoformat(context.partition_key)
        gate_failed = failed_gates(context.instance, check_keys, catalog, day)
        summary = read_summary(warehouse.warehouse, catalog.campaigns, day, gate_failed=gate_failed)
        return dg.MaterializeResult(
            metadata={
                "summary": markdown(to_markdown(summary)),
                **table_metadata("campaigns", summary.campaigns),
                "campaigns_with_output": sum(1 for s in summary.campaigns["status"] if s == "ok"),
            }
        )

    return daily_summary
