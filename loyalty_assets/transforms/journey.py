"""Running a campaign's chain of steps for one day: the journeys of its customers.

A *token* is one customer on one occasion standing at one step (a node of the chain's tree) at an
instant. A day's run takes the tokens that enter today plus the tokens that were waiting for today,
and moves all tokens at the same node together (one vectorised pass per node, never per customer)
until each one leaves the chain, performs its actions, or has to wait past the end of the day. Those
become `pending` and are picked up by the run of the day they are due: this is the cross-day state
that makes waits, delayed triggers and message chains work in a daily batch.

Actions (accrue, send, notify, segment changes) are returned as rows with the instant they happen;
the accrual and message builders turn them into warehouse rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time

import polars as pl

from loyalty_assets.config.campaigns import (
    ABSplit,
    Campaign,
    FilterStep,
    Step,
    Wait,
)
from loyalty_assets.config.filters import referenced_segments
from loyalty_assets.sources.frames import AsOf
from loyalty_assets.sources.schemas import MONEY
from loyalty_assets.transforms.local_time import ZONE, next_local_time
from loyalty_assets.transforms.segments import compile_filter

TOKEN_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.Int64(),
    "occasion": pl.String(),
    "event_date": pl.Date(),
    "node": pl.String(),
    "at": pl.Datetime("us", "UTC"),
    "variant": pl.String(),
    "check_id": pl.String(),
    "check_total": MONEY,
    "event_amount": MONEY,
}

ACTION_SCHEMA: dict[str, pl.DataType] = {
    **{k: v for k, v in TOKEN_SCHEMA.items() if k != "node"},
    "step_id": pl.String(),
    "step_type": pl.String(),
}

EXIT_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.Int64(),
    "occasion": pl.String(),
    "step_id": pl.String(),
    "reason": pl.String(),
    "at": pl.Datetime("us", "UTC"),
}

END = ""


@dataclass(frozen=True)
class Node:
    """One step in the chain with where its tokens go next (`END` = the journey is over)."""

    path: str
    step: Step
    next: str
    otherwise: str = END  # filter: where non-matching tokens go
    variants: Mapping[str, str] = field(default_factory=dict)  # A/B: variant → first node


def compile_chain(steps: list[Step], prefix: str = "", after: str = END) -> tuple[str, dict[str, Node]]:
    """The chain's nodes keyed by path (e.g. `2`, `3/else/0`, `4/B/1`) and the first node's path."""
    nodes: dict[str, Node] = {}
    paths = [f"{prefix}{i}" for i in range(len(steps))]
    for index, step in enumerate(steps):
        path = paths[index]
        following = paths[index + 1] if index + 1 < len(steps) else after
        if isinstance(step, FilterStep):
            first_else, else_nodes = compile_chain(step.else_, f"{path}/else/")
            nodes.update(else_nodes)
            nodes[path] = Node(path, step, following, otherwise=first_else)
        elif isinstance(step, ABSplit):
            variants: dict[str, str] = {}
            for variant in step.variants:
                first, branch = compile_chain(variant.steps, f"{path}/{variant.name}/")
                nodes.update(branch)
                variants[variant.name] = first
            nodes[path] = Node(path, step, END, variants=variants)
        else:
            nodes[path] = Node(path, step, following)
    return (paths[0] if paths else after), nodes


@dataclass(frozen=True)
class JourneyDay:
    """What a day's run did: actions performed, tokens left waiting, journeys ended, per-step counts."""

    actions: pl.DataFrame
    pending: pl.DataFrame
    exits: pl.DataFrame
    counts: dict[str, int]


def start_tokens(entrants: pl.DataFrame, first_node: str) -> pl.DataFrame:
    """Tokens for today's non-control entrants, at the first step, at the trigger instant."""
    receiving = entrants.filter(pl.col("is_control").not_())
    return receiving.select(
        "customer_id",
        "occasion",
        "event_date",
        pl.lit(first_node).alias("node"),
        pl.col("triggered_at").alias("at"),
        "variant",
        *(
            pl.col(c) if c in receiving.columns else pl.lit(None, dtype=TOKEN_SCHEMA[c]).alias(c)
            for c in ("check_id", "check_total", "event_amount")
        ),
    ).cast(TOKEN_SCHEMA)  # type: ignore[arg-type]


