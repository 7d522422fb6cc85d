"""The shared per-customer features frame: one row per customer, one column per feature.

Every segment and every campaign filter of a day is evaluated against ONE frame computed once per
run date D. A condition such as `{field: purchase_count, window: {last_days: 30}, category: dairy}`
maps to a hashable `FeatureSpec` whose column name is deterministic
(`purchase_count__last_30d__cat_dairy`), so the same condition written in ten segments costs one
column. Specs are grouped by source table and each table is aggregated in one pass (one `group_by`
over checks for all purchase windows and categories, one over the bonus ledger, ...); the per-source
aggregates are joined on `customer_id` and the whole plan is collected once.

Point in time: every source row is filtered on the run's cutoff here again (not only upstream), so a
`SourceFrames` holding later history still yields the features a run on D would have seen.
Customer-local days: windows are in local days of the customer's zone (`customers.timezone`, else
`AsOf.program_tz`). Event rows are not converted to local dates one by one: "local day of `ts` is on or
after X" is "`ts` is at or after the first instant of X in the customer's zone", so a tiny table of
those instants per distinct zone (computed with the real zone rules) is joined to the rows and UTC
instants are compared. Only per-customer results that are dates (first/last check...) are converted,
after aggregation. When a zone's local dates are not monotone around a needed day (a clock set back
across midnight), the rows are converted to local dates instead, partitioned by the few zones.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import reduce
from typing import cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from loyalty_assets.config.filters import (
    CUSTOMER_PREFIX,
    Condition,
    Filter,
    Window,
    field_def,
    iter_conditions,
)
from loyalty_assets.sources.frames import AsOf, SourceFrames
from loyalty_assets.sources.schemas import SCHEMAS
from loyalty_assets.transforms.ledger import lots_as_of

#: Money and bonus amounts in the features frame (sums of Decimal(14, 2) widen to 38 digits).
AMOUNT = pl.Decimal(38, 2)
#: A mean of amounts (`average_check`), kept to 18 places and never rounded to cents before a filter
#: compares it: 90.01 / 3 = 30.0033… is more than 30, 59.99 / 2 = 29.995 is less. 18 places decide
#: every comparison with a value of up to 6 places exactly: a mean S/n of 2-place amounts differs from
#: such a value by at least 1e-6/n when it differs at all, far more than the 1e-18 dropped, for any n
#: below 10^12 checks. Round it only to show it.
AVERAGE_AMOUNT = pl.Decimal(38, 18)
#: Summed line quantities.
QUANTITY_SUM = pl.Decimal(38, 3)

#: Columns every features frame has, whatever the specs.
PROFILE_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "gender",
    "age",
    "birth_date",
    "birth_month",
    "birth_day",
    "city",
    "timezone",
    "registration_date",
    "days_since_registration",
    "email_subscribed",
    "sms_subscribed",
    "push_subscribed",
    "email_valid",
    "has_email",
    "has_phone",
    "has_push_token",
    "labels",
    # contact details, kept for previews (masked) and for campaigns choosing a recipient
    "first_name",
    "email",
    "phone",
)

_DAY = "_day"  # customer-local date of an event row
_TZ = "_tz"  # effective zone of the customer owning a row
_UTC = ZoneInfo("UTC")
_US = timedelta(microseconds=1)


def _start(day: date) -> str:
    """Column holding, per row, the first UTC instant of local `day` in the row's customer zone."""
    return f"_from_{day:%Y%m%d}"


@dataclass(frozen=True)
class _LocalDays:
    """Answers "the customer-local day of column `col` is before / on or after X" on event rows.

    Either `col` holds local dates (`as_dates`), or it holds UTC instants and the rows carry the
    `_start(X)` columns: local day >= X exactly when the instant is >= the first instant of X.
    """

    col: str
    as_dates: bool

    def before(self, day: date) -> pl.Expr:
        return pl.col(self.col) < (day if self.as_dates else pl.col(_start(day)))

    def on_or_after(self, day: date) -> pl.Expr:
        return pl.col(self.col) >= (day if self.as_dates else pl.col(_start(day)))


def _first_instant(day: date, zone: str) -> datetime:
    """The first UTC instant whose local date in `zone` is `day` or later.

    Usually local midnight; when clocks jump over midnight, the end of the gap. Bisection over the
    days around it (UTC offsets are within ±26 h), so it needs no knowledge of the zone's rules; it
    is exact when local dates are monotone there, which `_Context.day_starts` verifies.
    """
    tz = ZoneInfo(zone)
    midnight = datetime.combine(day, time(0), _UTC)
    lo, hi = midnight - timedelta(days=2), midnight + timedelta(days=2)
    while hi - lo > _US:
        mid = lo + (hi - lo) // 2
        if mid.astimezone(tz).date() >= day:
            hi = mid
        else:
            lo = mid
    return hi


