"""One campaign on one date, as plain functions: entrants → journeys → accruals → messages.

The Dagster assets and the dry run call exactly these functions with the same inputs (read from
the warehouse and the day's sources), so a dry run shows what a real run writes. Also here: the
fail-closed gates and the small derived inputs (favourite category names, manual segments).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, timedelta
from decimal import Decimal

import polars as pl

from loyalty_assets.config.campaigns import Campaign, EventTrigger, Gates, Program, SegmentAction
from loyalty_assets.config.catalog import Catalog
from loyalty_assets.config.filters import Filter
from loyalty_assets.config.segments import SegmentDefinition
from loyalty_assets.sources.frames import AsOf, SourceFrames
from loyalty_assets.transforms.ab_testing import Decision, adaptive_decision
from loyalty_assets.transforms.accruals import build_accruals
from loyalty_assets.transforms.audience import audience_ids, manual_members
from loyalty_assets.transforms.cashback import favourite_period_summary
from loyalty_assets.transforms.control_groups import global_control_members
from loyalty_assets.transforms.day_inputs import reads_lots
from loyalty_assets.transforms.day_state import (
    MANUAL_EVENT_SCHEMA,
    DayState,
    EntrantRetention,
    manual_members_at,
    state_keys,
)
from loyalty_assets.transforms.entry import select_entrants
from loyalty_assets.transforms.feature_carry import DayRows, FeatureCarry, advance_carry, carried_features, carried_lots
from loyalty_assets.transforms.features import compute_features, required_features
from loyalty_assets.transforms.ids import step_output_id
from loyalty_assets.transforms.journey import (
    TOKEN_SCHEMA,
    JourneyDay,
    compile_chain,
    run_journeys,
    start_tokens,
)
from loyalty_assets.transforms.ledger import provide_lots
from loyalty_assets.transforms.local_time import add_local_date, with_zone
from loyalty_assets.transforms.messages import MessageBatch, build_messages, schedule_messages
from loyalty_assets.transforms.segments import evaluate_segments
from loyalty_assets.transforms.shards import (
    Shard,
    add_counts,
    all_shards,
    in_canonical_order,
    stack,
    stack_frames,
    stack_series,
)
from loyalty_assets.transforms.templates import TemplateRenderer
from loyalty_assets.transforms.triggers import TRIGGERED_SCHEMA, fire


@dataclass(frozen=True)
class CampaignHistory:
    """What earlier dates wrote for this campaign (read from the warehouse)."""

    triggered: pl.DataFrame  # customer_id, occasion, partition_date, variant, is_control
    outbox: pl.DataFrame  # message_id, customer_id, variant, send_at
    pending_due: pl.DataFrame  # TOKEN_SCHEMA: tokens due on D, written by earlier dates

    @classmethod
    def empty(cls) -> CampaignHistory:
        """No earlier runs (a new warehouse)."""
        return cls(
            triggered=pl.DataFrame(
                schema={
                    "customer_id": pl.Int64(),
                    "occasion": pl.String(),
                    "partition_date": pl.Date(),
                    "variant": pl.String(),
                    "is_control": pl.Boolean(),
                }
            ),
            outbox=pl.DataFrame(
                schema={
                    "message_id": pl.String(),
                    "customer_id": pl.Int64(),
                    "variant": pl.String(),
                    "send_at": pl.Datetime("us", "UTC"),
                }
            ),
            pending_due=pl.DataFrame(schema=TOKEN_SCHEMA),
        )


@dataclass(frozen=True)
class EntrantsResult:
    """Who entered, how many each rule removed, and the inputs of those rules (for `loyalty explain`)."""

    entrants: pl.DataFrame
    counts: dict[str, int]
    decision: Decision | None = None
    fired: pl.DataFrame | None = None  # the trigger's hits before any rule
    audience: pl.Series | None = None  # customers allowed by the audience (None = everybody)
    global_control: pl.Series | None = None  # members of the global control group on D


def campaign_entrants(
    campaign: Campaign,
    *,
    program: Program,
    as_of: AsOf,
    frames: SourceFrames,
    features: pl.DataFrame,
    segments: Mapping[str, SegmentDefinition],
    members_today: Mapping[str, pl.DataFrame],
    members_yesterday: Mapping[str, pl.DataFrame],
    history: CampaignHistory,
    decision: Decision | None,
    manual_segments: Iterable[str] = (),
) -> EntrantsResult:
    """Who enters on D (with control flags and variants), and how many each rule removed.

    A saved segment with no members recorded yesterday is taken as unknown (the day was not run);
    `manual_segments` (kept by campaign steps as an event log) are always known. `decision`: the
    adaptive split's (`campaign_decision`, made over every customer), None without one.
    """
    if not campaign.is_live_on(as_of.date):
        empty = pl.DataFrame(schema=TRIGGERED_SCHEMA)
        entrants, counts = select_entrants(
            campaign, empty, run_date=as_of.date, audience=None, history=history.triggered
        )
        return EntrantsResult(entrants, {**counts, "not_live": 1})
    segment = campaign.trigger.segment if isinstance(campaign.trigger, EventTrigger) else None
    fired = fire(
        campaign.trigger,
        frames,
        as_of,
        segment_today=members_today.get(segment) if segment else None,
        segment_yesterday=(
            members_yesterday.get(segment) if segment in manual_segments else _known(members_yesterday.get(segment))
        )
        if segment
        else None,
    )
    segment_members = (
        members_today.get(campaign.audience.segment) if campaign.audience and campaign.audience.segment else None
    )
    audience = audience_ids(campaign, features, segment_members, segments, members_today)
    global_control = None
    if program.global_control_group is not None:
        global_control = global_control_members(
            frames.customers.get_column("customer_id"), program.global_control_group, as_of.date
        ).get_column("customer_id")
    entrants, counts = select_entrants(
        campaign,
        fired,
        run_date=as_of.date,
        audience=audience,
        history=history.triggered,
        global_control=global_control,
        winner=decision.winner if decision else None,
    )
    return EntrantsResult(entrants, counts, decision, fired=fired, audience=audience, global_control=global_control)


def campaign_decision(campaign: Campaign, as_of: AsOf, state: DayState, frames: SourceFrames) -> Decision | None:
    """The adaptive A/B split's decision for D (None without one), from every customer's history:
    it compares the variants' rates, so it is made once, before the day's work is split by shard."""
    split = campaign.ab_split()
    if split is None or split.adaptive is None or not campaign.is_live_on(as_of.date):
        return None
    return adaptive_decision(
        split,
        as_of.date,
        history=state.campaign_triggered(campaign.id).filter(pl.col("partition_date") < as_of.date),
        outbox=state.campaign_outbox(campaign.id),
        communications=frames.communications,
        checks=frames.checks,
        attribution_days=campaign.settings.attribution_days,
        confidence=float(campaign.settings.confidence),
    )


def decision_frames(catalog: Catalog, state: DayState, scan: Callable[[str], pl.LazyFrame]) -> SourceFrames:
    """What `campaign_decision` reads of the sources, when the day's frames are loaded by shard: the
    checks and message events of the adaptive splits' entrants (every test customer is one; the
    decision reads no one else's rows). `scan(table)`: the table as of D."""
    adaptive = [c.id for c in catalog.campaigns.values() if (s := c.ab_split()) is not None and s.adaptive]
    if not adaptive:
        return SourceFrames.from_tables({})
    ids = state.triggered.filter(pl.col("campaign_id").is_in(adaptive)).get_column("customer_id").unique()
    wanted = pl.col("customer_id").is_in(ids.implode())
    return SourceFrames.from_tables({t: scan(t).filter(wanted).collect() for t in ("checks", "communications")})