def run_journeys(
    campaign: Campaign,
    tokens: pl.DataFrame,
    *,
    as_of: AsOf,
    features: pl.DataFrame,
    members: Mapping[str, pl.DataFrame],
) -> JourneyDay:
    """Advance `tokens` through the chain as far as day D allows.

    `features` (as of D) answers filter steps; `members` holds saved segments' members on D for
    `segment:` filters and `field: segment` conditions.
    """
    _, nodes = compile_chain(campaign.steps)
    cutoff = as_of.cutoff_literal
    zones = features.select("customer_id", pl.col("timezone").fill_null(as_of.program_tz).alias(ZONE))
    program_zone = as_of.program_tz
    actions: list[pl.DataFrame] = []
    exits: list[pl.DataFrame] = []
    pending: list[pl.DataFrame] = []
    counts: dict[str, int] = {}
    current = tokens.cast(TOKEN_SCHEMA)  # type: ignore[arg-type]
    for _ in range(len(nodes) + 1):
        finished = current.filter(pl.col("node") == END)
        if finished.height:
            exits.append(_exit(finished, "", "completed"))
        current = current.filter(pl.col("node") != END)
        later = current.filter(pl.col("at") >= cutoff)
        pending.append(later)
        current = current.filter(pl.col("at") < cutoff)
        if current.is_empty():
            break
        moved: list[pl.DataFrame] = []
        for path, group in current.partition_by("node", as_dict=True, maintain_order=True).items():
            node = nodes[str(path[0])]
            step = node.step
            counts[f"step:{step.id}"] = counts.get(f"step:{step.id}", 0) + group.height
            if isinstance(step, FilterStep):
                passed = _filter_mask(campaign, step, group, features, members)
                yes, no = group.filter(passed), group.filter(passed.not_())
                counts[f"branch:{step.id}:yes"] = counts.get(f"branch:{step.id}:yes", 0) + yes.height
                counts[f"branch:{step.id}:no"] = counts.get(f"branch:{step.id}:no", 0) + no.height
                moved.append(yes.with_columns(pl.lit(node.next).alias("node")))
                if node.otherwise:
                    moved.append(no.with_columns(pl.lit(node.otherwise).alias("node")))
                elif no.height:
                    exits.append(_exit(no, step.id, "filtered_out"))
            elif isinstance(step, ABSplit):
                for name, first in node.variants.items():
                    branch = group.filter(pl.col("variant") == name)
                    counts[f"variant:{name}"] = counts.get(f"variant:{name}", 0) + branch.height
                    moved.append(branch.with_columns(pl.lit(first or END).alias("node")))
                unassigned = group.filter(pl.col("variant").is_null() | ~pl.col("variant").is_in(list(node.variants)))
                if unassigned.height:
                    exits.append(_exit(unassigned, step.id, "no_variant"))
            elif isinstance(step, Wait):
                waited = _waited(group, step, zones, program_zone)
                moved.append(waited.with_columns(pl.lit(node.next).alias("node")))
            else:
                actions.append(
                    group.drop("node").with_columns(
                        pl.lit(step.id).alias("step_id"), pl.lit(step.type).alias("step_type")
                    )
                )
                moved.append(group.with_columns(pl.lit(node.next).alias("node")))
        current = pl.concat(moved, how="vertical_relaxed") if moved else current.clear()
    return JourneyDay(
        actions=_frame(actions, ACTION_SCHEMA).sort("at", "customer_id", "step_id"),
        pending=_frame(pending, TOKEN_SCHEMA).sort("customer_id", "occasion", "node"),
        exits=_frame(exits, EXIT_SCHEMA).sort("customer_id", "occasion"),
        counts=counts,
    )


def _frame(parts: list[pl.DataFrame], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    parts = [p.select(list(schema)).cast(schema) for p in parts if p.height]  # type: ignore[arg-type]
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def _exit(tokens: pl.DataFrame, step_id: str, reason: str) -> pl.DataFrame:
    return tokens.select(
        "customer_id", "occasion", pl.lit(step_id).alias("step_id"), pl.lit(reason).alias("reason"), "at"
    )


def _filter_mask(
    campaign: Campaign,
    step: FilterStep,
    tokens: pl.DataFrame,
    features: pl.DataFrame,
    members: Mapping[str, pl.DataFrame],
) -> pl.Series:
    """Whether each token's customer passes the step's filter (and segment), as of today."""
    joined = tokens.select("customer_id").join(features, on="customer_id", how="left", maintain_order="left")
    expr = pl.lit(True)
    if step.filter is not None:
        empty = pl.DataFrame(schema={"customer_id": pl.Int64()})
        known = {sid: members.get(sid, empty) for sid in referenced_segments(step.filter)} | dict(members)
        expr = expr & compile_filter(step.filter, known, sample_salt=f"{campaign.id}:{step.id}")
    if step.segment is not None:
        ids = (
            members[step.segment].get_column("customer_id")
            if step.segment in members
            else pl.Series([], dtype=pl.Int64)
        )
        expr = expr & pl.col("customer_id").is_in(ids.implode())
    return joined.select(expr.fill_null(False).alias("passed")).get_column("passed")


def _waited(tokens: pl.DataFrame, step: Wait, zones: pl.DataFrame, program_zone: str) -> pl.DataFrame:
    """Tokens moved `step.delay` later; with `until`, `days` count local calendar days instead.

    `{hours: 3}` is 3 hours later; `{until: "10:00"}` the next local 10:00; `{days: 1, until: "10:00"}`
    10:00 on the next local day ("a fact the next day"), not the first 10:00 after a full 24 hours.
    """
    if step.until is None:
        return tokens.with_columns((pl.col("at") + pl.lit(step.delay)).alias("at"))
    moved = tokens.with_columns((pl.col("at") + pl.duration(hours=step.hours, minutes=step.minutes)).alias("at"))
    return _at_next_local(moved, step.until, zones, program_zone, step.days)


def _at_next_local(
    tokens: pl.DataFrame, until: time, zones: pl.DataFrame, program_zone: str, days: int = 0
) -> pl.DataFrame:
    zoned = tokens.join(zones, on="customer_id", how="left", maintain_order="left").with_columns(
        pl.col(ZONE).fill_null(program_zone)
    )
    return next_local_time(zoned, "at", until, "at", days).drop(ZONE)