def _midnight_repeats(zone: str, days: list[date]) -> bool:
    """Whether local midnight of one of `days` occurs twice in `zone` (clocks set back across it).

    Only then can the local date of later instants be earlier (e.g. 00:30 back to 23:30): the one
    case where comparing instants with the first instant of a day differs from comparing dates.
    """
    naive = pl.Series([datetime.combine(d, time(0)) for d in days], dtype=pl.Datetime("us"))
    earliest = naive.dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
    latest = naive.dt.replace_time_zone(zone, ambiguous="latest", non_existent="null")
    return bool((earliest != latest).any())


@dataclass(frozen=True)
class FeatureSpec:
    """One parameterised feature; equal conditions (across segments and campaigns) give equal specs.

    `field` is the feature family (`purchase_count`, `bonuses_expiring`, `attribute`, `customer`...);
    the other attributes are its parameters, `None` when not used.
    """

    field: str
    window: Window | None = None
    category: str | None = None
    product: str | None = None
    within_days: int | None = None
    name: str | None = None
    period: date | None = None
    event: str | None = None
    channel: str | None = None
    campaign: str | None = None
    url_contains: str | None = None

    @property
    def source(self) -> str:
        """The source family computing this feature (one aggregation pass per family)."""
        if self.field == "customer":
            return "customer"
        if self.field == "purchase_quantity":
            return "purchases"
        return field_def(self.field).source

    @property
    def column(self) -> str:
        """Deterministic column name, e.g. `purchase_count__last_30d__cat_dairy`."""
        parts = [self.field]
        if self.name is not None:
            parts.append(self.name)
        if self.window is not None:
            parts.append(self.window.key)
        if self.category is not None:
            parts.append(f"cat_{self.category}")
        if self.product is not None:
            parts.append(f"prod_{self.product}")
        if self.within_days is not None:
            parts.append(f"within_{self.within_days}d")
        if self.period is not None:
            parts.append(f"month_{self.period:%Y_%m}")
        if self.event is not None:
            parts.append(f"event_{self.event}")
        if self.channel is not None:
            parts.append(f"ch_{self.channel}")
        if self.campaign is not None:
            parts.append(f"camp_{self.campaign}")
        if self.url_contains is not None:
            parts.append(f"url_{self.url_contains}")
        return "__".join(parts)


#: `bought` is the purchase features restricted to a product/category, named by its measure.
_BOUGHT_MEASURES = {
    None: "purchase_count",
    "checks": "purchase_count",
    "amount": "purchase_total",
    "quantity": "purchase_quantity",
}


def spec_for(cond: Condition) -> FeatureSpec | None:
    """The feature a condition reads, or None for profile columns, segment references and sampling."""
    fd = field_def(cond.field)
    if fd.source in ("profile", "segment", "sample"):
        return None
    if fd.source == "customer":
        return FeatureSpec("customer", name=cond.field.removeprefix(CUSTOMER_PREFIX))
    if fd.source == "purchases":
        name = _BOUGHT_MEASURES[cond.measure] if cond.field == "bought" else cond.field
        return FeatureSpec(name, window=cond.window, category=cond.category, product=cond.product)
    if fd.source == "bonuses":
        return FeatureSpec(cond.field, window=cond.window, within_days=cond.within_days)
    if fd.source == "attributes":
        return FeatureSpec("attribute", name=cond.name)
    if fd.source == "favourites":
        return FeatureSpec(cond.field, period=cond.period.month if cond.period else None)
    if fd.source == "communications":
        return FeatureSpec(
            cond.field, window=cond.window, event=cond.event, channel=cond.channel, campaign=cond.campaign
        )
    if fd.source == "site_visits":
        return FeatureSpec(cond.field, window=cond.window, category=cond.category, url_contains=cond.url_contains)
    raise ValueError(f"no feature for field {cond.field!r}")  # pragma: no cover - FIELDS is closed


def column_for(cond: Condition) -> str:
    """The features-frame column a condition compares (profile fields are their own column)."""
    spec = spec_for(cond)
    return cond.field if spec is None else spec.column


def required_columns(filters: Iterable[Filter]) -> set[str]:
    """Features-frame columns the filters read (segment references and sampling read `customer_id`)."""
    return {"customer_id"} | {
        column_for(c)
        for f in filters
        for _, c in iter_conditions(f)
        if field_def(c.field).source not in ("segment", "sample")
    }


