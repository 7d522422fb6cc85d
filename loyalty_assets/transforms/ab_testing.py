"""A/B splits: stable weighted variants, and Loymax's adaptive split that picks a winner.

A customer's variant depends only on (campaign, customer) and the weights, so re-runs and backfills
agree. The adaptive mode splits the first `first_n` entrants evenly; `decide_after_days` after the
n-th entered, the variant with the best rate on opens, clicks or attributed checks takes every later
entrant — but only when its lead is significant at the campaign's `settings.confidence` (default 95 %,
Newcombe interval of the difference excluding zero, see `transforms.uplift`); until then the split
goes on evenly and the decision's reason says "keeps splitting". The decision is recomputed from
warehouse history each day, so it is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import polars as pl
from polars.expr.whenthen import ChainedThen, Then

from loyalty_assets.config.campaigns import ABSplit
from loyalty_assets.transforms.hashing import BUCKETS, stable_bucket
from loyalty_assets.transforms.uplift import significant_winner


def assign_variants(
    split: ABSplit, campaign_id: str, customer_ids: pl.Series, *, winner: str | None = None
) -> pl.Series:
    """The variant of each customer: the `winner` when decided, else weighted stable buckets."""
    if winner is not None:
        return pl.Series("variant", [winner] * len(customer_ids), dtype=pl.String())
    even = split.adaptive is not None
    weights = [Decimal(1) if even else v.weight for v in split.variants]
    total = sum(weights)
    bounds: list[int] = []
    running = Decimal(0)
    for w in weights:
        running += w
        bounds.append(int(running * BUCKETS / total))
    buckets = stable_bucket(customer_ids, f"ab:{campaign_id}:{split.id}")
    expr: Then | ChainedThen = pl.when(pl.col("b") < bounds[0]).then(pl.lit(split.variants[0].name))
    for bound, variant in zip(bounds[1:], split.variants[1:], strict=True):
        expr = expr.when(pl.col("b") < bound).then(pl.lit(variant.name))
    return pl.DataFrame({"b": buckets}).select(expr.otherwise(pl.lit(split.variants[-1].name)).alias("variant"))[
        "variant"
    ]


@dataclass(frozen=True)
class Decision:
    winner: str | None
    rates: dict[str, float]
    reason: str


def adaptive_decision(
    split: ABSplit,
    day: date,
    *,
    history: pl.DataFrame,
    outbox: pl.DataFrame,
    communications: pl.DataFrame,
    checks: pl.DataFrame,
    attribution_days: int,
    confidence: float = 0.95,
) -> Decision:
    """Whether (and which) variant has won by `day`.

    `history`: earlier entrants (`customer_id, variant, partition_date, is_control`); `outbox`: this
    campaign's messages (`message_id, customer_id, variant, send_at`); `communications`: message
    events; `checks`: for attributed checks (a check within `attribution_days` after a message).
    `confidence`: the level at which a lead counts as a win.
    """
    adaptive = split.adaptive
    if adaptive is None:
        return Decision(None, {}, "not adaptive")
    tested = history.filter(pl.col("is_control").not_() & pl.col("variant").is_not_null()).sort(
        "partition_date", "customer_id"
    )
    if tested.height < adaptive.first_n:
        return Decision(None, {}, f"{tested.height} of {adaptive.first_n} test entrants so far")
    nth_date = tested.get_column("partition_date")[adaptive.first_n - 1]
    decide_on = nth_date + timedelta(days=adaptive.decide_after_days)
    if day < decide_on:
        return Decision(None, {}, f"test group complete on {nth_date}, decision on {decide_on}")
    test_customers = tested.head(adaptive.first_n).select("customer_id", "variant")
    sent = outbox.join(test_customers.select("customer_id"), on="customer_id", how="semi")
    if adaptive.metric in ("opens", "clicks"):
        event = "opened" if adaptive.metric == "opens" else "clicked"
        hits = (
            communications.filter(pl.col("event") == event)
            .join(sent.select("message_id", "variant"), on="message_id", how="inner")
            .select("customer_id", "variant")
            .unique()
        )
    else:
        window = pl.duration(days=attribution_days)
        hits = (
            sent.join(checks.select("customer_id", "ts"), on="customer_id", how="inner")
            .filter((pl.col("ts") >= pl.col("send_at")) & (pl.col("ts") < pl.col("send_at") + window))
            .select("customer_id", "variant")
            .unique()
        )
    sizes = dict(test_customers.group_by("variant").len().iter_rows())
    wins = dict(hits.group_by("variant").len().iter_rows())
    verdict = significant_winner(wins, sizes, confidence, order=[v.name for v in split.variants])
    if verdict.winner is None:
        return Decision(None, verdict.rates, f"keeps splitting: {verdict.reason} by {adaptive.metric}")
    return Decision(verdict.winner, verdict.rates, f"decided on {decide_on} by {adaptive.metric}: {verdict.reason}")
