"""The day's whole pipeline after the sources as ONE daily multi-asset, `loyalty_day`.

Its outputs keep the asset keys users know: `customer_features`, `segment/<id>/members`, and per
campaign `campaign/<id>/triggered_customers`, `…/bonus_accruals`, `…/message_outbox` (with each
campaign's audience gate as a check), plus `loyalty_state`: what later dates need. The multi-asset
reads `loyalty_state` of D−1 through a previous-partition input, so the cross-day feedback (own
accruals, yesterday's members, campaign history, waiting tokens, the frequency-cap window) is a
declared dependency of itself, which Dagster allows (a cycle through other assets it does not).

Why one step: a day at 5,000 customers used to be 60 Dagster steps whose bookkeeping cost more than
the work. Business logic is `transforms.campaign_day.run_day`; this module only wires and writes.
"""

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import dagster as dg
import polars as pl

from loyalty_assets.config.catalog import Catalog
from loyalty_assets.defs.campaigns import campaign_key, used_segments
from loyalty_assets.defs.features import FEATURES_KEY
from loyalty_assets.defs.metadata import OWNERS, column_schema, counts_table, daily_freshness, table_metadata, tags
from loyalty_assets.defs.partitions import PREVIOUS_DAY, as_of
from loyalty_assets.defs.resources import STATE_KEY, WarehouseResource
from loyalty_assets.defs.segments import segment_key
from loyalty_assets.defs.sources import source_key
from loyalty_assets.defs.warehouse_io import WAREHOUSE_IO
from loyalty_assets.sources.day_view import TableAsOf, day_rows, load_day_frames
from loyalty_assets.sources.schemas import SCHEMAS
from loyalty_assets.transforms.audience import closure, masked_sample
from loyalty_assets.transforms.campaign_day import (
    CampaignDay,
    ShardInputs,
    by_priority,
    catalog_filters,
    decision_frames,
    run_day,
    shard_state,
)
from loyalty_assets.transforms.day_inputs import history_tables
from loyalty_assets.transforms.day_state import DayState
from loyalty_assets.transforms.features import required_features
from loyalty_assets.transforms.shards import Shard
from loyalty_assets.warehouse.audiences import export_audiences
from loyalty_assets.warehouse.campaign_rows import write_campaign_day
from loyalty_assets.warehouse.history import read_state, state_partitions
from loyalty_assets.warehouse.membership import write_membership
from loyalty_assets.warehouse.warehouse import Warehouse

GATE = "audience_within_expected_range"
ACTIVE_RUN_STATUSES = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED")
FAILED_RUN_STATUSES = ("FAILURE", "CANCELED", "CANCELING")


def output_name(key: dg.AssetKey) -> str:
    return key.to_python_identifier()


def _specs(catalog: Catalog) -> list[dg.AssetSpec]:
    """One spec per output, with the internal dependencies so the lineage reads left to right."""
    sources = [source_key(t) for t in SCHEMAS]
    specs = [
        dg.AssetSpec(
            FEATURES_KEY,
            deps=sources,
            group_name="segments",
            kinds={"polars"},
            description=(
                "One row per customer visible at D with the profile and every parameterised feature the "
                f"catalog's filters use ({len(required_features(catalog_filters(catalog)))} specs)."
            ),
        )
    ]
    for sid in sorted(catalog.segments):
        definition = catalog.segments[sid]
        needed = closure(catalog.segments, sid)
        specs.append(
            dg.AssetSpec(
                segment_key(sid),
                deps=[FEATURES_KEY, *(segment_key(s) for s in sorted(needed) if s != sid)],
                group_name="segments",
                kinds={"polars", "sql"},
                description=f"{definition.name}. Members on D → segment_members"
                + (f"; exported as target audiences {list(definition.audiences)}." if definition.audiences else "."),
            )
        )
    ordered = by_priority(catalog)
    for campaign in ordered:
        cid = campaign.id
        group = f"campaign_{cid}"
        segments = [segment_key(s) for s in used_segments(campaign, set(catalog.segments))]
        specs += [
            dg.AssetSpec(
                campaign_key(cid, "triggered_customers"),
                deps=[FEATURES_KEY, *segments, *sources],
                group_name=group,
                kinds={"polars", "sql"},
                description=f"{campaign.name}: who enters on D (trigger, audience, re-entry, control groups, "
                "variant) → triggered_customers.",
            ),
            dg.AssetSpec(
                campaign_key(cid, "bonus_accruals"),
                deps=[campaign_key(cid, "triggered_customers")],
                group_name=group,
                kinds={"polars", "sql"},
                description=f"{campaign.name}: the chain of steps for D (new entrants, waits ending on D; "
                "→ journey_pending) and its accrual entries → bonus_accruals.",
            ),
            dg.AssetSpec(
                campaign_key(cid, "message_outbox"),
                deps=[campaign_key(cid, "bonus_accruals")],
                group_name=group,
                kinds={"polars", "sql"},
                description=f"{campaign.name}: rendered messages of D's send steps, after the frequency cap "
                "shared by all campaigns in priority order → message_outbox.",
            ),
        ]
    specs.append(
        dg.AssetSpec(
            STATE_KEY,
            deps=[*(s.key for s in specs), STATE_KEY],
            group_name="segments",
            kinds={"parquet"},
            description="What later dates need from D (own accruals, members, campaign history without "
            "bodies, waiting tokens, the frequency-cap window); read back by D+1.",
        )
    )
    return specs