def required_features(filters: Iterable[Filter]) -> list[FeatureSpec]:
    """The distinct specs all `filters` need, sorted by column name (duplicates collapse)."""
    specs = {s for f in filters for _, c in iter_conditions(f) if (s := spec_for(c)) is not None}
    return sorted(specs, key=lambda s: s.column)


class _Context:
    """What every source builder needs: D, the cutoff, customer zones and the category tree."""

    def __init__(self, frames: SourceFrames, as_of: AsOf) -> None:
        self.frames = frames
        self.as_of = as_of
        self.day = as_of.date
        self.cutoff = as_of.cutoff_literal
        customers = _with_contract_columns(frames.customers, "customers")
        zones = customers.get_column("timezone").drop_nulls().unique().to_list()
        valid = sorted(z for z in zones if _is_zone(z))
        self.zones = sorted({*valid, as_of.program_tz})
        #: `_TZ` is an Enum of the few zones: joins, filters and `first()` on it are integer work.
        self.zone_type = pl.Enum(self.zones)
        tz = pl.col("timezone")
        self.customers = (
            customers.lazy()
            .with_columns(_utc("registered_at", customers.schema))
            .filter(pl.col("registered_at") < self.cutoff)
            .with_columns(
                pl.when(tz.is_in(valid)).then(tz).otherwise(pl.lit(as_of.program_tz)).cast(self.zone_type).alias(_TZ)
            )
        )
        self.tz_map = self.customers.select("customer_id", _TZ)
        self._children: dict[str, list[str]] | None = None

    def table(self, name: str, df: pl.DataFrame, ts: str) -> pl.LazyFrame:
        """A source table as of the cutoff (rows whose `ts` is before it), timestamps in UTC."""
        stamps = [c for c, t in df.schema.items() if isinstance(t, pl.Datetime)]
        return df.lazy().with_columns(_utc(c, df.schema) for c in stamps).filter(pl.col(ts) < self.cutoff)

    def day_starts(self, days: Iterable[date]) -> pl.DataFrame | None:
        """Per zone (`_TZ`), the first UTC instant of each local day in `days` (columns `_start(day)`).

        A handful of rows (one per distinct zone). None when a zone's local dates are not monotone
        around one of the days, or Polars' zone rules disagree with `zoneinfo` there: the caller then
        converts rows to local dates instead.
        """
        days = sorted(set(days))
        schema = {_TZ: self.zone_type, **{_start(d): pl.Datetime("us", "UTC") for d in days}}
        rows = []
        for zone in self.zones:
            if days and _midnight_repeats(zone, days):
                return None
            starts = [_first_instant(d, zone) for d in days]
            instants = pl.Series(starts, dtype=pl.Datetime("us", "UTC"))
            expected = pl.Series(days, dtype=pl.Date())
            at = instants.dt.convert_time_zone(zone).dt.date()
            just_before = (instants - _US).dt.convert_time_zone(zone).dt.date()
            if not ((at >= expected) & (just_before < expected)).all():
                return None
            rows.append([zone, *starts])
        return pl.DataFrame(rows, schema=schema, orient="row")

    def monotone(self, first: date, last: date) -> bool:
        """Whether local dates never go back in any zone between `first` and `last` (so the local date of
        the latest instant is the latest local date, and likewise for the earliest)."""
        days = pl.date_range(first, last, eager=True).to_list()
        return not any(_midnight_repeats(zone, days) for zone in self.zones)

    def local_days(
        self, lf: pl.LazyFrame, bounds: Mapping[str, Iterable[date]], *, instants: bool = True
    ) -> tuple[pl.LazyFrame, dict[str, _LocalDays]]:
        """Rows (of customers visible at D: inner join) that can answer local-day questions on the UTC
        columns of `bounds` for the days listed there (`{column: days}`).

        Joining the per-zone first instants (through the customer) and comparing instants avoids
        converting every row to a local date (a pass per zone over the rows plus a concat); rows are
        converted only when `instants` is False or `day_starts` cannot be used.
        """
        starts = self.day_starts(d for days in bounds.values() for d in days) if instants else None
        if starts is None:
            dates = {c: f"_day_{c}" for c in bounds}
            return self.localize(lf, dates), {c: _LocalDays(dates[c], as_dates=True) for c in bounds}
        per_customer = self.tz_map.join(starts.lazy(), on=_TZ, how="left")
        lf = lf.join(per_customer, on="customer_id", how="inner")
        return lf, {c: _LocalDays(c, as_dates=False) for c in bounds}

    def localize(self, lf: pl.LazyFrame, columns: Mapping[str, str], *, join: bool = True) -> pl.LazyFrame:
        """Add customer-local dates of UTC timestamp columns (`{source: target}`).

        Rows are split by zone (a handful), converted with `dt.convert_time_zone` and concatenated:
        a loop over zones, never over rows. Rows of customers not visible at D are dropped here (inner
        join): they would not reach the features frame anyway.
        """
        if join:
            lf = lf.join(self.tz_map, on="customer_id", how="inner")
        parts = [
            lf.filter(pl.col(_TZ) == zone).with_columns(
                pl.col(src).dt.convert_time_zone(zone).dt.date().alias(dst) for src, dst in columns.items()
            )
            for zone in self.zones
        ]
        return pl.concat(parts, how="vertical")

    def descendants(self, category: str) -> list[str]:
        """`category` and everything under it in `categories` (cycle-safe)."""
        if self._children is None:
            children: dict[str, list[str]] = defaultdict(list)
            for row in self.frames.categories.select("category_id", "parent_id").iter_rows():
                if row[1] is not None:
                    children[row[1]].append(row[0])
            self._children = children
        seen = {category}
        todo = [category]
        while todo:
            for child in self._children.get(todo.pop(), []):
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        return sorted(seen)

    def window_bounds(self, window: Window | None) -> tuple[date | None, date]:
        """The window capped at D as (first local day or None, local day after the last)."""
        end = self.day + timedelta(days=1)
        if window is None:
            return None, end
        if window.last_days is not None:
            return self.day - timedelta(days=window.last_days - 1), end
        high = min(window.to, self.day) if window.to is not None else self.day
        return window.from_, high + timedelta(days=1)

    def window_days(self, windows: Iterable[Window | None]) -> set[date]:
        """The days `window_mask` compares with for these windows (always D+1, the base filter)."""
        days = {self.day + timedelta(days=1)}
        for window in windows:
            days.update(d for d in self.window_bounds(window) if d is not None)
        return days

    def narrows(self, window: Window | None) -> bool:
        """Whether the window keeps fewer rows than the base filter (local day <= D) every builder applies."""
        return self.window_bounds(window) != (None, self.day + timedelta(days=1))

    def window_mask(self, window: Window | None, days: _LocalDays) -> pl.Expr:
        """Rows whose local day lies in the window, capped at D (column-based so it aggregates)."""
        first, end = self.window_bounds(window)
        mask = days.before(end)
        return mask if first is None else mask & days.on_or_after(first)


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _utc(col: str, schema: Mapping[str, pl.DataType]) -> pl.Expr:
    """A timestamp column as aware UTC (the contract says zone-less timestamps are UTC)."""
    dtype = schema[col]
    expr = pl.col(col)
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        expr = expr.dt.replace_time_zone("UTC")
    elif isinstance(dtype, pl.Datetime) and dtype.time_zone != "UTC":
        expr = expr.dt.convert_time_zone("UTC")
    return expr.alias(col)


