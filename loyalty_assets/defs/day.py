"""The day's whole pipeline after the sources as ONE daily multi-asset, `loyalty_day`.

Its outputs keep the asset keys users know: `customer_features`, `segment/<id>/members`, and per
campaign `campaign/<id>/triggered_customers`, `…/bonus_accruals`, `…/message_outbox` (with each
campaign's audience gate as a check), plus `loyalty_state`: what later dates need. The multi-asset
reads `loyalty_state` of D−1 through a previous-partition input, so the cross-day feedback (own
accruals, yesterday's members, campaign history, waiting tokens, the frequency-cap window) is a
declared dependency of itself, which Dagster allows (a cycle through other assets it does not).

Why one step: a day at 5,000 customers used to be 60 Dagster steps whose bookkeeping cost more than
the work. With `shards` > 1 in program.yaml the same outputs come from a graph of steps instead —
`plan` → `shard_<i>` per customer shard → `merge` — that an executor can run in parallel processes
or pods (`_sharded_day_asset`). Business logic is `transforms.campaign_day` (`run_day`, or the
three functions it chains); this module only wires and writes.
"""

import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
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
from loyalty_assets.defs.resources import STATE_FOLDER, STATE_KEY, WarehouseResource
from loyalty_assets.defs.segments import segment_key
from loyalty_assets.defs.sources import source_key
from loyalty_assets.defs.warehouse_io import WAREHOUSE_IO
from loyalty_assets.sources.day_view import NOT_PER_CUSTOMER, TableAsOf, day_rows, load_day_frames
from loyalty_assets.sources.frames import AsOf
from loyalty_assets.sources.schemas import SCHEMAS
from loyalty_assets.transforms.ab_testing import Decision
from loyalty_assets.transforms.audience import closure, masked_sample
from loyalty_assets.transforms.campaign_day import (
    CampaignDay,
    DayPlan,
    DayResult,
    ShardDay,
    ShardInputs,
    by_priority,
    catalog_filters,
    decision_frames,
    finish_day,
    plan_day,
    run_day,
    run_shard,
    shard_state,
)
from loyalty_assets.transforms.day_inputs import history_tables
from loyalty_assets.transforms.day_state import DayState
from loyalty_assets.transforms.features import required_features
from loyalty_assets.transforms.shards import EVERYONE, Shard
from loyalty_assets.warehouse.audiences import export_audiences
from loyalty_assets.warehouse.campaign_rows import write_campaign_day
from loyalty_assets.warehouse.history import StateChanged, StoredState, state_folder, state_partitions
from loyalty_assets.warehouse.membership import write_membership
from loyalty_assets.warehouse.warehouse import Warehouse