def _known(members: pl.DataFrame | None) -> pl.DataFrame | None:
    """Yesterday's members, or None when there are none recorded (the day was probably never run)."""
    return members if members is not None and members.height else None


def campaign_journeys(
    campaign: Campaign,
    entrants: pl.DataFrame,
    *,
    as_of: AsOf,
    features: pl.DataFrame,
    members: Mapping[str, pl.DataFrame],
    pending_due: pl.DataFrame,
) -> JourneyDay:
    """Today's entrants start at the first step; tokens due today continue where they waited."""
    first, _ = compile_chain(campaign.steps)
    tokens = pl.concat([start_tokens(entrants, first), pending_due.select(list(TOKEN_SCHEMA)).cast(TOKEN_SCHEMA)])  # type: ignore[arg-type]
    return run_journeys(campaign, tokens, as_of=as_of, features=features, members=members)


def campaign_accruals(campaign: Campaign, journey_actions: pl.DataFrame) -> pl.DataFrame:
    return build_accruals(campaign, journey_actions)


def campaign_messages(
    campaign: Campaign,
    journey_actions: pl.DataFrame,
    *,
    program: Program,
    as_of: AsOf,
    frames: SourceFrames,
    accruals: pl.DataFrame,
    renderer: TemplateRenderer,
    recent_messages: pl.DataFrame | None,
    schedule: bool = True,
) -> MessageBatch:
    return build_messages(
        campaign,
        journey_actions,
        accruals,
        frames.customers,
        renderer,
        as_of,
        favourites=favourite_names(frames, as_of).join(
            favourite_period_summary(frames, as_of, journey_actions.get_column("customer_id").unique()),
            on="customer_id",
            how="full",
            coalesce=True,
        ),
        recent_messages=recent_messages,
        frequency_cap=program.frequency_cap,
        schedule=schedule,
    )