def _with_contract_columns(df: pl.DataFrame, table: str) -> pl.DataFrame:
    """Add the contract's optional columns a frame lacks, as typed nulls."""
    missing = {c: t for c, t in SCHEMAS[table].columns.items() if c not in df.columns}
    return df.with_columns(pl.lit(None, dtype=t).alias(c) for c, t in missing.items()) if missing else df


def _where(expr: pl.Expr, mask: pl.Expr | None) -> pl.Expr:
    """`expr` restricted to the rows of `mask` (all rows when None)."""
    return expr if mask is None else expr.filter(mask)


def _and(*masks: pl.Expr | None) -> pl.Expr | None:
    """The conjunction of the masks given (None ones keep every row); None when all are None."""
    given = [m for m in masks if m is not None]
    return reduce(operator.and_, given) if given else None


def _profile(ctx: _Context) -> pl.LazyFrame:
    """Profile columns: one value per customer, independent of any spec."""
    d = ctx.day
    birth = pl.col("birth_date")
    before_birthday = (birth.dt.month() > d.month) | ((birth.dt.month() == d.month) & (birth.dt.day() > d.day))

    def present(col: str) -> pl.Expr:
        return (pl.col(col).is_not_null() & (pl.col(col).str.strip_chars() != "")).alias(f"has_{col}")

    return (
        ctx.localize(ctx.customers, {"registered_at": "registration_date"}, join=False)
        .with_columns(
            (pl.lit(d.year) - birth.dt.year() - before_birthday.cast(pl.Int32)).cast(pl.Int64).alias("age"),
            birth.dt.month().cast(pl.Int64).alias("birth_month"),
            birth.dt.day().cast(pl.Int64).alias("birth_day"),
            (pl.lit(d) - pl.col("registration_date")).dt.total_days().cast(pl.Int64).alias("days_since_registration"),
            present("email"),
            present("phone"),
            present("push_token"),
        )
        .select(PROFILE_COLUMNS)
    )


