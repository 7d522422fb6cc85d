"""Activity rows: the customer's history as campaigns saw it (seed 002: «Активности»).

Event ids are built from stage, campaign, customer, occasion and step, so a re-run writes the same
ids and the log never double-counts.

Lean by design: the `activity_events` table stores only the decisions no other table records — messages
skipped (with the reason), waits and the ends of journeys entered on an earlier day (`LOGGED_KINDS`); a journey that
ends in the run that entered it keeps its end on its `triggered_customers` row (`split_ends`). Entries (`entered`,
`entered_control_group`), accruals and queued messages are rows of `triggered_customers`,
`bonus_accruals` and `message_outbox` already; `warehouse.activity.customer_activity` rebuilds their
activity rows from those tables with the functions below (and the SQL view `activity_log`, the contract's
table, does the same in SQL), so the complete history costs no second copy.
"""

from __future__ import annotations

import polars as pl

ACTIVITY_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "customer_id": pl.Int64(),
    "ts": pl.Datetime("us", "UTC"),
    "campaign_id": pl.String(),
    "kind": pl.String(),
    "details": pl.String(),
}

#: The kinds stored in `activity_events`; the others are derived from the tables that hold them.
LOGGED_KINDS = ("message_skipped", "waiting", "journey_ended")


def _event_id(stage: str, campaign_id: str, *parts: pl.Expr) -> pl.Expr:
    pieces: list[pl.Expr] = [pl.lit(f"{stage}:{campaign_id}")]
    for part in parts:
        pieces += [pl.lit(":"), part.cast(pl.String())]
    return pl.concat_str(pieces).alias("event_id")


def entry_activity(campaign_id: str, entrants: pl.DataFrame) -> pl.DataFrame:
    """`entered` or `entered_control_group` per entrant."""
    return entrants.select(
        _event_id("triggered", campaign_id, pl.col("customer_id"), pl.col("occasion")),
        "customer_id",
        pl.col("triggered_at").alias("ts"),
        pl.lit(campaign_id).alias("campaign_id"),
        pl.when(pl.col("is_control")).then(pl.lit("entered_control_group")).otherwise(pl.lit("entered")).alias("kind"),
        pl.col("occasion").alias("details"),
    ).cast(ACTIVITY_SCHEMA)  # type: ignore[arg-type]


def accrual_activity(campaign_id: str, accruals: pl.DataFrame) -> pl.DataFrame:
    """`bonus_accrued` per accrual, with amount, expiry and legal entity in the details."""
    return accruals.select(
        _event_id("accruals", campaign_id, pl.col("accrual_id")),
        "customer_id",
        pl.col("accrued_at").alias("ts"),
        pl.lit(campaign_id).alias("campaign_id"),
        pl.lit("bonus_accrued").alias("kind"),
        pl.format(
            "{} bonuses, expires {}, legal entity {} ({})",
            pl.col("amount").cast(pl.String()),
            pl.col("expires_at").dt.strftime("%Y-%m-%dT%H:%MZ").fill_null("never"),
            "legal_entity",
            "occasion",
        ).alias("details"),
    ).cast(ACTIVITY_SCHEMA)  # type: ignore[arg-type]


def queued_activity(campaign_id: str, outbox: pl.DataFrame) -> pl.DataFrame:
    """`message_queued` per message (channel, step, occasion; never the body)."""
    return outbox.select(
        _event_id("messages", campaign_id, pl.col("message_id")),
        "customer_id",
        pl.col("send_at").alias("ts"),
        pl.lit(campaign_id).alias("campaign_id"),
        pl.lit("message_queued").alias("kind"),
        pl.format("{} {} ({})", "channel", "step_id", "occasion").alias("details"),
    ).cast(ACTIVITY_SCHEMA)  # type: ignore[arg-type]


