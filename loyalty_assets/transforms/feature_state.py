"""Purchase features as of D from a per-customer state as of D-1 plus the checks that entered on D.

`transforms/features.py` aggregates all history every day, so a day's cost grows with history. Here
the purchase features (`purchase_count`, `purchase_total`, `purchase_quantity`, `average_check`,
`average_items_per_check`, `first/last_check_date`, `days_since_first/last_check`, with windows and
category/product restrictions) are kept as a state:

- `daily`: per customer and customer-local day, the sums a day contributes (checks, amounts, lines,
  quantities; overall and per category/product key), for the local days some window can still read;
- `settled`: per customer, the same sums over the older days, and the first/last local day per key.

`advance(state, day_checks, day_items, ...)` adds the checks that became visible on D (late rows
land on their own local day, whatever day they arrived), then moves the days that have left every
window into `settled`. `purchase_features(state, ...)` reads the features of D: windows sum `daily`
over their days, all-history fields add `settled`. Sums are commutative and first/last are min/max,
so the order rows arrive in does not matter; the result equals a full recomputation
(`compute_features`), feature by feature (tests/test_feature_state.py).

Local days are the customer's zone (`customers.timezone`, else the program's), like the full path.
The category tree is part of the state (`fingerprint`): when `categories` changes, `advance` refuses
and the caller rebuilds the state from history with `build_state` (the first-run path).
Rows never leave the state: a check that stops being visible (a rare duplicate-key displacement in
the source store) needs a rebuild too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import polars as pl

from loyalty_assets.config.filters import Window
from loyalty_assets.transforms.features import AMOUNT, AVERAGE_AMOUNT, QUANTITY_SUM, FeatureSpec

_DAY = "_day"
_TZ = "_tz"
_ALL = "all"
PURCHASE_FIELDS = frozenset(
    {
        "purchase_count",
        "purchase_total",
        "purchase_quantity",
        "average_check",
        "average_items_per_check",
        "first_check_date",
        "last_check_date",
        "days_since_first_check",
        "days_since_last_check",
    }
)
#: Summed measures of a key: checks, amount, quantity, lines.
_SUMS = ("n", "amt", "qty", "ln")
_TYPES: dict[str, pl.DataType] = {"n": pl.Int64(), "amt": AMOUNT, "qty": QUANTITY_SUM, "ln": pl.Int64()}


class StaleState(Exception):
    """The state was built for another category tree or day; rebuild it with `build_state`."""


@dataclass(frozen=True)
class PurchaseState:
    """Per-customer purchase state as of `day` for the restriction keys `keys`."""

    day: date
    keys: tuple[tuple[str | None, str | None], ...]
    fingerprint: str
    daily: pl.DataFrame
    settled: pl.DataFrame


def _key_names(keys: Sequence[object]) -> list[str]:
    """`all`, then one name per restriction key (or per line matcher of those keys)."""
    return [_ALL, *(f"k{i}" for i in range(len(keys)))]


def purchase_keys(specs: Iterable[FeatureSpec]) -> tuple[tuple[str | None, str | None], ...]:
    """The distinct (category, product) restrictions of the purchase specs, in a stable order."""
    return tuple(sorted({(s.category, s.product) for s in specs if s.category or s.product}, key=str))


def descendants(categories: pl.DataFrame, category: str) -> list[str]:
    """`category` and everything under it (cycle-safe), as `features._Context.descendants`."""
    children: dict[str, list[str]] = {}
    for child, parent in categories.select("category_id", "parent_id").iter_rows():
        if parent is not None:
            children.setdefault(parent, []).append(child)
    seen, todo = {category}, [category]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return sorted(seen)


def _matchers(categories: pl.DataFrame, keys: Sequence[tuple[str | None, str | None]]) -> tuple[list[pl.Expr], str]:
    """Line predicates per key, and a fingerprint of what they match (changes with the tree)."""
    exprs, text = [], []
    for category, product in keys:
        if category is not None:
            members = descendants(categories, category)
            exprs.append(pl.col("category_id").is_in(members))
            text.append(f"c:{category}:{','.join(members)}")
        else:
            exprs.append(pl.col("product_id") == product)
            text.append(f"p:{product}")
    return exprs, hashlib.sha256("|".join(text).encode()).hexdigest()[:16]


def customer_zones(customers: pl.DataFrame, program_tz: str) -> pl.DataFrame:
    """`customer_id` and the zone its local days are in (its own when valid, else the program's)."""
    import zoneinfo

    known = sorted(zoneinfo.available_timezones())
    tz = pl.col("timezone")
    return customers.select("customer_id", pl.when(tz.is_in(known)).then(tz).otherwise(pl.lit(program_tz)).alias(_TZ))


def _local_days(checks: pl.DataFrame, zones: pl.DataFrame) -> pl.DataFrame:
    """Checks of known customers with their customer-local day (one conversion per zone, not per row)."""
    rows = checks.join(zones, on="customer_id", how="inner")
    parts = [
        rows.filter(pl.col(_TZ) == zone).with_columns(pl.col("ts").dt.convert_time_zone(zone).dt.date().alias(_DAY))
        for zone in rows.get_column(_TZ).unique().sort().to_list()
    ]
    if not parts:
        return rows.with_columns(pl.lit(None, dtype=pl.Date()).alias(_DAY))
    return pl.concat(parts, how="vertical")


def day_sums(
    checks: pl.DataFrame,
    items: pl.DataFrame,
    zones: pl.DataFrame,
    matchers: Sequence[pl.Expr],
) -> pl.DataFrame:
    """Per customer and local day: checks, amount, quantity and lines, overall and per key."""
    names = _key_names(matchers)
    line_aggs: list[pl.Expr] = [pl.len().cast(pl.Int64).alias("ln_all")]
    for name, match in zip(names[1:], matchers, strict=True):
        line_aggs += [
            match.any().alias(f"has_{name}"),
            match.sum().cast(pl.Int64).alias(f"ln_{name}"),
            pl.col("amount").filter(match).sum().cast(AMOUNT).alias(f"amt_{name}"),
            pl.col("quantity").filter(match).sum().cast(QUANTITY_SUM).alias(f"qty_{name}"),
        ]
    day_items = items.join(checks.select("check_id"), on="check_id", how="semi")  # lines of other days cost nothing
    per_check = day_items.group_by("check_id").agg(line_aggs)
    rows = _local_days(checks.select("check_id", "customer_id", "ts", "total"), zones).join(
        per_check, on="check_id", how="left"
    )
    zero_amt, zero_qty = pl.lit(Decimal(0), AMOUNT), pl.lit(Decimal(0), QUANTITY_SUM)
    measures: list[pl.Expr] = [
        pl.lit(1, pl.Int64).alias("n_all"),
        pl.col("total").cast(AMOUNT).alias("amt_all"),
        pl.lit(Decimal(0), QUANTITY_SUM).alias("qty_all"),
        pl.col("ln_all").fill_null(0).alias("ln_all"),
    ]
    for name in names[1:]:
        has = pl.col(f"has_{name}").fill_null(False)
        measures += [
            has.cast(pl.Int64).alias(f"n_{name}"),
            pl.when(has).then(pl.col(f"amt_{name}")).otherwise(zero_amt).alias(f"amt_{name}"),
            pl.when(has).then(pl.col(f"qty_{name}")).otherwise(zero_qty).alias(f"qty_{name}"),
            pl.when(has).then(pl.col(f"ln_{name}")).otherwise(0).alias(f"ln_{name}"),
        ]
    columns = [f"{m}_{k}" for k in names for m in _SUMS]
    return (
        rows.select("customer_id", _DAY, *measures)
        .group_by("customer_id", _DAY)
        .agg(pl.col(c).sum() for c in columns)
        .with_columns(pl.col(c).cast(_TYPES[c.split("_")[0]]) for c in columns)
    )


def _add_sums(state: pl.DataFrame, added: pl.DataFrame, keys: list[str], sums: dict[str, pl.DataType]) -> pl.DataFrame:
    """`state` with the rows of `added` summed in by `keys`: only the keys the day touched are
    regrouped, the rest of the state is passed through (a day's cost, not the state's size)."""
    added = added.select(state.columns)
    if added.is_empty():
        return state
    touched = state.join(added.select(keys).unique(), on=keys, how="semi")
    merged = (
        pl.concat([touched, added], how="vertical")
        .group_by(keys)
        .agg(pl.col(c).sum().cast(t) for c, t in sums.items())
        .select(state.columns)
    )
    return pl.concat([state.join(added.select(keys).unique(), on=keys, how="anti"), merged], how="vertical")


def _empty_daily(keys: Sequence[tuple[str | None, str | None]]) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {"customer_id": pl.Int64(), _DAY: pl.Date()}
    schema.update({f"{m}_{k}": _TYPES[m] for k in _key_names(keys) for m in _SUMS})
    return pl.DataFrame(schema=schema)


def _empty_settled(keys: Sequence[tuple[str | None, str | None]]) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {"customer_id": pl.Int64()}
    for k in _key_names(keys):
        schema.update({f"{m}_{k}": _TYPES[m] for m in _SUMS})
        schema.update({f"first_{k}": pl.Date(), f"last_{k}": pl.Date()})
    return pl.DataFrame(schema=schema)


def window_bounds(window: Window | None, day: date) -> tuple[date | None, date]:
    """The window capped at `day` as (first local day or None, local day after the last)."""
    end = day + timedelta(days=1)
    if window is None:
        return None, end
    if window.last_days is not None:
        return day - timedelta(days=window.last_days - 1), end
    high = min(window.to, day) if window.to is not None else day
    return window.from_, high + timedelta(days=1)


def horizon(specs: Iterable[FeatureSpec], day: date) -> date:
    """The earliest local day a window can read on `day` or later: older days can settle."""
    firsts = [f for s in specs if (f := window_bounds(s.window, day)[0]) is not None]
    return min([day + timedelta(days=1), *firsts])


def empty_state(day: date, specs: Iterable[FeatureSpec], categories: pl.DataFrame) -> PurchaseState:
    """The state before any check (a day to start from, e.g. the day before the first run)."""
    keys = purchase_keys(specs)
    _, fingerprint = _matchers(categories, keys)
    return PurchaseState(day, keys, fingerprint, _empty_daily(keys), _empty_settled(keys))


def advance(
    state: PurchaseState,
    day: date,
    day_checks: pl.DataFrame,
    day_items: pl.DataFrame,
    *,
    customers: pl.DataFrame,
    categories: pl.DataFrame,
    specs: Iterable[FeatureSpec],
    program_tz: str,
) -> PurchaseState:
    """The state as of `day` from the state as of the day before plus the checks (and their lines)
    that entered the validated sources on `day`; `customers` are those known at `day`."""
    specs = [s for s in specs if s.field in PURCHASE_FIELDS]
    keys = purchase_keys(specs)
    matchers, fingerprint = _matchers(categories, keys)
    if keys != state.keys or fingerprint != state.fingerprint:
        raise StaleState("purchase state: the category tree or the purchase conditions changed; rebuild it")
    if state.day >= day:
        raise StaleState(f"purchase state is as of {state.day.isoformat()}, not before {day.isoformat()}")
    added = day_sums(day_checks, day_items, customer_zones(customers, program_tz), matchers)
    names = _key_names(keys)
    sums = [f"{m}_{k}" for k in names for m in _SUMS]
    daily = _add_sums(state.daily, added, ["customer_id", _DAY], {c: _TYPES[c.split("_")[0]] for c in sums})
    limit = horizon(specs, day)
    leaving = daily.filter(pl.col(_DAY) < limit)
    daily = daily.filter(pl.col(_DAY) >= limit)
    if leaving.height:
        dates = [
            e
            for k in names
            for e in (
                pl.col(_DAY).filter(pl.col(f"n_{k}") > 0).min().alias(f"first_{k}"),
                pl.col(_DAY).filter(pl.col(f"n_{k}") > 0).max().alias(f"last_{k}"),
            )
        ]
        settling = leaving.group_by("customer_id").agg(*(pl.col(c).sum() for c in sums), *dates)
        merged = pl.concat([state.settled, settling.select(state.settled.columns)], how="vertical_relaxed")
        settled = (
            merged.group_by("customer_id")
            .agg(
                *(pl.col(c).sum().cast(_TYPES[c.split("_")[0]]) for c in sums),
                *(pl.col(f"first_{k}").min() for k in names),
                *(pl.col(f"last_{k}").max() for k in names),
            )
            .sort("customer_id")
        )
    else:
        settled = state.settled
    return PurchaseState(day, keys, fingerprint, daily, settled)


def build_state(
    day: date,
    checks: pl.DataFrame,
    items: pl.DataFrame,
    *,
    customers: pl.DataFrame,
    categories: pl.DataFrame,
    specs: Iterable[FeatureSpec],
    program_tz: str,
) -> PurchaseState:
    """The state as of `day` from all checks visible then (the first run on an empty state)."""
    specs = [s for s in specs if s.field in PURCHASE_FIELDS]
    start = empty_state(day - timedelta(days=1), specs, categories)
    return advance(
        start, day, checks, items, customers=customers, categories=categories, specs=specs, program_tz=program_tz
    )


def purchase_features(state: PurchaseState, customer_ids: pl.Series, specs: Iterable[FeatureSpec]) -> pl.DataFrame:
    """One row per customer of `customer_ids`, one column per purchase spec, as of `state.day`.

    Same values and types as `compute_features`: counts and sums 0 without checks, averages and
    dates null.
    """
    day = state.day
    specs = sorted({s for s in specs if s.field in PURCHASE_FIELDS}, key=lambda s: s.column)
    index = {k: f"k{i}" for i, k in enumerate(state.keys)}
    # Specs sharing a window and a key share their sums: one set of aggregations per pair.
    windows = sorted({window_bounds(s.window, day) for s in specs}, key=str)
    window_of = {w: f"w{j}" for j, w in enumerate(windows)}
    masks = []
    for (first, end), name in window_of.items():
        mask = pl.col(_DAY) < end
        masks.append((mask if first is None else mask & (pl.col(_DAY) >= first)).alias(name))
    daily = state.daily.filter(pl.col(_DAY) <= day).with_columns(masks)
    pairs: dict[tuple[str, str], str] = {}
    aggs: list[pl.Expr] = []
    settled_cols: list[pl.Expr] = []
    finals: list[pl.Expr] = []
    zero_amt, zero_qty = pl.lit(Decimal(0), AMOUNT), pl.lit(Decimal(0), QUANTITY_SUM)
    for s in specs:
        k = index[(s.category, s.product)] if (s.category or s.product) else _ALL
        w = window_of[window_bounds(s.window, day)]
        all_history = s.window is None
        if (w, k) not in pairs:
            g = pairs[(w, k)] = f"{w}_{k}"
            inside = pl.col(w)
            hit = inside & (pl.col(f"n_{k}") > 0)
            aggs += [pl.when(inside).then(pl.col(f"{m}_{k}")).sum().alias(f"{g}::{m}") for m in _SUMS]
            aggs.append(pl.when(hit).then(pl.col(_DAY)).min().alias(f"{g}::first"))
            aggs.append(pl.when(hit).then(pl.col(_DAY)).max().alias(f"{g}::last"))
            if all_history:
                settled_cols += [pl.col(f"{m}_{k}").alias(f"{g}::s{m}") for m in _SUMS]
                settled_cols += [pl.col(f"{e}_{k}").alias(f"{g}::s{e}") for e in ("first", "last")]
        g = pairs[(w, k)]
        col = s.column

        def total(m: str, g: str = g, all_history: bool = all_history) -> pl.Expr:
            zero = pl.lit(0, _TYPES[m]) if m in ("n", "ln") else pl.lit(Decimal(0), _TYPES[m])
            value = pl.col(f"{g}::{m}").fill_null(zero)
            if all_history:
                value = value + pl.col(f"{g}::s{m}").fill_null(zero)
            return value.cast(_TYPES[m])

        n = total("n").cast(pl.Int64)
        n_or_null = pl.when(n > 0).then(n)
        first_day, last_day = pl.col(f"{g}::first"), pl.col(f"{g}::last")
        if all_history:
            first_day = pl.min_horizontal(first_day, pl.col(f"{g}::sfirst"))
            last_day = pl.max_horizontal(last_day, pl.col(f"{g}::slast"))
        if s.field == "purchase_count":
            finals.append(n.alias(col))
        elif s.field == "purchase_total":
            finals.append(total("amt").cast(AMOUNT).fill_null(zero_amt).alias(col))
        elif s.field == "purchase_quantity":
            finals.append(total("qty").cast(QUANTITY_SUM).fill_null(zero_qty).alias(col))
        elif s.field == "average_check":
            # exact mean, as compute_features keeps it (filters compare it unrounded)
            finals.append((total("amt").cast(AVERAGE_AMOUNT) / n_or_null).cast(AVERAGE_AMOUNT).alias(col))
        elif s.field == "average_items_per_check":
            finals.append((total("ln") / n_or_null).cast(pl.Float64).alias(col))
        elif s.field in ("first_check_date", "last_check_date"):
            finals.append((first_day if s.field.startswith("first") else last_day).alias(col))
        else:
            picked = first_day if s.field == "days_since_first_check" else last_day
            finals.append((pl.lit(day) - picked).dt.total_days().cast(pl.Int64).alias(col))
    ids = pl.DataFrame({"customer_id": customer_ids.cast(pl.Int64)}).unique().sort("customer_id")
    if not specs:
        return ids
    windowed = daily.group_by("customer_id").agg(aggs)
    settled = state.settled.select("customer_id", *settled_cols)
    return (
        ids.join(windowed, on="customer_id", how="left")
        .join(settled, on="customer_id", how="left")
        .select("customer_id", *finals)
        .sort("customer_id")
    )


# ---------------------------------------------------------------- bonuses, communications, site visits

#: Feature fields of the event families kept as windowed per-day sums, by family. `bonus_balance` and
#: `bonuses_expiring` are not sums: they are what remains of FIFO lots, carried day to day by
#: `transforms.ledger.advance_lots` (property-tested against a full build there).
EVENT_FIELDS: dict[str, frozenset[str]] = {
    "bonuses": frozenset({"bonuses_accrued", "bonuses_redeemed"}),
    "communications": frozenset({"message_events"}),
    "site_visits": frozenset({"site_visits"}),
}
#: The timestamp giving an event row its customer-local day.
EVENT_TIME = {"bonuses": "ts", "communications": "event_at", "site_visits": "ts"}
_EXP = "_exp"


@dataclass(frozen=True)
class EventState:
    """Per-customer windowed sums of one event family as of `day`.

    `daily`/`settled` hold one column per distinct row measure (e.g. "opened e-mails", "accrued
    amount"); `expiring` (bonuses only) holds accrual amounts by the local day they were accrued and the
    local day they expire, for expiry days still ahead.
    """

    day: date
    family: str
    fingerprint: str
    daily: pl.DataFrame
    settled: pl.DataFrame
    expiring: pl.DataFrame


def ledger_rows(bonus_transactions: pl.DataFrame, own_accruals: pl.DataFrame | None = None) -> pl.DataFrame:
    """The bonus rows the features read: the loyalty ledger plus this project's own accruals."""
    ledger = bonus_transactions.select(
        "customer_id",
        "ts",
        "kind",
        pl.col("amount").cast(AMOUNT),
        pl.col("expires_at").cast(pl.Datetime("us", "UTC")),
    )
    if own_accruals is None or own_accruals.is_empty():
        return ledger
    own = own_accruals.select(
        "customer_id",
        pl.col("accrued_at").alias("ts"),
        pl.lit("accrual").alias("kind"),
        pl.col("amount").cast(AMOUNT),
        pl.col("expires_at").cast(pl.Datetime("us", "UTC")),
    )
    return pl.concat([ledger, own], how="vertical")


def _measure_of(spec: FeatureSpec, categories: pl.DataFrame) -> tuple[pl.Expr, pl.DataType]:
    """The per-row value a spec sums (0 for rows it does not count); D-independent by construction."""
    kind, amount = pl.col("kind"), pl.col("amount")
    zero = pl.lit(Decimal(0), AMOUNT)
    if spec.field in ("bonus_balance", "bonuses_expiring"):
        spent = kind.is_in(["redemption", "expiry"])
        expr = pl.when(kind == "accrual").then(amount).when(spent).then(-amount.abs()).otherwise(zero)
        return expr.cast(AMOUNT), AMOUNT
    if spec.field == "bonuses_accrued":
        return pl.when(kind == "accrual").then(amount).otherwise(zero).cast(AMOUNT), AMOUNT
    if spec.field == "bonuses_redeemed":
        return pl.when(kind == "redemption").then(amount.abs()).otherwise(zero).cast(AMOUNT), AMOUNT
    wanted = pl.lit(True)
    if spec.field == "message_events":
        for col, value in (("event", spec.event), ("channel", spec.channel), ("campaign_id", spec.campaign)):
            if value is not None:
                wanted = wanted & (pl.col(col) == value).fill_null(False)
    else:
        if spec.category is not None:
            wanted = wanted & pl.col("category_id").is_in(descendants(categories, spec.category)).fill_null(False)
        if spec.url_contains is not None:
            wanted = wanted & pl.col("url").str.contains(spec.url_contains, literal=True).fill_null(False)
    return wanted.cast(pl.Int64), pl.Int64()


def _event_measures(
    family: str, specs: Iterable[FeatureSpec], categories: pl.DataFrame
) -> tuple[dict[str, tuple[pl.Expr, pl.DataType]], dict[str, str], str]:
    """Distinct measures (`m0`, `m1`...), which measure each spec column reads, and a fingerprint."""
    by_text: dict[str, str] = {}
    measures: dict[str, tuple[pl.Expr, pl.DataType]] = {}
    column_measure: dict[str, str] = {}
    for s in sorted({s for s in specs if s.field in EVENT_FIELDS[family]}, key=lambda s: s.column):
        expr, dtype = _measure_of(s, categories)
        text = str(expr)
        if text not in by_text:
            by_text[text] = f"m{len(by_text)}"
            measures[by_text[text]] = (expr, dtype)
        column_measure[s.column] = by_text[text]
    fingerprint = hashlib.sha256("|".join(sorted(by_text)).encode()).hexdigest()[:16]
    return measures, column_measure, fingerprint


def _event_window(spec: FeatureSpec) -> Window | None:
    """The window a spec sums over (the balance is all history whatever window it was given)."""
    return None if spec.field in ("bonus_balance", "bonuses_expiring") else spec.window


def empty_event_state(family: str, day: date, specs: Iterable[FeatureSpec], categories: pl.DataFrame) -> EventState:
    """The state of `family` before any row."""
    measures, _, fingerprint = _event_measures(family, specs, categories)
    daily_schema: dict[str, pl.DataType] = {"customer_id": pl.Int64(), _DAY: pl.Date()}
    daily_schema.update({m: t for m, (_, t) in measures.items()})
    settled_schema = {k: v for k, v in daily_schema.items() if k != _DAY}
    expiring = pl.DataFrame(schema={"customer_id": pl.Int64(), _DAY: pl.Date(), _EXP: pl.Date(), "amount": AMOUNT})
    return EventState(
        day, family, fingerprint, pl.DataFrame(schema=daily_schema), pl.DataFrame(schema=settled_schema), expiring
    )


def _localize(rows: pl.DataFrame, zones: pl.DataFrame, columns: dict[str, str]) -> pl.DataFrame:
    """Rows of known customers with customer-local dates of the UTC `columns` ({source: target})."""
    rows = rows.join(zones, on="customer_id", how="inner")
    parts = [
        rows.filter(pl.col(_TZ) == zone).with_columns(
            pl.col(src).dt.convert_time_zone(zone).dt.date().alias(dst) for src, dst in columns.items()
        )
        for zone in rows.get_column(_TZ).unique().sort().to_list()
    ]
    if not parts:
        return rows.with_columns(pl.lit(None, dtype=pl.Date()).alias(dst) for dst in columns.values())
    return pl.concat(parts, how="vertical")


def advance_events(
    state: EventState,
    day: date,
    rows: pl.DataFrame,
    *,
    customers: pl.DataFrame,
    categories: pl.DataFrame,
    specs: Iterable[FeatureSpec],
    program_tz: str,
) -> EventState:
    """The state as of `day` from the state as of an earlier day plus the family's rows that entered
    on `day` (for bonuses: `ledger_rows` of the day's ledger and own accruals)."""
    specs = [s for s in specs if s.field in EVENT_FIELDS[state.family]]
    measures, _, fingerprint = _event_measures(state.family, specs, categories)
    if fingerprint != state.fingerprint:
        raise StaleState(f"{state.family} state: the conditions or the category tree changed; rebuild it")
    if state.day >= day:
        raise StaleState(f"{state.family} state is as of {state.day.isoformat()}, not before {day.isoformat()}")
    zones = customer_zones(customers, program_tz)
    stamp = EVENT_TIME[state.family]
    local = {stamp: _DAY} | ({"expires_at": _EXP} if state.family == "bonuses" else {})
    dated = _localize(rows, zones, local)
    added = (
        dated.select("customer_id", _DAY, *(e.alias(m) for m, (e, _) in measures.items()))
        .group_by("customer_id", _DAY)
        .agg(pl.col(m).sum().cast(t) for m, (_, t) in measures.items())
    )
    names = list(measures)
    daily = _add_sums(state.daily, added, ["customer_id", _DAY], {m: measures[m][1] for m in names})
    windows = [window_bounds(_event_window(s), day)[0] for s in specs]
    limit = min([day + timedelta(days=1), *(f for f in windows if f is not None)])
    leaving = daily.filter(pl.col(_DAY) < limit)
    daily = daily.filter(pl.col(_DAY) >= limit)
    settled = state.settled
    if leaving.height:
        settled = _add_sums(settled, leaving.drop(_DAY), ["customer_id"], {m: measures[m][1] for m in names})
    expiring = state.expiring
    if state.family == "bonuses":
        accruals = (
            dated.filter((pl.col("kind") == "accrual") & pl.col(_EXP).is_not_null())
            .group_by("customer_id", _DAY, _EXP)
            .agg(pl.col("amount").sum().cast(AMOUNT))
        )
        expiring = _add_sums(expiring, accruals, ["customer_id", _DAY, _EXP], {"amount": AMOUNT})
        expiring = expiring.filter(pl.col(_EXP) > day)  # expired accruals never count again
    return EventState(day, state.family, fingerprint, daily, settled, expiring)


def event_features(
    state: EventState, customer_ids: pl.Series, specs: Iterable[FeatureSpec], categories: pl.DataFrame
) -> pl.DataFrame:
    """One row per customer of `customer_ids`, one column per spec of the family, as `compute_features`
    gives them (counts and amounts 0 for customers without rows)."""
    day = state.day
    specs = sorted({s for s in specs if s.field in EVENT_FIELDS[state.family]}, key=lambda s: s.column)
    measures, column_measure, _ = _event_measures(state.family, specs, categories)
    ids = pl.DataFrame({"customer_id": customer_ids.cast(pl.Int64)}).unique().sort("customer_id")
    if not specs:
        return ids
    daily = state.daily.filter(pl.col(_DAY) <= day)
    aggs: dict[str, pl.Expr] = {}
    settled_needed: set[str] = set()
    finals: list[pl.Expr] = []
    expiring_aggs: list[pl.Expr] = []
    tomorrow = day + timedelta(days=1)
    for s in specs:
        m = column_measure[s.column]
        dtype = measures[m][1]
        zero = pl.lit(0, dtype) if dtype == pl.Int64() else pl.lit(Decimal(0), dtype)
        if s.field == "bonuses_expiring":
            last = tomorrow + timedelta(days=s.within_days or 0)
            inside = (pl.col(_DAY) <= day) & (pl.col(_EXP) >= tomorrow) & (pl.col(_EXP) < last)
            expiring_aggs.append(pl.when(inside).then(pl.col("amount")).sum().cast(AMOUNT).alias(s.column))
            finals.append(pl.col(s.column).fill_null(zero).cast(AMOUNT).alias(s.column))
            continue
        first, end = window_bounds(_event_window(s), day)
        name = f"{m}::{first}::{end}"
        if name not in aggs:
            inside = pl.col(_DAY) < end
            if first is not None:
                inside = inside & (pl.col(_DAY) >= first)
            aggs[name] = pl.when(inside).then(pl.col(m)).sum().alias(name)
        value = pl.col(name).fill_null(zero)
        if first is None:
            settled_needed.add(m)
            value = value + pl.col(f"{m}::settled").fill_null(zero)
        finals.append(value.cast(dtype).alias(s.column))
    out = ids.join(daily.group_by("customer_id").agg(list(aggs.values())), on="customer_id", how="left")
    settled = state.settled.select("customer_id", *(pl.col(m).alias(f"{m}::settled") for m in sorted(settled_needed)))
    out = out.join(settled, on="customer_id", how="left")
    if expiring_aggs:
        out = out.join(state.expiring.group_by("customer_id").agg(expiring_aggs), on="customer_id", how="left")
    return out.select("customer_id", *finals).sort("customer_id")