def _purchases(ctx: _Context, specs: list[FeatureSpec]) -> tuple[pl.LazyFrame, list[pl.Expr]]:
    """All purchase features in one pass: checks (+ per-check line aggregates) grouped by customer.

    Windows compare UTC instants with per-zone day starts; first/last check dates are the earliest /
    latest instant per customer, converted to a local date after the group_by (one row per customer,
    not per check). That needs local dates to never go back over the checks' span, else rows are
    converted.
    """
    dated = {"first_check_date", "last_check_date", "days_since_first_check", "days_since_last_check"}
    earliest = cast(datetime | None, ctx.frames.checks.get_column("ts").min())  # "ts" is a Datetime column
    instants = earliest is None or not any(s.field in dated for s in specs)
    if not instants and earliest is not None:  # `not instants` already implies a non-None earliest
        instants = ctx.monotone(earliest.date() - timedelta(days=2), ctx.day + timedelta(days=2))
    checks, days = ctx.local_days(
        ctx.table("checks", ctx.frames.checks, "ts").select("check_id", "customer_id", "ts", "total"),
        {"ts": ctx.window_days(s.window for s in specs)},
        instants=instants,
    )
    ts = days["ts"]
    checks = checks.filter(ts.before(ctx.day + timedelta(days=1)))

    # One key per distinct product/category restriction. Lines are reduced to one row per check
    # holding, per key, whether it matched and only the sums some spec reads; lines matching no key
    # are dropped first when no spec needs the unrestricted line count.
    keys = sorted({(s.category, s.product) for s in specs if s.category or s.product}, key=str)
    key_index = {k: i for i, k in enumerate(keys)}
    all_lines = any(s.field == "average_items_per_check" and s.category is None and s.product is None for s in specs)
    if keys or all_lines:
        matches = [
            pl.col("category_id").is_in(ctx.descendants(category))
            if category is not None
            else pl.col("product_id") == product
            for category, product in keys
        ]
        line_aggs: list[pl.Expr] = [pl.len().cast(pl.Int64).alias("_lines")] if all_lines else []
        fills: list[pl.Expr] = [pl.col("_lines").fill_null(0)] if all_lines else []
        for i, match in enumerate(matches):
            fields = {s.field for s in specs if key_index.get((s.category, s.product)) == i}
            line_aggs.append(match.any().alias(f"_has{i}"))
            fills.append(pl.col(f"_has{i}").fill_null(False))
            if "average_items_per_check" in fields:
                line_aggs.append(match.sum().cast(pl.Int64).alias(f"_n{i}"))
                fills.append(pl.col(f"_n{i}").fill_null(0))
            if fields & {"purchase_total", "average_check"}:
                line_aggs.append(pl.col("amount").filter(match).sum().alias(f"_amt{i}"))
            if "purchase_quantity" in fields:
                line_aggs.append(pl.col("quantity").filter(match).sum().alias(f"_qty{i}"))
        items = ctx.frames.check_items.lazy()
        if not all_lines:
            items = items.filter(reduce(operator.or_, matches))
        per_check = items.group_by("check_id").agg(line_aggs)
        checks = checks.join(per_check, on="check_id", how="left").with_columns(fills)

    aggs: list[pl.Expr] = []
    post: list[pl.Expr] = []
    local: dict[str, str] = {}  # per-customer instant column -> its local date column, when instants
    dated_post: list[pl.Expr] = []  # date features computed from those local dates
    day_col = pl.col(ts.col)

    def extreme(col: str, latest: bool, m: pl.Expr | None) -> pl.Expr:
        """The earliest / latest local day of the masked checks (an instant converted later when instants)."""
        picked = _where(day_col, m)
        picked = picked.max() if latest else picked.min()
        if ts.as_dates:
            return picked
        aggs.append(picked.alias(f"_at_{col}"))
        local[f"_at_{col}"] = f"_day_{col}"
        return pl.col(f"_day_{col}")

    for s in specs:
        # masks that keep every row are left out: filtering in an aggregation is not free
        w = ctx.window_mask(s.window, ts) if ctx.narrows(s.window) else None
        ki = key_index.get((s.category, s.product))
        has = None if ki is None else pl.col(f"_has{ki}")
        m = _and(w, has)
        n = (pl.len() if m is None else m.sum()).cast(pl.Int64)
        n_or_null = pl.when(n > 0).then(n)  # Decimal division by zero raises, by null gives null
        total = pl.col("total") if ki is None else pl.col(f"_amt{ki}")
        lines = pl.col("_lines") if ki is None else pl.col(f"_n{ki}")
        col = s.column
        if s.field == "purchase_count":
            aggs.append(n.alias(col))
            post.append(pl.col(col).fill_null(0))
        elif s.field == "purchase_total":
            aggs.append(_where(total, m).sum().cast(AMOUNT).alias(col))
            post.append(pl.col(col).fill_null(pl.lit(Decimal(0), AMOUNT)))
        elif s.field == "purchase_quantity":
            aggs.append(_where(pl.col(f"_qty{ki}"), m).sum().cast(QUANTITY_SUM).alias(col))
            post.append(pl.col(col).fill_null(pl.lit(Decimal(0), QUANTITY_SUM)))
        elif s.field == "average_check":
            # Not rounded to cents: filters compare the exact mean (see AVERAGE_AMOUNT).
            aggs.append((_where(total, m).sum().cast(AVERAGE_AMOUNT) / n_or_null).cast(AVERAGE_AMOUNT).alias(col))
        elif s.field == "average_items_per_check":
            aggs.append((_where(lines, m).sum() / n_or_null).cast(pl.Float64).alias(col))
        elif s.field in dated:
            day = extreme(col, s.field.startswith("last") or s.field == "days_since_last_check", m)
            if s.field.startswith("days_since"):
                day = (pl.lit(ctx.day) - day).dt.total_days().cast(pl.Int64)
            (aggs if ts.as_dates else dated_post).append(day.alias(col))
        else:  # pragma: no cover - spec_for only produces the fields above
            raise ValueError(f"unknown purchase feature {s.field!r}")
    per_customer = checks.group_by("customer_id").agg(*aggs, pl.col(_TZ).first()) if local else None
    if per_customer is None:
        return checks.group_by("customer_id").agg(aggs), post
    per_customer = ctx.localize(per_customer, local, join=False).with_columns(dated_post)
    return per_customer.drop(_TZ, *local, *local.values()), post