def _gate_specs(catalog: Catalog, partitions: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    # partitioned like the asset, so each date's gate result is recorded (and read back) for that date
    return [
        dg.AssetCheckSpec(
            GATE,
            asset=campaign_key(c.id, "triggered_customers"),
            partitions_def=partitions,
            description="Fail-closed: none of the campaign's outputs for D when its entrants jump far above "
            "yesterday's.",
        )
        for c in by_priority(catalog)
    ]


class DayConfig(dg.Config):
    """Run configuration of `loyalty_day` (launchpad: ops → loyalty_day → config)."""

    carry_state_over_gap: bool = False
    """Start D from the latest stored state before it even though the dates in between never ran
    (their entrants, accruals and messages are then simply absent, as for a programme that skipped
    them). Off by default: a gap usually means a backfill that has not finished yet."""


def _sample_table(sample: list[dict[str, object]]) -> dict[str, dg.MetadataValue[Any]]:
    """A masked sample (already masked by `masked_sample`) as a table, not a JSON blob."""
    if not sample:
        return {}
    frame = pl.DataFrame(sample)
    # a column that is null on every sampled row has no type: shown as (empty) text
    frame = frame.with_columns(pl.col(c).cast(pl.String()) for c, t in frame.schema.items() if t == pl.Null())
    return table_metadata("sample_masked", frame)


def _tags(key: dg.AssetKey) -> dict[str, str]:
    """The UI's filters: the layer of each output, and the campaign or segment it belongs to."""
    head = key.path[0]
    if head == "campaign":
        return tags("campaign", campaign=key.path[1])
    if head == "segment":
        return tags("segment", segment=key.path[1])
    return tags("state" if key == STATE_KEY else "features")


def build_day_asset(catalog: Catalog, partitions: dg.PartitionsDefinition, storage_dir: Path) -> dg.AssetsDefinition:
    program = catalog.program
    renderer = catalog.renderer()
    specs = _specs(catalog)
    freshness = daily_freshness(program)
    # event tables some rule reads whole (with why); the others load from near D
    whole_history = history_tables(catalog)

    @dg.multi_asset(
        name="loyalty_day",
        outs={
            output_name(spec.key): dg.AssetOut(
                key=spec.key,
                group_name=spec.group_name,
                kinds=set(spec.kinds),
                description=spec.description,
                dagster_type=Any,
                is_required=spec.key == STATE_KEY,
                # campaign rows and segment members: the warehouse table is the storage
                io_manager_key=WAREHOUSE_IO if spec.key.path[0] in ("campaign", "segment") else None,
                owners=OWNERS,
                tags=_tags(spec.key),
                freshness_policy=freshness,
            )
            for spec in specs
        },
        internal_asset_deps={output_name(spec.key): {d.asset_key for d in spec.deps} for spec in specs},
        check_specs=_gate_specs(catalog, partitions),
        ins={
            # handles on the store: the step loads what D's rules read (`load_day_frames`)
            **{f"source_{t}": dg.AssetIn(source_key(t), dagster_type=TableAsOf) for t in SCHEMAS},
            "previous": dg.AssetIn(STATE_KEY, partition_mapping=PREVIOUS_DAY),
        },
        partitions_def=partitions,
        can_subset=False,
    )
    def loyalty_day(
        context: dg.AssetExecutionContext,
        config: DayConfig,
        warehouse: WarehouseResource,
        previous: dict[str, pl.DataFrame] | None,
        **inputs: TableAsOf,
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        point = as_of(context, program)
        state = previous_state(context, previous, point.date, storage_dir, over_gap=config.carry_state_over_gap)
        tables = {name.removeprefix("source_"): t for name, t in inputs.items()}
        loaded: dict[str, int] = {}

        def load(shard: Shard) -> ShardInputs:
            """One shard's rows, read from the store when its turn comes (then dropped)."""
            mine = shard_state(state, shard)
            own = mine.own_accruals(point)
            frames, counts = load_day_frames(tables, point, whole=whole_history, own_accruals=own, shard=shard)
            for table, n in counts.items():
                loaded[table] = loaded.get(table, 0) + n
            own_entered = mine.own_accruals_entered(point)
            rows = day_rows(tables, frames, whole=whole_history, own_entered=own_entered, own_history=own, shard=shard)
            return ShardInputs(frames, mine, rows)

        decided = decision_frames(catalog, state, lambda t: tables[t].scan())
        day = run_day(catalog, decided, point, state, renderer=renderer, shards=program.shards, load=load)
        for family, why in day.feature_rebuilds.items():
            context.log.info(f"features ({family}): rebuilt from history: {why}")
        wh = warehouse.warehouse
        yield dg.Output(
            day.features,
            output_name=output_name(FEATURES_KEY),
            metadata={
                "dagster/row_count": dg.MetadataValue.int(day.features.height),
                "feature_columns": dg.MetadataValue.int(day.features.width),
                "rows_loaded": counts_table(loaded, key="source table", value="rows"),
                "read_whole_history": dg.MetadataValue.json(whole_history),
                "features_rebuilt": dg.MetadataValue.json(day.feature_rebuilds),
            },
        )
        for sid in sorted(catalog.segments):
            yield _segment_output(catalog, wh, sid, point.date, day.members[sid], day.members_yesterday, day.features)
        for result in day.campaigns:
            yield from _campaign_outputs(wh, point.date, result, day.features)
        yield dg.Output(
            day.state.to_frames(),
            output_name=output_name(STATE_KEY),
            metadata={f"{name}_rows": dg.MetadataValue.int(f.height) for name, f in day.state.to_frames().items()},
        )

    return loyalty_day


def _segment_output(
    catalog: Catalog,
    wh: Warehouse,
    sid: str,
    day: date,
    members: pl.DataFrame,
    yesterday: dict[str, pl.DataFrame],
    features: pl.DataFrame,
) -> dg.Output:
    previous = yesterday.get(sid, pl.DataFrame(schema={"customer_id": pl.Int64()}))
    written = write_membership(wh, sid, day, members)
    exports = export_audiences(
        wh,
        members,
        labels=catalog.segments[sid].audiences,
        segment_id=sid,
        partition_date=day,
        exported_at=datetime.now(UTC),
    )
    return dg.Output(
        members,
        output_name=output_name(segment_key(sid)),
        metadata={
            "members": dg.MetadataValue.int(written),
            "entered": dg.MetadataValue.int(members.join(previous, on="customer_id", how="anti").height),
            "left": dg.MetadataValue.int(previous.join(members, on="customer_id", how="anti").height),
            "previous_day_known": dg.MetadataValue.bool(previous.height > 0),
            "target_audiences": dg.MetadataValue.json(exports),
            **_sample_table(masked_sample(members, features)),
            "dagster/row_count": dg.MetadataValue.int(written),
        },
    )


def _campaign_outputs(
    wh: Warehouse, day: date, result: CampaignDay, features: pl.DataFrame
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """The campaign's gate, then (when it passed) its rows for D, written in one transaction."""
    cid = result.campaign.id
    key = lambda name: campaign_key(cid, name)  # noqa: E731
    gate = result.gate
    yield dg.AssetCheckResult(
        asset_key=key("triggered_customers"),
        check_name=GATE,
        passed=gate.passed,
        description=gate.description,
        metadata={k: str(v) for k, v in gate.metadata.items()},
    )
    if write_campaign_day(wh, day, result) is None:
        return  # fail-closed: nothing of this campaign is written for D
    entrants, journey, accruals = result.entered.entrants, result.journey, result.accruals
    assert journey is not None and accruals is not None and result.messages is not None
    batch = result.messages
    entered: dict[str, dg.MetadataValue[Any]] = {k: dg.MetadataValue.int(v) for k, v in result.entered.counts.items()}
    if result.entered.decision is not None:
        decision = result.entered.decision
        entered["ab_decision"] = dg.MetadataValue.json(
            {"winner": decision.winner, "rates": decision.rates, "reason": decision.reason}
        )
    yield dg.Output(
        entrants,
        output_name=output_name(key("triggered_customers")),
        metadata={
            **entered,
            **_sample_table(masked_sample(entrants, features)),
            **column_schema(entrants.schema),
            "dagster/row_count": dg.MetadataValue.int(entrants.height),
        },
    )
    total = accruals.get_column("amount").sum() if accruals.height else 0
    yield dg.Output(
        accruals,
        output_name=output_name(key("bonus_accruals")),
        metadata={
            **{f"journey_{k}": dg.MetadataValue.int(v) for k, v in journey.counts.items()},
            "resumed_from_earlier_days": dg.MetadataValue.int(result.resumed),
            "left_waiting": dg.MetadataValue.int(journey.pending.height),
            "exits": counts_table(
                dict(journey.exits.group_by("reason").len().sort("reason").iter_rows()), key="reason"
            ),
            "accrued_total": dg.MetadataValue.text(str(total)),
            **column_schema(accruals.schema),
            "dagster/row_count": dg.MetadataValue.int(accruals.height),
        },
    )
    outbox = batch.outbox
    yield dg.Output(
        outbox.drop("body", "recipient"),
        output_name=output_name(key("message_outbox")),
        metadata={
            "messages": dg.MetadataValue.int(outbox.height),
            "per_channel": counts_table(
                dict(outbox.group_by("channel").len().sort("channel").iter_rows()), key="channel"
            ),
            "per_variant": counts_table(
                {str(k): v for k, v in outbox.group_by("variant").len().sort("variant").iter_rows()}, key="variant"
            ),
            "skipped_per_reason": counts_table(
                dict(batch.skipped.group_by("reason").len().sort("reason").iter_rows()), key="reason"
            ),
            **column_schema(outbox.drop("body", "recipient").schema),
            "batches": dg.MetadataValue.int(int(cast(int | None, outbox.get_column("batch_no").max()) or 0)),
            "dagster/row_count": dg.MetadataValue.int(outbox.height),
        },
    )


# --- the guard: never compute D on partial state ---------------------------------------------------


def previous_state(
    context: dg.AssetExecutionContext,
    previous: dict[str, pl.DataFrame] | None,
    day: date,
    storage_dir: Path,
    *,
    over_gap: bool = False,
) -> DayState:
    """D−1's state, or the empty state when D is the first date ever run; otherwise stop.

    Stops (before computing anything) when D−1 has no state but an earlier date was run (its state
    is stored; unless `over_gap`, which starts from the latest earlier state) or a run for an earlier
    date is queued or in progress in this Dagster instance: a result computed on partial state would
    differ from day-by-day runs. The message (one line) names the date to run first.
    """
    if previous is not None:
        return DayState.from_frames(previous)
    earlier = [d for d in state_partitions(storage_dir) if d < day]
    if earlier and max(earlier) == day - timedelta(days=1):  # written since the input was loaded
        stored = read_state(storage_dir, max(earlier))
        if stored is not None:
            return DayState.from_frames(stored)
    if earlier and over_gap:
        stored = read_state(storage_dir, max(earlier))
        if stored is not None:
            context.log.warning(f"{day}: carrying the state of {max(earlier)} over the dates in between")
            return DayState.from_frames(stored)
    if earlier:
        first_missing = max(earlier) + timedelta(days=1)
        raise dg.Failure(
            description=f"no loyalty state for {day - timedelta(days=1)}: run {first_missing} first "
            f"(dates {first_missing}..{day - timedelta(days=1)} are missing), then {day}; or run {day} with "
            "carry_state_over_gap: true",
            allow_retries=False,
        )
    active = _earlier_runs(context, day, ACTIVE_RUN_STATUSES)
    if active:
        raise dg.Failure(
            description=f"a run for {min(active)} is queued or in progress: let it finish, then run {day}",
            allow_retries=False,
        )
    failed = _earlier_runs(context, day, FAILED_RUN_STATUSES)
    if failed:
        raise dg.Failure(
            description=f"the run for {min(failed)} failed before storing its state: run {min(failed)} again, "
            f"then {day}",
            allow_retries=False,
        )
    return DayState.empty()


def _earlier_runs(context: dg.AssetExecutionContext, day: date, statuses: tuple[str, ...]) -> list[date]:
    """Earlier dates with a run of these statuses in this instance (a job backfill launches them together)."""
    found = []
    filters = dg.RunsFilter(statuses=[dg.DagsterRunStatus[s] for s in statuses])
    for run in context.instance.get_runs(filters=filters):
        if run.run_id == context.run.run_id:
            continue
        tags = run.tags
        for tag in ("dagster/partition", "dagster/asset_partition_range_start"):
            value = tags.get(tag)
            if value:
                try:
                    other = date.fromisoformat(value)
                except ValueError:
                    continue
                if other < day:
                    found.append(other)
    return found