def favourite_names(frames: SourceFrames, as_of: AsOf) -> pl.DataFrame:
    """`customer_id, favourite_categories` (names, sorted) chosen for the period containing D."""
    chosen = frames.favourite_categories.filter(
        (pl.col("period_start") <= as_of.date)
        & (pl.col("period_end") >= as_of.date)
        & (pl.col("chosen_at") < as_of.cutoff_literal)
    )
    named = chosen.join(frames.categories.select("category_id", "name"), on="category_id", how="left")
    return named.group_by("customer_id").agg(pl.coalesce("name", "category_id").sort().alias("favourite_categories"))


manual_segment_members = manual_members_at  # the name the gates' tests and older callers use


def segment_actions(campaign: Campaign, actions: pl.DataFrame) -> pl.DataFrame:
    """Rows of `manual_segment_events` for executed add/remove-segment steps."""
    parts = []
    for step in campaign.all_steps():
        if isinstance(step, SegmentAction):
            done = actions.filter(pl.col("step_id") == step.id)
            parts.append(
                done.select(
                    step_output_id(campaign.id, step.id).alias("event_id"),
                    pl.lit(step.segment).alias("segment_id"),
                    "customer_id",
                    pl.lit("add" if step.type == "add_to_segment" else "remove").alias("action"),
                    pl.col("at").alias("ts"),
                    pl.lit(campaign.id).alias("campaign_id"),
                )
            )
    schema = MANUAL_EVENT_SCHEMA
    return pl.concat(parts).cast(schema) if parts else pl.DataFrame(schema=schema)  # type: ignore[arg-type]


# --- fail-closed gates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    passed: bool
    description: str
    metadata: dict[str, object] = field(default_factory=dict)


def audience_gate(gates: Gates, day: date, today: int, yesterday: int | None) -> GateResult:
    """Fail when today's entrants are more than `max_audience_jump` × yesterday's."""
    meta: dict[str, object] = {"entrants_today": today, "entrants_yesterday": yesterday}
    if gates.max_audience_jump is None:
        return GateResult(True, "audience gate disabled", meta)
    if yesterday is None or yesterday < gates.min_audience_for_jump:
        return GateResult(True, f"yesterday below {gates.min_audience_for_jump} entrants: no comparison", meta)
    limit = Decimal(yesterday) * gates.max_audience_jump
    if Decimal(today) <= limit:
        return GateResult(True, f"{today} entrants within {gates.max_audience_jump}× yesterday's {yesterday}", meta)
    if day in gates.override_dates:
        return GateResult(True, f"{today} entrants exceed {limit} but {day} is in gates.override_dates", meta)
    return GateResult(
        False,
        f"{today} entrants is more than {gates.max_audience_jump}× yesterday's {yesterday}: outputs held back; "
        f"fix the data or add {day} to settings.gates.override_dates",
        meta,
    )