_KIND = pl.col("kind")
#: Ledger kinds each flow feature reads.
_BONUS_KINDS: dict[str, set[str]] = {
    "bonuses_accrued": {"accrual"},
    "bonuses_redeemed": {"redemption"},
}
#: Features read from the ledger's lots (net of what redemptions consumed and expiries closed).
_FROM_LOTS = frozenset({"bonus_balance", "bonuses_expiring"})


def _bonuses(ctx: _Context, specs: list[FeatureSpec]) -> tuple[pl.LazyFrame, list[pl.Expr]]:
    """Bonus features: flows (accrued, redeemed) from the ledger rows, balances from the ledger's lots.

    `bonus_balance` and `bonuses_expiring` need to know which accrual each redemption consumed, so
    they read the lots of `transforms.ledger` as of the cutoff (FIFO by expiry); `bonuses_accrued`
    and `bonuses_redeemed` are sums over the ledger rows and this project's own accruals.
    """
    on_lots = [s for s in specs if s.field in _FROM_LOTS]
    flows = [s for s in specs if s.field not in _FROM_LOTS]
    parts = ([_bonus_flows(ctx, flows)] if flows else []) + ([_bonus_lots(ctx, on_lots)] if on_lots else [])
    agg = parts[0] if len(parts) == 1 else parts[0].join(parts[1], on="customer_id", how="full", coalesce=True)
    zero = pl.lit(Decimal(0), AMOUNT)
    return agg, [pl.col(s.column).fill_null(zero) for s in specs]


def _bonus_lots(ctx: _Context, specs: list[FeatureSpec]) -> pl.LazyFrame:
    """`bonus_balance` (sum of what remains of every lot, overdrafts included) and `bonuses_expiring`
    (what remains of the lots whose local expiry day is in (D, D+N]), from the lots as of the cutoff."""
    lots = lots_as_of(ctx.frames, ctx.as_of.cutoff)
    tomorrow = ctx.day + timedelta(days=1)
    expiring = [s for s in specs if s.field == "bonuses_expiring"]
    bounds = {"expires_at": {tomorrow, *(tomorrow + timedelta(days=s.within_days or 0) for s in expiring)}}
    rows, days = ctx.local_days(lots.lazy().select("customer_id", "remaining", "expires_at"), bounds)
    remaining = pl.col("remaining").cast(AMOUNT)
    aggs: list[pl.Expr] = []
    for s in specs:
        if s.field == "bonus_balance":
            expr = remaining.sum()
        else:
            exp = days["expires_at"]
            after = tomorrow + timedelta(days=s.within_days or 0)
            expr = _where(remaining, (pl.col("remaining") > 0) & exp.on_or_after(tomorrow) & exp.before(after)).sum()
        aggs.append(expr.cast(AMOUNT).alias(s.column))
    return rows.group_by("customer_id").agg(aggs)


