"""The bonus ledger: one lot per accrual, consumed first-expiring-first, closed at its expiry.

Why lots: a balance alone cannot say *which* bonuses a redemption spent, so "your 300 bonuses expire
on Friday" would still be sent to a customer who spent them. Keeping what remains of every accrual
(the loyalty system's `bonus_transactions` accruals and this project's own `bonus_accruals`) answers
it, and gives the customer card its detailed balance.

Rules (the README's "Bonus ledger" section states them for users):

- **A lot** is an accrual: `amount`, `accrued_at`, `expires_at` (null: never expires), `legal_entity`.
  It is live on `[accrued_at, expires_at)`.
- **FIFO.** A redemption at instant t consumes the lots live at t in order of `expires_at` (earliest
  first, lots without expiry last), then `accrued_at`, then `lot_id`, across legal entities (the
  customer has one balance; each lot keeps its entity, so what was spent from whose bonuses is known).
- **Same instant.** At one instant, lots expiring then close first, accruals made then are available,
  then redemptions apply in `txn_id` order.
- **Overdraft.** A redemption larger than what is live (or before any accrual) consumes everything
  and records the rest as an *overdraft lot* (`lot_id = overdraft:<txn_id>`, amount 0, negative
  remaining, no expiry): never a crash, and the balance stays the ledger's sum. Later accruals are
  new lots; they do not pay the overdraft back (the balance nets it, expiry warnings do not).
- **Expiry.** A lot whose `expires_at` is at or before the as-of instant is closed: what remained is
  its `expired`, its `remaining` becomes 0. The loyalty system's own `expiry` rows are *not* applied:
  the computed remainder wins, and `expiry_mismatches` lists the (customer, instant) pairs where the
  reported expiry differs from it, for the asset's metadata.
- **Balance** on D = the sum of `remaining` of the lots as of D's cutoff.

`build_lots` computes the lots from the whole history; `advance_lots` moves yesterday's lots forward
by one day's entries. `build_lots(all) == advance_lots(build_lots(before), rest)` for any split at an
instant (a property test checks it): the incremental daily asset and a rebuild always agree.

Arithmetic is in integer kopecks (exact), converted back to Decimal(14, 2) at the boundary. The only
loop is over the k-th redemption of each customer within the entries given (a day: one or two), all
customers at once; never over rows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import polars as pl

from loyalty_assets.sources.schemas import MONEY, UTC_TS

if TYPE_CHECKING:
    from loyalty_assets.sources.frames import AsOf, SourceFrames

#: One row per lot and customer: the ledger's state, the warehouse table `bonus_lots`.
LOT_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.Int64(),
    "lot_id": pl.String(),
    "source": pl.String(),
    "amount": MONEY,
    "remaining": MONEY,
    "redeemed": MONEY,
    "expired": MONEY,
    "accrued_at": UTC_TS,
    "expires_at": UTC_TS,
    "legal_entity": pl.String(),
}

#: The normalised movements the ledger applies (amounts are absolute values).
ENTRY_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.Int64(),
    "entry_id": pl.String(),
    "origin": pl.String(),  # `ledger` (bonus_transactions) or `accrual` (this project's bonus_accruals)
    "kind": pl.String(),  # accrual | redemption | expiry
    "ts": UTC_TS,
    "amount": MONEY,
    "expires_at": UTC_TS,
    "legal_entity": pl.String(),
}

MISMATCH_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.Int64(),
    "expired_at": UTC_TS,
    "reported": MONEY,
    "computed": MONEY,
}

_CENTS = ("amount", "remaining", "redeemed", "expired")
_FIFO = ["customer_id", "expires_at", "accrued_at", "lot_id"]


def _utc(frame: pl.DataFrame, *columns: str) -> list[pl.Expr]:
    out = []
    for c in columns:
        dtype = frame.schema[c]
        expr = pl.col(c)
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
            expr = expr.dt.replace_time_zone("UTC")
        out.append(expr.cast(UTC_TS).alias(c))
    return out


def ledger_entries(bonus_transactions: pl.DataFrame, own_accruals: pl.DataFrame) -> pl.DataFrame:
    """The loyalty system's ledger and this project's accruals as one frame of `ENTRY_SCHEMA`.

    An own accrual without `accrual_id` (hand-made frames) is named `<campaign>:<customer>:<accrued_at>`.
    """
    txn = bonus_transactions
    for c in ("expires_at", "legal_entity"):
        if c not in txn.columns:
            txn = txn.with_columns(pl.lit(None, dtype=LOT_SCHEMA[c]).alias(c))
    ledger = txn.with_columns(_utc(txn, "ts", "expires_at")).select(
        "customer_id",
        pl.col("txn_id").cast(pl.String).alias("entry_id"),
        pl.lit("ledger").alias("origin"),
        "kind",
        "ts",
        pl.col("amount").abs().cast(MONEY),
        "expires_at",
        pl.col("legal_entity").cast(pl.String),
    )
    own = own_accruals
    derived = pl.concat_str(
        pl.col("campaign_id").fill_null(""),
        pl.lit(":"),
        pl.col("customer_id").cast(pl.String),
        pl.lit(":"),
        pl.col("accrued_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.f"),
    )
    given = pl.col("accrual_id") if "accrual_id" in own.columns else pl.lit(None, pl.String)
    own = own.with_columns(pl.coalesce(given, derived).alias("accrual_id"))
    own = own.with_columns(_utc(own, "accrued_at", "expires_at")).select(
        "customer_id",
        pl.col("accrual_id").alias("entry_id"),
        pl.lit("accrual").alias("origin"),
        pl.lit("accrual").alias("kind"),
        pl.col("accrued_at").alias("ts"),
        pl.col("amount").abs().cast(MONEY),
        "expires_at",
        pl.col("legal_entity").cast(pl.String),
    )
    return pl.concat([ledger.cast(ENTRY_SCHEMA), own.cast(ENTRY_SCHEMA)], how="vertical")  # type: ignore[arg-type]


def empty_lots() -> pl.DataFrame:
    return pl.DataFrame(schema=LOT_SCHEMA)


def _to_cents(frame: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    return frame.with_columns((pl.col(c) * 100).cast(pl.Int64).alias(c) for c in columns)


def _to_money(frame: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    return frame.with_columns(
        (pl.col(c).cast(pl.Decimal(16, 0)) * pl.lit(Decimal("0.01"))).cast(MONEY).alias(c) for c in columns
    )


def _lots_of_accruals(accruals: pl.DataFrame) -> pl.DataFrame:
    """New lots (in kopecks) for accrual entries."""
    return accruals.select(
        "customer_id",
        pl.concat_str(pl.col("origin"), pl.lit(":"), pl.col("entry_id")).alias("lot_id"),
        pl.col("entry_id").alias("source"),
        pl.col("amount"),
        pl.col("amount").alias("remaining"),
        pl.lit(0, pl.Int64).alias("redeemed"),
        pl.lit(0, pl.Int64).alias("expired"),
        pl.col("ts").alias("accrued_at"),
        "expires_at",
        "legal_entity",
    )


def _redeem(live: pl.DataFrame, redemptions: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Apply at most one redemption per customer (kopecks) to the live lots; returns (lots, overdrafts)."""
    take = (
        live.join(redemptions, on="customer_id", how="inner")
        .filter(
            (pl.col("accrued_at") <= pl.col("r_ts"))
            & (pl.col("expires_at").is_null() | (pl.col("expires_at") > pl.col("r_ts")))
            & (pl.col("remaining") > 0)
        )
        .sort(_FIFO, nulls_last=True)
        .with_columns((pl.col("remaining").cum_sum().over("customer_id") - pl.col("remaining")).alias("_before"))
        .with_columns(
            pl.min_horizontal(pl.max_horizontal(pl.col("r_amount") - pl.col("_before"), pl.lit(0)), "remaining").alias(
                "_take"
            )
        )
        .filter(pl.col("_take") > 0)
        .select("customer_id", "lot_id", "_take")
    )
    lots = (
        live.join(take, on=["customer_id", "lot_id"], how="left")
        .with_columns(pl.col("_take").fill_null(0))
        .with_columns(
            (pl.col("remaining") - pl.col("_take")).alias("remaining"),
            (pl.col("redeemed") + pl.col("_take")).alias("redeemed"),
        )
        .drop("_take")
    )
    taken = take.group_by("customer_id").agg(pl.col("_take").sum())
    overdrafts = (
        redemptions.join(taken, on="customer_id", how="left")
        .with_columns((pl.col("r_amount") - pl.col("_take").fill_null(0)).alias("_short"))
        .filter(pl.col("_short") > 0)
        .select(
            "customer_id",
            pl.concat_str(pl.lit("overdraft:"), pl.col("r_id")).alias("lot_id"),
            pl.col("r_id").alias("source"),
            pl.lit(0, pl.Int64).alias("amount"),
            (-pl.col("_short")).alias("remaining"),
            pl.col("_short").alias("redeemed"),
            pl.lit(0, pl.Int64).alias("expired"),
            pl.col("r_ts").alias("accrued_at"),
            pl.lit(None, dtype=UTC_TS).alias("expires_at"),
            pl.col("r_le").alias("legal_entity"),
        )
    )
    return lots, overdrafts