def checks_volume_gate(
    checks: pl.DataFrame, as_of: AsOf, ratio: Decimal | None, override_dates: tuple[date, ...] = ()
) -> GateResult:
    """Fail when yesterday's checks are below `ratio` × the median of the 28 days before it.

    Yesterday (D−1) is the last complete day when the morning run for D starts. Days are the
    program zone's. With fewer than 7 days of history there is nothing to compare with.
    """
    yesterday = as_of.date - timedelta(days=1)
    window_start = yesterday - timedelta(days=28)
    zoned = with_zone(
        checks.select("ts").with_columns(pl.lit(None, dtype=pl.String()).alias("timezone")), as_of.program_tz
    )
    days = add_local_date(zoned, "ts", "day").filter((pl.col("day") >= window_start) & (pl.col("day") <= yesterday))
    per_day = dict(days.group_by("day").len().iter_rows())
    previous = [per_day.get(window_start + timedelta(days=i), 0) for i in range(28)]
    got = per_day.get(yesterday, 0)
    meta: dict[str, object] = {
        "checks_yesterday": got,
        "days_with_checks_before": sum(1 for n in previous if n),
    }
    if ratio is None:
        return GateResult(True, "checks gate disabled", meta)
    if sum(1 for n in previous if n) < 7:
        return GateResult(True, "fewer than 7 days of history: no comparison", meta)
    # days before the first day with checks are days before the data starts, not days without sales
    first = next(i for i, n in enumerate(previous) if n)
    median = statistics.median(previous[first:])
    meta["median_28_days"] = median
    if got >= float(ratio) * median:
        return GateResult(True, f"{got} checks on {yesterday} vs median {median}", meta)
    if as_of.date in override_dates:
        return GateResult(True, f"{got} checks on {yesterday} below {ratio}× median {median}, overridden", meta)
    return GateResult(
        False,
        f"only {got} checks on {yesterday}, below {ratio}× the 28-day median {median}: campaigns held back; "
        f"load the missing checks or add {as_of.date} to gate_override_dates in program.yaml",
        meta,
    )


# --- the whole day: features → segments → every campaign, in priority order --------------------


def entrant_retention(campaign: Campaign) -> EntrantRetention:
    """What of the campaign's entrants `select_entrants` can use on later dates (see `trim_entrants`)."""
    split = campaign.ab_split()
    return EntrantRetention.of(
        campaign.settings.reentry_days,
        bool(campaign.settings.once_per_customer),
        adaptive=split is not None and bool(split.adaptive),
    )


def catalog_filters(catalog: Catalog) -> list[Filter]:
    """Every filter the catalog uses: saved segments and campaigns' inline audiences."""
    filters = [s.filter for s in catalog.segments.values()]
    filters += [c.audience.filter for c in catalog.campaigns.values() if c.audience and c.audience.filter]
    return filters


def by_priority(catalog: Catalog) -> list[Campaign]:
    """Campaigns in frequency-cap order: a higher priority (lower number) claims the cap first."""
    return sorted(catalog.campaigns.values(), key=lambda c: (c.settings.priority, c.id))


def day_features(
    catalog: Catalog, frames: SourceFrames, point: AsOf, filters: list[Filter] | None = None
) -> pl.DataFrame:
    """The shared per-customer features for D (for `filters`, default: the whole catalog's)."""
    return compute_features(frames, point, required_features(catalog_filters(catalog) if filters is None else filters))


def carried_day_features(
    catalog: Catalog, frames: SourceFrames, point: AsOf, state: DayState, rows: DayRows
) -> tuple[pl.DataFrame, FeatureCarry, dict[str, str]]:
    """`day_features` from the feature states D−1 left in `state`, advanced with D's `rows`
    (`frames` then need only the per-customer tables whole); the states for D+1; and, per family
    rebuilt from history instead of advanced, why."""
    filters = catalog_filters(catalog)
    specs = required_features(filters)
    lots, lots_rebuilt = None, None
    if reads_lots(catalog, filters):  # before the features: `bonus_balance` reads them too
        lots, lots_rebuilt = carried_lots(state.features, point, rows)
        provide_lots(frames, point.cutoff, lots)
    carry, rebuilt = advance_carry(
        state.features, point, specs, rows, customers=frames.customers, categories=frames.categories
    )
    if lots is not None:
        carry = replace(carry, lots=lots, lots_day=point.date)
        if lots_rebuilt is not None:
            rebuilt["lots"] = lots_rebuilt
    return carried_features(frames, point, specs, carry), carry, rebuilt