def skipped_activity(campaign_id: str, skipped: pl.DataFrame) -> pl.DataFrame:
    """`message_skipped` (with the reason) per customer left out of a message step."""
    return skipped.select(
        _event_id(
            "messages",
            campaign_id,
            pl.col("step_id"),
            pl.col("channel"),
            pl.col("customer_id"),
            pl.col("occasion"),
        ),
        "customer_id",
        pl.col("triggered_at").alias("ts"),
        pl.lit(campaign_id).alias("campaign_id"),
        pl.lit("message_skipped").alias("kind"),
        pl.format("{} {}: {} ({})", "channel", "step_id", "reason", "occasion").alias("details"),
    ).cast(ACTIVITY_SCHEMA)  # type: ignore[arg-type]


def message_activity(campaign_id: str, outbox: pl.DataFrame, skipped: pl.DataFrame) -> pl.DataFrame:
    """`message_queued` per message and `message_skipped` (with the reason) per customer left out."""
    return pl.concat([queued_activity(campaign_id, outbox), skipped_activity(campaign_id, skipped)])


def ended_activity(campaign_id: str, exits: pl.DataFrame) -> pl.DataFrame:
    """`journey_ended` per exit (`journey.EXIT_SCHEMA`: reason, step, instant)."""
    details = pl.format("{} at {} ({})", "reason", pl.col("step_id").replace("", "end"), "occasion")
    return _journey_rows(campaign_id, exits, pl.lit("end"), "journey_ended", details)


def waiting_activity(campaign_id: str, pending: pl.DataFrame) -> pl.DataFrame:
    """`waiting` (until when, at which step) per token left waiting."""
    until = pl.col("at").dt.strftime("%Y-%m-%dT%H:%MZ")
    details = pl.format("until {} at step {} ({})", until, "node", "occasion")
    return _journey_rows(campaign_id, pending, pl.col("node"), "waiting", details)


def _journey_rows(campaign_id: str, tokens: pl.DataFrame, step: pl.Expr, kind: str, details: pl.Expr) -> pl.DataFrame:
    """One activity row per journey token (customer, occasion, instant `at`), its id ending in `step`."""
    return tokens.select(
        _event_id("journey", campaign_id, pl.col("customer_id"), pl.col("occasion"), step),
        "customer_id",
        pl.col("at").alias("ts"),
        pl.lit(campaign_id).alias("campaign_id"),
        pl.lit(kind).alias("kind"),
        details.alias("details"),
    ).cast(ACTIVITY_SCHEMA)  # type: ignore[arg-type]


#: The columns of `triggered_customers` that hold a journey's end when the run that entered it ended it.
ENDED_COLUMNS = {"ended_at": "at", "ended_reason": "reason", "ended_step": "step_id"}


def split_ends(entrants: pl.DataFrame, exits: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The day's entrants with the end of each journey that ended in the same run (`ENDED_COLUMNS`,
    null otherwise), and the other exits (of tokens that entered on an earlier day).

    Why: on a busy day nearly every journey ends the moment it starts (no wait), and its `journey_ended`
    row repeated what the entrant's row says; stored on that row, the view derives it
    (`derived_end_activity`) and `activity_events` keeps only the ends of journeys entered earlier."""
    keys = ["customer_id", "occasion"]
    own = exits.join(entrants.select(keys), on=keys, how="semi")
    ends = own.select(*keys, *(pl.col(src).alias(dst) for dst, src in ENDED_COLUMNS.items()))
    marked = entrants.join(ends, on=keys, how="left", maintain_order="left")
    return marked, exits.join(own.select(keys), on=keys, how="anti")


def derived_end_activity(campaign_id: str, triggered: pl.DataFrame) -> pl.DataFrame:
    """`journey_ended` per `triggered_customers` row whose journey ended in the run that entered it."""
    ended = triggered.filter(pl.col("ended_at").is_not_null())
    return ended_activity(campaign_id, ended.rename({dst: src for dst, src in ENDED_COLUMNS.items()}))