def touched_customers(lots: pl.DataFrame, entries: pl.DataFrame, until: datetime) -> pl.Series:
    """The customers whose lots `advance_lots(lots, entries, until)` can change: those with an entry
    before `until`, or with a lot that has something left and closes by `until`. Every other
    customer's lots come out as they went in, so a day's work follows the day's customers."""
    bound = pl.lit(until).cast(UTC_TS)
    closing = (pl.col("expires_at") <= bound) & (pl.col("remaining") > 0)
    return pl.concat(
        [
            entries.filter(pl.col("ts") < bound).get_column("customer_id").cast(pl.Int64),
            lots.filter(closing).get_column("customer_id").cast(pl.Int64),
        ]
    ).unique()


def advance_lots(
    lots: pl.DataFrame, entries: pl.DataFrame, until: datetime, touched: pl.Series | None = None
) -> pl.DataFrame:
    """The lots as of the instant `until`, from the lots as of an earlier instant and the entries since.

    `entries` (`ENTRY_SCHEMA`, e.g. one day's) must be those after the instant `lots` were computed
    for; entries at or after `until` are ignored (point in time). An accrual already in `lots` (same
    lot id) is not added twice. Source `expiry` entries are not applied (see the module docstring).
    Only the `touched_customers` are worked on (`touched`: already computed by the caller, who also
    needs them); the other lots pass through.
    """
    lots = lots.cast(LOT_SCHEMA)  # type: ignore[arg-type]
    touched = (touched if touched is not None else touched_customers(lots, entries, until)).implode()
    mine = pl.col("customer_id").is_in(touched)
    untouched = lots.filter(~mine)
    changed = _advance(lots.filter(mine), entries.filter(pl.col("customer_id").is_in(touched)), until)
    if untouched.is_empty():
        return changed
    changed = changed.sort(_FIFO, nulls_last=True)
    if untouched.get_column("customer_id").is_sorted():
        # the lots come in FIFO order (customer first) and the two sides hold different customers: a
        # merge on the customer keeps that order without sorting every lot again (at 1M customers
        # the sort held a third copy of the 650 MB of lots)
        return untouched.merge_sorted(changed, key="customer_id")
    return pl.concat([untouched, changed], how="vertical").sort(_FIFO, nulls_last=True)