@dataclass(frozen=True)
class CampaignDay:
    """One campaign's results for D; `journey`/`accruals`/`messages` are None when its gate failed."""

    campaign: Campaign
    entered: EntrantsResult
    gate: GateResult
    resumed: int
    journey: JourneyDay | None = None
    accruals: pl.DataFrame | None = None
    segment_events: pl.DataFrame | None = None
    messages: MessageBatch | None = None


@dataclass(frozen=True)
class DayResult:
    features: pl.DataFrame
    members: dict[str, pl.DataFrame]
    members_yesterday: dict[str, pl.DataFrame]
    campaigns: list[CampaignDay]
    state: DayState
    #: feature families rebuilt from history rather than advanced from D−1's state, with the reason
    feature_rebuilds: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ShardInputs:
    """What one shard of D's run reads: its customers' rows of D's sources and of D−1's state, and
    (carried features) of the rows that entered the store on D."""

    frames: SourceFrames
    state: DayState
    rows: DayRows | None = None


def shard_inputs(inputs: ShardInputs, shard: Shard) -> ShardInputs:
    """`inputs` restricted to the customers of `shard` (the whole inputs for a single shard)."""
    if shard.whole:
        return inputs
    tables = {f.name: getattr(inputs.frames, f.name) for f in fields(inputs.frames) if f.init}
    return ShardInputs(
        SourceFrames.from_tables(shard_tables(tables, shard)),
        shard_state(inputs.state, shard),
    )


def shard_state(state: DayState, shard: Shard) -> DayState:
    """The state's rows of `shard`'s customers (what is not per customer, whole)."""
    if shard.whole:
        return state
    return DayState.from_frames({name: shard.rows(f) for name, f in state.to_frames().items()})


def shard_tables(tables: Mapping[str, pl.DataFrame], shard: Shard) -> dict[str, pl.DataFrame]:
    """Source tables of `shard`'s customers; check lines follow their checks, categories stay whole."""
    out = {name: shard.rows(frame) for name, frame in tables.items()}
    if "check_items" in out and "checks" in out and not shard.whole:
        out["check_items"] = out["check_items"].join(out["checks"].select("check_id"), on="check_id", how="semi")
    return out


@dataclass
class ShardDay:
    """One shard's share of D: everything per customer, before the gates and the hourly limits.
    Consumed by `finish_day`, which lets go of each part once merged (one copy of a day at a time);
    picklable, so a shard can be a step of its own (`defs.day`) whose result another step merges."""

    features: pl.DataFrame | None
    members: dict[str, pl.DataFrame]
    members_yesterday: dict[str, pl.DataFrame]
    campaigns: list[CampaignDay | None]
    yesterday_entrants: dict[str, int]
    state: DayState  # D−1's, of this shard's customers
    carry: FeatureCarry | None
    feature_rebuilds: dict[str, str]


@dataclass(frozen=True)
class DayPlan:
    """What every shard of D shares: the campaigns in priority order and their adaptive A/B
    decisions (made once, from every customer's history, before the work is split)."""

    catalog: Catalog
    point: AsOf
    renderer: TemplateRenderer
    ordered: list[Campaign]
    decisions: Mapping[str, Decision | None]
    shards: int = 1


def plan_day(
    catalog: Catalog,
    point: AsOf,
    *,
    decisions: Mapping[str, Decision | None] | None = None,
    frames: SourceFrames | None = None,
    state: DayState | None = None,
    renderer: TemplateRenderer | None = None,
    only: Iterable[str] | None = None,
    shards: int = 1,
) -> DayPlan:
    """D's plan: the decisions as given (a shard step gets them from the step that made them), else
    made from `frames` (`decision_frames` suffices) and D−1's `state`."""
    ordered = by_priority(catalog)
    if only is not None:
        wanted = set(only)
        last = max((i for i, c in enumerate(ordered) if c.id in wanted), default=-1)
        cap = catalog.program.frequency_cap
        ordered = ordered[: last + 1] if cap is not None else [c for c in ordered if c.id in wanted]
    if decisions is None:
        if frames is None or state is None:
            raise ValueError("plan_day: the decisions, or the frames and state to make them from")
        decisions = {c.id: campaign_decision(c, point, state, frames) for c in ordered}
    return DayPlan(catalog, point, renderer or catalog.renderer(), ordered, dict(decisions), shards)