def _bonus_flows(ctx: _Context, specs: list[FeatureSpec]) -> pl.LazyFrame:
    """`bonuses_accrued` and `bonuses_redeemed` from the loyalty ledger plus own accruals, in one pass.

    Redemption amounts count by absolute value, whichever sign the ledger stores them with. Only ledger
    kinds some spec reads are kept before joining and grouping.
    """
    kinds = set().union(*(_BONUS_KINDS[s.field] for s in specs))
    ledger = (
        ctx.table("bonus_transactions", ctx.frames.bonus_transactions, "ts")
        .filter(_KIND.is_in(sorted(kinds)))
        .select("customer_id", "ts", "kind", pl.col("amount").cast(AMOUNT))
    )
    own = ctx.table("own_accruals", ctx.frames.own_accruals, "accrued_at").select(
        "customer_id",
        pl.col("accrued_at").alias("ts"),
        pl.lit("accrual").alias("kind"),
        pl.col("amount").cast(AMOUNT),
    )
    tomorrow = ctx.day + timedelta(days=1)
    bounds = {"ts": ctx.window_days(s.window for s in specs)}
    rows, days = ctx.local_days(pl.concat([ledger, own], how="vertical") if "accrual" in kinds else ledger, bounds)
    rows = rows.filter(days["ts"].before(tomorrow))

    def of_kind(*wanted: str) -> pl.Expr | None:
        """Rows of these kinds; None (no mask) when every kept row is one of them."""
        return None if kinds <= set(wanted) else _KIND.is_in(wanted)

    amount = pl.col("amount")
    aggs: list[pl.Expr] = []
    for s in specs:
        w = ctx.window_mask(s.window, days["ts"]) if ctx.narrows(s.window) else None
        if s.field == "bonuses_accrued":
            expr = _where(amount, _and(of_kind("accrual"), w)).sum()
        elif s.field == "bonuses_redeemed":
            expr = _where(amount.abs(), _and(of_kind("redemption"), w)).sum()
        else:  # pragma: no cover
            raise ValueError(f"unknown bonus feature {s.field!r}")
        aggs.append(expr.cast(AMOUNT).alias(s.column))
    return rows.group_by("customer_id").agg(aggs)


def _attributes(ctx: _Context, specs: list[FeatureSpec]) -> tuple[pl.LazyFrame, list[pl.Expr]]:
    """The value of each named attribute valid at D (latest `valid_from` wins), as text.

    Valid at D means `valid_from` before the cutoff and `valid_to` null or at/after it. A JSON string
    value (`"gold"`) is unquoted; numbers and dates are parsed when a condition compares them.
    """
    names = sorted({s.name for s in specs if s.name is not None})
    value = pl.col("value")
    quoted = value.str.starts_with('"') & value.str.ends_with('"') & (value.str.len_chars() >= 2)
    valid = (
        ctx.table("customer_attributes", ctx.frames.customer_attributes, "valid_from")
        .filter(pl.col("valid_to").is_null() | (pl.col("valid_to") >= ctx.cutoff))
        .filter(pl.col("name").is_in(names))
        .with_columns(pl.when(quoted).then(value.str.slice(1, value.str.len_chars() - 2)).otherwise(value))
        .sort("valid_from")  # group_by keeps this order inside each group, so `last` is the latest
    )
    aggs = [value.filter(pl.col("name") == s.name).last().alias(s.column) for s in specs]
    return valid.group_by("customer_id").agg(aggs), []