def _advance(lots: pl.DataFrame, entries: pl.DataFrame, until: datetime) -> pl.DataFrame:
    """`advance_lots` over every lot and entry given."""
    entries = entries.cast(ENTRY_SCHEMA).filter(pl.col("ts") < pl.lit(until).cast(UTC_TS))  # type: ignore[arg-type]
    state = _to_cents(lots.cast(LOT_SCHEMA), _CENTS)  # type: ignore[arg-type]
    fresh = _lots_of_accruals(_to_cents(entries.filter(pl.col("kind") == "accrual"), ("amount",)))
    fresh = fresh.join(state.select("customer_id", "lot_id"), on=["customer_id", "lot_id"], how="anti")
    fresh = fresh.unique(["customer_id", "lot_id"], keep="first", maintain_order=True)
    every = pl.concat([state, fresh], how="vertical")
    redemptions = (
        _to_cents(entries.filter(pl.col("kind") == "redemption"), ("amount",))
        .sort("customer_id", "ts", "entry_id")
        .select(
            "customer_id",
            pl.col("ts").alias("r_ts"),
            pl.col("amount").alias("r_amount"),
            pl.col("entry_id").alias("r_id"),
            pl.col("legal_entity").alias("r_le"),
            pl.int_range(pl.len()).over("customer_id").alias("_k"),
        )
    )
    if redemptions.height:
        first = redemptions.get_column("r_ts").min()
        can_serve = (pl.col("remaining") > 0) & (
            pl.col("expires_at").is_null() | (pl.col("expires_at") > pl.lit(first).cast(UTC_TS))
        )
        live, rest = every.filter(can_serve), every.filter(~can_serve)
        parts = [rest]
        for k in range(int(redemptions.get_column("_k").max() or 0) + 1):  # type: ignore[arg-type]
            live, overdrafts = _redeem(live, redemptions.filter(pl.col("_k") == k).drop("_k"))
            parts.append(overdrafts)
        every = pl.concat([live, *parts], how="vertical")
    closing = (pl.col("expires_at") <= pl.lit(until).cast(UTC_TS)) & (pl.col("remaining") > 0)
    closed = every.with_columns(
        pl.when(closing).then(pl.col("expired") + pl.col("remaining")).otherwise(pl.col("expired")).alias("expired"),
        pl.when(closing).then(0).otherwise(pl.col("remaining")).alias("remaining"),
    )
    return _to_money(closed, _CENTS).select(list(LOT_SCHEMA)).cast(LOT_SCHEMA).sort(_FIFO, nulls_last=True)  # type: ignore[arg-type]