def run_day(
    catalog: Catalog,
    frames: SourceFrames,
    point: AsOf,
    state: DayState,
    *,
    renderer: TemplateRenderer | None = None,
    only: Iterable[str] | None = None,
    shards: int = 1,
    load: Callable[[Shard], ShardInputs] | None = None,
) -> DayResult:
    """The whole daily pipeline for D, given D's sources and the state D−1's run left.

    `frames.own_accruals` must be `state.own_accruals(point)`. Campaigns run in priority order so
    the frequency cap is one arbitration across campaigns: each sees earlier dates' messages (from
    the state) and the messages of higher-priority campaigns today, as planned before the hourly
    limit spreads them. `only` restricts the campaigns (a dry run of one campaign still runs the
    higher-priority ones, whose messages count toward the cap). The asset, the dry run and nothing
    else compute a day, all through this function or (a shard per Dagster step) the three it
    chains: `plan_day`, `run_shard` per shard, `finish_day`.

    The per-customer work runs in `shards` customer shards in turn (`transforms.shards`), each on
    its customers' inputs: `load(shard)` when given (the one-step daily asset: the day read straight
    from the store, with D's `rows` for the carried features, `carried_day_features`; `frames` then
    need only hold what the decisions read, `decision_frames`), else `frames`/`state` split in
    memory, the features computed from all history (the dry run, previews), with the same result.
    The sharded daily asset runs each shard as a step of its own instead (`defs.day`). Around the
    shards, once: the adaptive A/B decisions before (from `frames` and `state`: every customer's
    history), the audience gates and hourly limits after. The result is the same, row for row and
    in the same order, for every shard count.
    """
    plan = plan_day(catalog, point, frames=frames, state=state, renderer=renderer, only=only, shards=shards)
    whole = ShardInputs(frames, state)
    inputs = load or (lambda shard: shard_inputs(whole, shard))
    parts = [run_shard(plan, inputs(shard)) for shard in all_shards(shards)]
    return finish_day(plan, parts, lambda shard, held: run_shard(plan, inputs(shard), held))


def finish_day(plan: DayPlan, parts: list[ShardDay], rerun: Callable[[Shard, frozenset[str]], ShardDay]) -> DayResult:
    """The audience gates over every shard's entrants, then the shards merged into D's result.

    A gate that fails is known only once every shard counted its entrants: `rerun(shard, held)`
    then runs each shard again with those campaigns held back after their entrants (a day with a
    failed gate costs twice; a lower-priority campaign's frequency cap no longer counts the held
    campaign's messages, so its rows may change too).
    """
    point, ordered = plan.point, plan.ordered
    held: frozenset[str] = frozenset()
    while True:
        gates = {
            c.id: audience_gate(
                c.settings.gates,
                point.date,
                sum(_part(p.campaigns, i).entered.entrants.height for p in parts),
                sum(p.yesterday_entrants[c.id] for p in parts) or None,
            )
            for i, c in enumerate(ordered)
        }
        failed = {cid for cid, gate in gates.items() if not gate.passed}
        if failed <= held:
            return _merge(plan.catalog, point, parts, ordered, gates)
        held |= failed
        parts = [rerun(shard, held) for shard in all_shards(len(parts))]


def run_shard(plan: DayPlan, inputs: ShardInputs, held: frozenset[str] = frozenset()) -> ShardDay:
    """Everything per customer for one shard; the campaigns in `held` (their gate failed) stop
    after their entrants."""
    return _run_shard(plan.catalog, inputs, plan.point, plan.renderer, plan.ordered, plan.decisions, held)