def _favourites(ctx: _Context, specs: list[FeatureSpec]) -> tuple[pl.LazyFrame, list[pl.Expr]]:
    """Favourite categories of the period containing D (or the 1st of `period.month`)."""
    rows = ctx.localize(
        ctx.table("favourite_categories", ctx.frames.favourite_categories, "chosen_at"), {"chosen_at": _DAY}
    )
    aggs: list[pl.Expr] = []
    post: list[pl.Expr] = []
    for s in specs:
        ref = s.period or ctx.day
        m = (pl.col("period_start") <= ref) & (pl.col("period_end") >= ref)
        if s.field == "favourite_chosen":
            aggs.append(m.any().alias(s.column))
            post.append(pl.col(s.column).fill_null(False))
        elif s.field == "favourite_categories":
            aggs.append(pl.col("category_id").filter(m).unique().sort().alias(s.column))
        elif s.field == "days_since_favourite_choice":
            aggs.append((pl.lit(ctx.day) - pl.col(_DAY).filter(m).max()).dt.total_days().cast(pl.Int64).alias(s.column))
        else:  # pragma: no cover
            raise ValueError(f"unknown favourite feature {s.field!r}")
    return rows.group_by("customer_id").agg(aggs), post


def _communications(ctx: _Context, specs: list[FeatureSpec]) -> tuple[pl.LazyFrame, list[pl.Expr]]:
    """Counts of message events by event / channel / campaign in a window, in one pass."""
    rows, days = ctx.local_days(
        ctx.table("communications", ctx.frames.communications, "event_at"),
        {"event_at": ctx.window_days(s.window for s in specs)},
    )
    at = days["event_at"]
    rows = rows.filter(at.before(ctx.day + timedelta(days=1)))
    aggs = []
    for s in specs:
        m = ctx.window_mask(s.window, at)
        for col, wanted in (("event", s.event), ("channel", s.channel), ("campaign_id", s.campaign)):
            if wanted is not None:
                m = m & (pl.col(col) == wanted).fill_null(False)
        aggs.append(m.sum().cast(pl.Int64).alias(s.column))
    return rows.group_by("customer_id").agg(aggs), [pl.col(s.column).fill_null(0) for s in specs]


def _site_visits(ctx: _Context, specs: list[FeatureSpec]) -> tuple[pl.LazyFrame, list[pl.Expr]]:
    """Counts of site visits in a window, optionally by category (with descendants) and URL text."""
    rows, days = ctx.local_days(
        ctx.table("site_visits", ctx.frames.site_visits, "ts"), {"ts": ctx.window_days(s.window for s in specs)}
    )
    rows = rows.filter(days["ts"].before(ctx.day + timedelta(days=1)))
    aggs = []
    for s in specs:
        m = ctx.window_mask(s.window, days["ts"])
        if s.category is not None:
            m = m & pl.col("category_id").is_in(ctx.descendants(s.category)).fill_null(False)
        if s.url_contains is not None:
            m = m & pl.col("url").str.contains(s.url_contains, literal=True).fill_null(False)
        aggs.append(m.sum().cast(pl.Int64).alias(s.column))
    return rows.group_by("customer_id").agg(aggs), [pl.col(s.column).fill_null(0) for s in specs]


def _customer_columns(ctx: _Context, specs: list[FeatureSpec]) -> tuple[pl.LazyFrame, list[pl.Expr]]:
    """Extra `customers` columns (`customer.<column>`), as text so conditions parse them like attributes."""
    columns = ctx.frames.customers.columns
    missing = sorted(s.name for s in specs if s.name is not None and s.name not in columns)
    if missing:
        raise ValueError(f"customers has no column(s) {', '.join(missing)} (used as customer.<column>)")
    exprs = [pl.col(s.name).cast(pl.String).alias(s.column) for s in specs if s.name]
    return ctx.customers.select("customer_id", *exprs), []


_BUILDERS = {
    "purchases": _purchases,
    "bonuses": _bonuses,
    "attributes": _attributes,
    "favourites": _favourites,
    "communications": _communications,
    "site_visits": _site_visits,
    "customer": _customer_columns,
}


def compute_features(frames: SourceFrames, as_of: AsOf, specs: Iterable[FeatureSpec] = ()) -> pl.DataFrame:
    """The features frame of day D: customers registered before the cutoff, profile + one column per spec.

    Customers with no activity are present with counts and amounts 0 and dates null. The plan is
    lazy and collected once; sorted by `customer_id`.
    """
    ctx = _Context(frames, as_of)
    by_source: dict[str, list[FeatureSpec]] = defaultdict(list)
    for spec in sorted(set(specs), key=lambda s: s.column):
        by_source[spec.source].append(spec)
    lf = _profile(ctx)
    post: list[pl.Expr] = []
    for source, builder in _BUILDERS.items():
        if by_source.get(source):
            agg, fills = builder(ctx, by_source[source])
            lf = lf.join(agg, on="customer_id", how="left")
            post += fills
    if post:
        lf = lf.with_columns(post)
    return lf.sort("customer_id").collect()