def build_lots(entries: pl.DataFrame, until: datetime) -> pl.DataFrame:
    """The lots as of `until` from the whole history (every entry before `until`)."""
    return advance_lots(empty_lots(), entries, until)


def carry_lots(
    lots: pl.DataFrame,
    since: datetime,
    entries: pl.DataFrame,
    history_of: Callable[[pl.Series], pl.DataFrame],
    until: datetime,
) -> pl.DataFrame:
    """The lots as of `until` exactly as `build_lots` over every entry known then, from the lots as
    of `since` and the entries that became known after it (`ENTRY_SCHEMA`).

    Entries stamped at or after `since` advance the lots (`advance_lots`: FIFO runs forward in
    time). A customer with an entry stamped before `since` — a late ledger row, this project's
    accrual of an earlier instant, the history of a customer registering now — is rebuilt from
    their own entries, `history_of(customer_ids)`: an accrual stamped in the past can change which
    lot an earlier redemption consumed. Lots are per customer, so the others are untouched.
    `lots` may leave out lots with nothing remaining (they never change again).
    """
    late = entries.filter(pl.col("ts") < pl.lit(since).cast(UTC_TS)).get_column("customer_id").unique()
    if late.is_empty():
        return advance_lots(lots, entries, until)
    ids = late.implode()
    advanced = advance_lots(
        lots.filter(~pl.col("customer_id").is_in(ids)), entries.filter(~pl.col("customer_id").is_in(ids)), until
    )
    rebuilt = build_lots(history_of(late), until)
    return pl.concat([advanced, rebuilt], how="vertical").sort(_FIFO, nulls_last=True)


def carried(lots: pl.DataFrame) -> pl.DataFrame:
    """The lots a later day can change or count: those with something remaining (an overdraft lot's
    remainder is negative). A lot with nothing remaining — spent or expired — never changes again
    (FIFO consumes and expiry closes only lots with something left), so the daily state leaves it
    out: at 1M customers × 800 days, 7.0M of 10.3M lots, which every date read, merged and wrote."""
    return lots.filter(pl.col("remaining") != 0)