def _run_shard(
    catalog: Catalog,
    inputs: ShardInputs,
    point: AsOf,
    renderer: TemplateRenderer,
    ordered: list[Campaign],
    decisions: Mapping[str, Decision | None],
    held: frozenset[str],
) -> ShardDay:
    """Everything per customer for one shard; the campaigns in `held` (their gate failed) stop
    after their entrants."""
    program = catalog.program
    frames, state, rows = inputs.frames, inputs.state, inputs.rows
    carry: FeatureCarry | None = None
    rebuilt: dict[str, str] = {}
    if rows is None:
        features = day_features(catalog, frames, point)
    else:
        features, carry, rebuilt = carried_day_features(catalog, frames, point, state, rows)
    manual = catalog.manual_segments
    manual_today = state.manual_members(manual, point.date, point.program_tz)
    # saved segments may read manual ones (kept by campaign steps): their members as D begins
    members = evaluate_segments(catalog.segments, features, manual_members(catalog.segments, manual_today))
    known = state.as_of == point.date - timedelta(days=1)
    saved_yesterday = state.segment_members(catalog.segments) if known else {}
    members_today = {**manual_today, **members}
    members_yesterday = {**state.manual_members(manual, point.date - timedelta(days=1), point.program_tz)}
    members_yesterday |= saved_yesterday
    cap = program.frequency_cap
    earlier_messages = state.recent_messages(point, cap.days) if cap is not None else None
    today_messages: list[pl.DataFrame] = []
    results: list[CampaignDay | None] = []
    yesterday_entrants = {}
    for campaign in ordered:
        cid = campaign.id
        history = CampaignHistory(
            triggered=state.campaign_triggered(cid),
            outbox=state.campaign_outbox(cid),
            pending_due=state.pending_due(cid, point),
        )
        entered = campaign_entrants(
            campaign,
            program=program,
            as_of=point,
            frames=frames,
            features=features,
            segments=catalog.segments,
            members_today=members_today,
            members_yesterday=members_yesterday,
            history=history,
            decision=decisions[cid],
            manual_segments=manual,
        )
        yesterday_entrants[cid] = state.entrants_on(cid, point.date - timedelta(days=1))
        if cid in held:
            results.append(CampaignDay(campaign, entered, _HELD, history.pending_due.height))
            continue
        journey = campaign_journeys(
            campaign,
            entered.entrants,
            as_of=point,
            features=features,
            members=members_today,
            pending_due=history.pending_due,
        )
        accruals = campaign_accruals(campaign, journey.actions)
        occasion_accruals = pl.concat(
            [state.campaign_accruals(cid).select(accruals.columns).cast(accruals.schema), accruals]
        )
        recent = None
        if cap is not None and earlier_messages is not None:
            recent = pl.concat(
                [earlier_messages.select("customer_id", "channel", "send_at")]
                + [m.select("customer_id", "channel", "send_at") for m in today_messages]
            )
        batch = campaign_messages(
            campaign,
            journey.actions,
            program=program,
            as_of=point,
            frames=frames,
            accruals=occasion_accruals,
            renderer=renderer,
            recent_messages=recent,
            schedule=False,  # over every shard's messages, in `_merge_campaign`
        )
        today_messages.append(batch.outbox)
        results.append(
            CampaignDay(
                campaign,
                entered,
                _PASSED,
                history.pending_due.height,
                journey=journey,
                accruals=accruals,
                segment_events=segment_actions(campaign, journey.actions),
                messages=batch,
            )
        )
    return ShardDay(features, members, members_yesterday, results, yesterday_entrants, state, carry, rebuilt)


#: placeholders of a shard's gate: the real one is decided over all shards (`run_day`)
_PASSED = GateResult(True, "decided over all shards")
_HELD = GateResult(False, "decided over all shards")