GATE = "audience_within_expected_range"
#: the context of `loyalty_day`'s step, or of one of its steps when sharded
StepContext = dg.AssetExecutionContext | dg.OpExecutionContext
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
    """`loyalty_day`: one step (`shards: 1`), or a graph of steps, one per customer shard, between a
    step that plans D and one that merges the shards (`shards` > 1; `_sharded_day_asset`)."""
    if catalog.program.shards > 1:
        return _sharded_day_asset(catalog, partitions, storage_dir)
    program = catalog.program
    renderer = catalog.renderer()
    specs = _specs(catalog)
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
                io_manager_key=_io_manager_key(spec.key),
                owners=OWNERS,
                tags=_tags(spec.key),
                freshness_policy=daily_freshness(program),
            )
            for spec in specs
        },
        internal_asset_deps={output_name(spec.key): {d.asset_key for d in spec.deps} for spec in specs},
        check_specs=_gate_specs(catalog, partitions),
        ins={
            # handles on the store: the step loads what D's rules read (`load_day_frames`)
            **{f"source_{t}": dg.AssetIn(source_key(t), dagster_type=TableAsOf) for t in SCHEMAS},
            "previous": dg.AssetIn(STATE_KEY, partition_mapping=PREVIOUS_DAY, metadata={STATE_FOLDER: True}),
        },
        partitions_def=partitions,
        can_subset=False,
    )
    def loyalty_day(
        context: dg.AssetExecutionContext,
        config: DayConfig,
        warehouse: WarehouseResource,
        previous: StoredState | None,
        **inputs: TableAsOf,
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        point = as_of(context, program)
        start = day_start(catalog, context, previous, point, storage_dir, over_gap=config.carry_state_over_gap)
        state = start.state(EVERYONE)
        tables = _tables(inputs)
        loaded: dict[str, int] = {}
        load = _shard_loader(tables, point, whole_history, lambda shard: shard_state(state, shard), loaded)
        decided = decision_frames(catalog, state, lambda t: tables[t].scan())
        day = run_day(catalog, decided, point, state, renderer=renderer, load=load)
        yield from _day_outputs(catalog, context, warehouse.warehouse, point.date, day, loaded, whole_history)

    return loyalty_day


def _io_manager_key(key: dg.AssetKey) -> str | None:
    # campaign rows and segment members: the warehouse table is the storage
    return WAREHOUSE_IO if key.path[0] in ("campaign", "segment") else None


def _tables(inputs: Mapping[str, TableAsOf]) -> dict[str, TableAsOf]:
    return {name.removeprefix("source_"): t for name, t in inputs.items()}


def _shard_loader(
    tables: Mapping[str, TableAsOf],
    point: AsOf,
    whole_history: Mapping[str, str],
    state_of: Callable[[Shard], DayState],
    loaded: dict[str, int],
) -> Callable[[Shard], ShardInputs]:
    """`load(shard)`: one shard's rows of D's sources and of D−1's state, read from the store when
    its turn comes (then dropped). The rows read are counted into `loaded` as one pass over the
    day reads them, whatever the shard count: a shard's first load only (a failed gate loads it
    again), the tables every shard reads whole (`day_view.NOT_PER_CUSTOMER`) by the first shard."""
    counted: set[Shard] = set()

    def load(shard: Shard) -> ShardInputs:
        mine = state_of(shard)
        own = mine.own_accruals(point)
        frames, counts = load_day_frames(tables, point, whole=whole_history, own_accruals=own, shard=shard)
        if shard not in counted:
            counted.add(shard)
            for table, n in counts.items():
                if shard.index == 0 or table not in NOT_PER_CUSTOMER:
                    loaded[table] = loaded.get(table, 0) + n
        own_entered = mine.own_accruals_entered(point)
        rows = day_rows(tables, frames, whole=whole_history, own_entered=own_entered, own_history=own, shard=shard)
        return ShardInputs(frames, mine, rows)

    return load


def _day_outputs(
    catalog: Catalog,
    context: StepContext,
    wh: Warehouse,
    day: date,
    result: DayResult,
    loaded: Mapping[str, int],
    whole_history: Mapping[str, str],
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """Every output of D's result, written to the warehouse where that is its storage."""
    for family, why in result.feature_rebuilds.items():
        context.log.info(f"features ({family}): rebuilt from history: {why}")
    yield dg.Output(
        result.features,
        output_name=output_name(FEATURES_KEY),
        metadata={
            "dagster/row_count": dg.MetadataValue.int(result.features.height),
            "feature_columns": dg.MetadataValue.int(result.features.width),
            "rows_loaded": counts_table(dict(loaded), key="source table", value="rows"),
            "read_whole_history": dg.MetadataValue.json(whole_history),
            "features_rebuilt": dg.MetadataValue.json(result.feature_rebuilds),
        },
    )
    for sid in sorted(catalog.segments):
        yield _segment_output(catalog, wh, sid, day, result.members[sid], result.members_yesterday, result.features)
    for campaign in result.campaigns:
        yield from _campaign_outputs(wh, day, campaign, result.features)
    frames = result.state.to_frames()
    yield dg.Output(
        frames,
        output_name=output_name(STATE_KEY),
        metadata={f"{name}_rows": dg.MetadataValue.int(f.height) for name, f in frames.items()},
    )


# --- shards as steps -------------------------------------------------------------------------------

#: The IO manager of the values passed between `loyalty_day`'s own steps (the plan, each shard's
#: part of D): pickles under the storage dir, one folder per run (`FilesystemIOManager`); with steps
#: in several pods or workers, the storage dir is a volume they share (README "Customer shards").
STEP_IO = "day_step_io"
STEP_IO_DIR = "loyalty_day_steps"


@dataclass(frozen=True)
class DayStart:
    """What the planning step hands every shard step and the merge: D−1's state (the declared
    input's handle, or the guard's; None: D starts from the empty state) and the adaptive A/B
    decisions made there over every customer (empty in the one-step asset, whose `run_day` makes
    them)."""

    previous: StoredState | None
    decisions: dict[str, Decision | None]

    def state(self, shard: Shard) -> DayState:
        """D−1's state of `shard`'s customers (what is not per customer, whole); stops when it is not
        the version the plan saw (`StoredState`)."""
        return DayState.from_frames(self._frames(shard=shard)) if self.previous is not None else DayState.empty()

    def _frames(self, names: tuple[str, ...] | None = None, shard: Shard = EVERYONE) -> dict[str, pl.DataFrame]:
        assert self.previous is not None
        try:
            return self.previous.frames(names, shard)
        except StateChanged as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc


def day_start(
    catalog: Catalog,
    context: StepContext,
    previous: StoredState | None,
    point: AsOf,
    storage_dir: Path,
    *,
    over_gap: bool,
    tables: Mapping[str, TableAsOf] | None = None,
) -> DayStart:
    """The guard (`previous_folder`), then (given the source `tables`) D's A/B decisions, which
    read only the state's entrants and messages."""
    start = DayStart(previous_folder(context, previous, point.date, storage_dir, over_gap=over_gap), {})
    if tables is None:
        return start
    adaptive = [c for c in by_priority(catalog) if (s := c.ab_split()) is not None and s.adaptive]
    if not adaptive:
        return replace(start, decisions={c.id: None for c in by_priority(catalog)})
    stored = start._frames(names=("triggered", "outbox", "meta")) if start.previous is not None else None
    state = DayState.from_frames(stored) if stored is not None else DayState.empty()
    frames = decision_frames(catalog, state, lambda t: tables[t].scan())
    plan = plan_day(catalog, point, frames=frames, state=state)
    return replace(start, decisions=dict(plan.decisions))


@dataclass(frozen=True)
class ShardOutput:
    """One shard step's result: its part of D and the source rows it read."""

    part: ShardDay
    loaded: dict[str, int]


def _sharded_day_asset(catalog: Catalog, partitions: dg.PartitionsDefinition, storage_dir: Path) -> dg.AssetsDefinition:
    """`loyalty_day` as a graph: `plan` (the guard and the A/B decisions) → `shard_<i>` for each of
    the program's `shards` (a customer shard's features, segments, entrants, journeys, accruals and
    rendered messages: independent steps, run in parallel by the multiprocess, celery or k8s
    executor) → `merge` (the audience gates over all shards, the hourly limits, D's state, the
    warehouse writes). The outputs and checks are those of the one-step asset, row for row."""
    program = catalog.program
    count = program.shards
    renderer = catalog.renderer()
    specs = _specs(catalog)
    whole_history = history_tables(catalog)
    source_ins = {f"source_{t}": dg.In(dagster_type=TableAsOf) for t in SCHEMAS}
    check_specs = _gate_specs(catalog, partitions)

    def plan_for(context: dg.OpExecutionContext, start: DayStart) -> DayPlan:
        point = as_of(context, program)
        return plan_day(catalog, point, decisions=start.decisions, renderer=renderer, shards=count)

    @dg.op(
        name="plan",
        ins={**source_ins, "previous": dg.In(dagster_type=Any, metadata={STATE_FOLDER: True})},
        out=dg.Out(DayStart, io_manager_key=STEP_IO),
        description="The guard against partial state, and D's adaptive A/B decisions (over every customer).",
    )
    def plan_step(
        context: dg.OpExecutionContext, config: DayConfig, previous: StoredState | None, **inputs: TableAsOf
    ) -> DayStart:
        point = as_of(context, program)
        return day_start(
            catalog,
            context,
            previous,
            point,
            storage_dir,
            over_gap=config.carry_state_over_gap,
            tables=_tables(inputs),
        )

    def shard_step(index: int) -> dg.OpDefinition:
        shard = Shard(index, count)

        @dg.op(
            name=f"shard_{index}",
            ins={"start": dg.In(DayStart), **source_ins},
            out=dg.Out(ShardOutput, io_manager_key=STEP_IO),
            description=f"Customer shard {shard}: its customers' part of D, read from the store alone.",
            tags={"loyalty/shard": str(index)},
        )
        def run_one(context: dg.OpExecutionContext, start: DayStart, **inputs: TableAsOf) -> ShardOutput:
            plan = plan_for(context, start)
            loaded: dict[str, int] = {}
            load = _shard_loader(_tables(inputs), plan.point, whole_history, start.state, loaded)
            return ShardOutput(run_shard(plan, load(shard)), loaded)

        return run_one

    outs = {
        output_name(spec.key): dg.Out(Any, io_manager_key=_io_manager_key(spec.key), is_required=spec.key == STATE_KEY)
        for spec in specs
    }
    check_outs = {spec.get_python_identifier(): dg.Out(Any, is_required=False) for spec in check_specs}

    @dg.op(
        name="merge",
        ins={"start": dg.In(DayStart), "parts": dg.In(Any), **source_ins},
        out={**outs, **check_outs},
        description="The audience gates over every shard, the hourly limits, D's state, the warehouse writes.",
    )
    def merge_step(
        context: dg.OpExecutionContext,
        warehouse: WarehouseResource,
        start: DayStart,
        parts: list[ShardOutput],
        **inputs: TableAsOf,
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        plan = plan_for(context, start)
        loaded: dict[str, int] = {}
        for p in parts:
            for table, n in p.loaded.items():
                loaded[table] = loaded.get(table, 0) + n
        load = _shard_loader(_tables(inputs), plan.point, whole_history, start.state, {})
        shard_days = [p.part for p in parts]
        del parts
        result = finish_day(plan, shard_days, lambda shard, held: run_shard(plan, load(shard), held))
        del shard_days
        yield from _day_outputs(catalog, context, warehouse.warehouse, plan.point.date, result, loaded, whole_history)
        # D is written: the steps' values are needed no more, neither this run's nor those of the runs
        # it re-executes (a failed merge keeps them for a re-execution from failure)
        run = context.run
        for run_id in {run.run_id, run.parent_run_id, run.root_run_id} - {None}:
            shutil.rmtree(storage_dir / STEP_IO_DIR / str(run_id), ignore_errors=True)

    shard_steps = [shard_step(i) for i in range(count)]
    graph_ins = {name: dg.GraphIn() for name in [*source_ins, "previous"]}
    graph_outs = {name: dg.GraphOut() for name in [*outs, *check_outs]}

    def compose(**inputs: Any) -> dict[str, Any]:
        sources = {name: inputs[name] for name in source_ins}
        start = plan_step(previous=inputs["previous"], **sources)
        parts = [step(start=start, **sources) for step in shard_steps]
        merged = merge_step(start=start, parts=parts, **sources)
        return {name: getattr(merged, name) for name in graph_outs}

    graph = dg.graph(
        name="loyalty_day",
        ins=graph_ins,
        out=graph_outs,
        config=dg.ConfigMapping(
            config_fn=lambda cfg: {"plan": {"config": cfg}},
            config_schema={"carry_state_over_gap": dg.Field(bool, default_value=False, is_required=False)},
        ),
        description="The day after the sources, in customer shards: plan → shard_<i> → merge.",
    )(compose)
    by_output = {output_name(spec.key): spec for spec in specs}
    freshness = daily_freshness(program)
    asset = dg.AssetsDefinition.from_graph(
        graph,
        keys_by_input_name={
            **{f"source_{t}": source_key(t) for t in SCHEMAS},
            "previous": STATE_KEY,
        },
        keys_by_output_name={name: spec.key for name, spec in by_output.items()},
        internal_asset_deps={name: {d.asset_key for d in spec.deps} for name, spec in by_output.items()},
        partitions_def=partitions,
        partition_mappings={"previous": PREVIOUS_DAY},
        group_names_by_output_name={name: spec.group_name for name, spec in by_output.items()},
        descriptions_by_output_name={name: spec.description or "" for name, spec in by_output.items()},
        tags_by_output_name={
            name: {**_tags(spec.key), **{f"dagster/kind/{k}": "" for k in spec.kinds}}
            for name, spec in by_output.items()
        },
        owners_by_output_name={name: OWNERS for name in by_output},
        check_specs=check_specs,
        can_subset=False,
    )
    return asset.map_asset_specs(lambda spec: spec.replace_attributes(freshness_policy=freshness))


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


def previous_folder(
    context: StepContext,
    previous: StoredState | None,
    day: date,
    storage_dir: Path,
    *,
    over_gap: bool = False,
) -> StoredState | None:
    """D−1's stored state (the declared input's), or None (the empty state) when D is the first
    date ever run; otherwise stop.

    Stops (before computing anything) when D−1 has no state but an earlier date was run (its state
    is stored; unless `over_gap`, which starts from the latest earlier state) or a run for an earlier
    date is queued or in progress in this Dagster instance: a result computed on partial state would
    differ from day-by-day runs. The message (one line) names the date to run first.
    """
    if previous is not None:
        return previous
    earlier = [d for d in state_partitions(storage_dir) if d < day]
    if earlier and max(earlier) == day - timedelta(days=1):  # written since the input was loaded
        return StoredState.at(state_folder(storage_dir, max(earlier)))
    if earlier and over_gap:
        context.log.warning(f"{day}: carrying the state of {max(earlier)} over the dates in between")
        return StoredState.at(state_folder(storage_dir, max(earlier)))
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
    return None


def _earlier_runs(context: StepContext, day: date, statuses: tuple[str, ...]) -> list[date]:
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