def pending_accruals(own: pl.DataFrame, point: AsOf) -> pl.DataFrame:
    """This project's accruals (`DayState.accruals`, with `partition_date`) that D−1's lots do not
    hold: written on D or later, or accrued at or after D−1's cutoff (the start of D). The others
    became lots at D−1 at the latest; with closed lots out of the carried state (`carried`), they
    cannot be told apart by lot id any more, so they must not be offered again."""
    return own.filter((pl.col("partition_date") >= point.date) | (pl.col("accrued_at") >= point.start_literal))


def balances(lots: pl.DataFrame) -> pl.DataFrame:
    """`customer_id`, `balance`: the sum of what remains of each customer's lots (overdrafts included)."""
    return lots.group_by("customer_id").agg(pl.col("remaining").sum().cast(MONEY).alias("balance")).sort("customer_id")


def expiry_mismatches(
    lots: pl.DataFrame, entries: pl.DataFrame, until: datetime, since: datetime | None = None
) -> pl.DataFrame:
    """(customer, instant) pairs where the loyalty system's `expiry` rows differ from the computed expiry.

    Reported: the sum of `expiry` entries at that instant; computed: the sum of `expired` of the lots
    (as of `until`) whose `expires_at` is that instant. Either side may be absent (0). Instants at or
    after `until` are not compared (neither side has reached them), nor, with `since` (a day's check:
    only that day's lots are then looked at, not every lot), those before it.
    """
    cut = pl.lit(until).cast(UTC_TS)
    if since is not None:
        start = pl.lit(since).cast(UTC_TS)
        lots = lots.filter(pl.col("expires_at") >= start)
        entries = entries.filter(pl.col("ts") >= start)
    reported = (
        entries.filter((pl.col("kind") == "expiry") & (pl.col("ts") < cut))
        .group_by("customer_id", pl.col("ts").alias("expired_at"))
        .agg(pl.col("amount").sum().alias("reported"))
    )
    computed = (
        lots.filter(pl.col("expires_at").is_not_null() & (pl.col("expired") != 0) & (pl.col("expires_at") < cut))
        .group_by("customer_id", pl.col("expires_at").alias("expired_at"))
        .agg(pl.col("expired").sum().alias("computed"))
    )
    zero = pl.lit(Decimal(0)).cast(MONEY)
    both = reported.join(computed, on=["customer_id", "expired_at"], how="full", coalesce=True).with_columns(
        pl.col("reported").fill_null(zero).cast(MONEY), pl.col("computed").fill_null(zero).cast(MONEY)
    )
    return (
        both.filter(pl.col("reported") != pl.col("computed"))
        .select(list(MISMATCH_SCHEMA))
        .cast(MISMATCH_SCHEMA)  # type: ignore[arg-type]
        .sort("customer_id", "expired_at")
    )


__all__ = [
    "ENTRY_SCHEMA",
    "LOT_SCHEMA",
    "MISMATCH_SCHEMA",
    "advance_lots",
    "balances",
    "build_lots",
    "carry_lots",
    "empty_lots",
    "expiry_mismatches",
    "ledger_entries",
    "touched_customers",
]


def lots_as_of(frames: SourceFrames, cutoff: datetime) -> pl.DataFrame:
    """The lots at `cutoff` from a day's frames (ledger + own accruals), built once per frames.

    The features and every expiry trigger of the day read the same lots: one FIFO build, not one each.
    """
    return frames.derived(
        ("bonus_lots", cutoff),
        lambda: build_lots(ledger_entries(frames.bonus_transactions, frames.own_accruals), cutoff),
    )


def provide_lots(frames: SourceFrames, cutoff: datetime, lots: pl.DataFrame) -> None:
    """Make `lots_as_of(frames, cutoff)` answer `lots` (carried from the day before by the daily
    asset) instead of building them from `frames`, which then need not hold the whole ledger."""
    frames.derived(("bonus_lots", cutoff), lambda: lots)