def _merge(
    catalog: Catalog, point: AsOf, parts: list[ShardDay], ordered: list[Campaign], gates: Mapping[str, GateResult]
) -> DayResult:
    """The shards' results as one day in canonical row order, the hourly limits, and D's state
    (from D−1's state of every shard: the same state whatever the shard count)."""
    campaigns = []
    for i, campaign in enumerate(ordered):
        pieces = [_part(p.campaigns, i) for p in parts]
        for p in parts:
            p.campaigns[i] = None
        campaigns.append(_merge_campaign(campaign, pieces, gates[campaign.id]))
        del pieces
    features = stack([p.features for p in parts if p.features is not None], first=["customer_id"])
    for p in parts:
        p.features = None
    members = _stack_members([p.members for p in parts])
    carries = [p.carry for p in parts if p.carry is not None]
    # the order of these rows does not reach D's state, which is put in canonical order at the end
    carry = carries[0] if len(carries) == 1 else None
    if len(carries) > 1:  # one shard's carry is passed on as it is
        carry = FeatureCarry.from_frames(stack_frames((c.to_frames() for c in carries), ordered=False))
    previous = DayState.from_frames(stack_frames((p.state.to_frames() for p in parts), ordered=False))
    written = [r for r in campaigns if r.journey is not None]
    cap = catalog.program.frequency_cap
    state = previous.next(
        point,
        members=members,
        triggered={r.campaign.id: r.entered.entrants for r in written},
        accruals=[r.accruals for r in written if r.accruals is not None],
        outbox=[r.messages.outbox for r in written if r.messages is not None],
        pending={r.campaign.id: r.journey.pending for r in written if r.journey is not None},
        manual_events=[r.segment_events for r in written if r.segment_events is not None],
        cap_days=cap.days if cap is not None else None,
        adaptive_campaigns=[c.id for c in catalog.campaigns.values() if (s := c.ab_split()) and s.adaptive],
        retention={c.id: entrant_retention(c) for c in catalog.campaigns.values()},
        features=carry,
    )
    rebuilt: dict[str, str] = {}
    for p in parts:
        rebuilt |= p.feature_rebuilds
    frames = state.to_frames()
    del state, previous, carry, carries
    for name in frames:  # one frame copied at a time (the unsorted one is let go at once)
        frames[name] = in_canonical_order(name, frames[name], state_keys)
    return DayResult(
        features=features,
        members=members,
        members_yesterday=_stack_members([p.members_yesterday for p in parts]),
        campaigns=campaigns,
        state=DayState.from_frames(frames),
        feature_rebuilds=rebuilt,
    )


def _part(campaigns: list[CampaignDay | None], i: int) -> CampaignDay:
    got = campaigns[i]
    assert got is not None, "a shard's campaign is merged once"
    return got


def _stack_members(parts: list[dict[str, pl.DataFrame]]) -> dict[str, pl.DataFrame]:
    return {sid: stack([p[sid] for p in parts if sid in p], first=["customer_id"]) for sid in parts[0]}


def _merge_campaign(campaign: Campaign, parts: list[CampaignDay], gate: GateResult) -> CampaignDay:
    """One campaign's results from every shard; its messages scheduled over all of them."""
    first = parts[0].entered
    entered = EntrantsResult(
        entrants=stack([p.entered.entrants for p in parts], first=["customer_id", "occasion"]),
        counts=add_counts([p.entered.counts for p in parts], flags=("not_live",)),
        decision=first.decision,
        fired=stack([p.entered.fired for p in parts if p.entered.fired is not None], first=["customer_id", "occasion"])
        if first.fired is not None
        else None,
        audience=stack_series([p.entered.audience for p in parts]),
        global_control=stack_series([p.entered.global_control for p in parts]),
    )
    resumed = sum(p.resumed for p in parts)
    if not gate.passed:
        return CampaignDay(campaign, entered, gate, resumed)
    journeys = [p.journey for p in parts if p.journey is not None]
    batches = [p.messages for p in parts if p.messages is not None]
    journey = JourneyDay(
        actions=stack([j.actions for j in journeys], first=["customer_id", "occasion", "step_id"]),
        pending=stack([j.pending for j in journeys], first=["customer_id", "occasion", "node"]),
        exits=stack([j.exits for j in journeys], first=["customer_id", "occasion"]),
        counts=add_counts([j.counts for j in journeys]),
    )
    messages = schedule_messages(
        campaign,
        MessageBatch(
            outbox=pl.concat([b.outbox for b in batches]),
            skipped=stack([b.skipped for b in batches], first=["customer_id", "occasion", "step_id"]),
            zones=pl.concat([b.zones for b in batches if b.zones is not None]),
        ),
    )
    return CampaignDay(
        campaign,
        entered,
        gate,
        resumed,
        journey=journey,
        accruals=stack([p.accruals for p in parts if p.accruals is not None], first=["accrual_id"]),
        segment_events=stack([p.segment_events for p in parts if p.segment_events is not None], first=["event_id"]),
        messages=messages,
    )
