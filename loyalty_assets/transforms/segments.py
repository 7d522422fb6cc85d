"""Filters compiled to Polars expressions, and segments evaluated over the day's features frame.

A filter becomes one boolean `pl.Expr` over the frame built by `transforms.features`; evaluating
every segment of the day is then a single `select` over that frame. A condition on a missing value
(null) is false, except `is_empty`, which is exactly the test for a missing value, so `not:` of a
condition on an unknown value is true. Segment references (`field: segment`) are inlined as the
referenced segment's own expression, in dependency order, so a chain of segments costs no extra pass.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import reduce
from typing import Any

import polars as pl

from loyalty_assets.config.filters import (
    AllOf,
    AnyOf,
    Condition,
    Filter,
    Not,
    Op,
    ValueType,
    referenced_segments,
)
from loyalty_assets.config.segments import SegmentDefinition
from loyalty_assets.transforms.features import column_for, required_columns
from loyalty_assets.transforms.hashing import in_percent_expr
from loyalty_assets.transforms.masking import mask_email, mask_phone

#: Membership of referenced segments: a `customer_id` frame (as `evaluate_segments` returns), a Series
#: or a collection of ids, or (internally) the referenced segment's boolean expression.
Members = Mapping[str, pl.DataFrame | pl.Series | Collection[int] | pl.Expr]

#: Buckets of `random_sample`: percentages with two decimals are exact.


def compile_filter(filter: Filter, segment_members: Members | None = None, *, sample_salt: str = "") -> pl.Expr:
    """The filter as a boolean expression over the features frame (never null).

    `segment_members` answers `field: segment` conditions; `sample_salt` (the segment or campaign id)
    seeds `random_sample`, so each audience draws its own stable sample.
    """
    if isinstance(filter, AllOf):
        return reduce(
            lambda a, b: a & b,
            (compile_filter(f, segment_members, sample_salt=sample_salt) for f in filter.all),
            pl.lit(True),
        )
    if isinstance(filter, AnyOf):
        return reduce(
            lambda a, b: a | b,
            (compile_filter(f, segment_members, sample_salt=sample_salt) for f in filter.any),
            pl.lit(False),
        )
    if isinstance(filter, Not):
        return ~compile_filter(filter.not_, segment_members, sample_salt=sample_salt)
    return _condition(filter, segment_members or {}, sample_salt)


def _condition(cond: Condition, members: Members, salt: str) -> pl.Expr:
    vtype = cond.value_type
    if vtype is ValueType.SAMPLE:
        return sample_mask(salt, cond.percent or 0.0)
    if vtype is ValueType.SEGMENT:
        return _segment(cond, members)
    col = pl.col(column_for(cond))
    op = cond.op
    assert op is not None  # guaranteed by Condition validation for every other type
    if vtype is ValueType.DYNAMIC:
        col, vtype = _typed_text(col, cond.value)
    return _compare(col, op, cond.value, vtype).fill_null(False)


def _typed_text(col: pl.Expr, value: Any) -> tuple[pl.Expr, ValueType]:
    """Attributes and extra customer columns are text: parse them as the value written is typed."""
    sample = value[0] if isinstance(value, tuple) else value
    text = col.str.strip_chars()
    if isinstance(sample, bool):
        return text.str.to_lowercase() == "true", ValueType.BOOLEAN
    if isinstance(sample, int | float):
        return text.cast(pl.Float64, strict=False), ValueType.NUMBER
    if isinstance(sample, date):
        return text.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False), ValueType.DATE
    return col, ValueType.STRING


def _lit(value: Any, vtype: ValueType) -> pl.Expr:
    if vtype is ValueType.NUMBER:
        return pl.lit(float(value), pl.Float64)
    if isinstance(value, Decimal):
        return pl.lit(value)
    return pl.lit(value)


def _compare(col: pl.Expr, op: Op, value: Any, vtype: ValueType) -> pl.Expr:
    if op is Op.IS_SET:
        return _is_set(col, vtype)
    if op is Op.IS_EMPTY:
        return ~_is_set(col, vtype).fill_null(False)
    if op is Op.CONTAINS:
        if vtype is ValueType.LIST:
            return col.list.contains(pl.lit(value, pl.String))
        return col.str.contains(value, literal=True)
    if op is Op.BETWEEN:
        low, high = value
        return col.is_between(_lit(low, vtype), _lit(high, vtype), closed="both")
    if op in (Op.IN, Op.NOT_IN):
        values = [float(v) for v in value] if vtype is ValueType.NUMBER else list(value)
        inside = col.is_in(pl.Series(values).implode())
        return inside if op is Op.IN else ~inside
    if vtype is ValueType.BOOLEAN and isinstance(value, bool) and op in (Op.EQ, Op.NE):
        # `col == lit(True)` is just `col`; written out so nulls stay null (then false)
        return col if value is (op is Op.EQ) else ~col
    rhs = _lit(value, vtype)
    comparisons = {
        Op.EQ: col.__eq__,
        Op.NE: col.__ne__,
        Op.LT: col.__lt__,
        Op.LE: col.__le__,
        Op.GT: col.__gt__,
        Op.GE: col.__ge__,
    }
    return comparisons[op](rhs)


def _is_set(col: pl.Expr, vtype: ValueType) -> pl.Expr:
    if vtype is ValueType.LIST:
        return col.list.len() > 0
    if vtype is ValueType.STRING:
        return col.is_not_null() & (col.str.strip_chars() != "")
    return col.is_not_null()


def _segment(cond: Condition, members: Members) -> pl.Expr:
    ids = cond.value if isinstance(cond.value, tuple) else (cond.value,)
    exprs = []
    for sid in ids:
        if sid not in members:
            raise KeyError(f"segment {sid!r} is referenced but its members were not given")
        m = members[sid]
        if isinstance(m, pl.Expr):
            exprs.append(m)
        else:
            if isinstance(m, pl.DataFrame):
                values = m.get_column("customer_id")
            else:
                values = m if isinstance(m, pl.Series) else pl.Series(sorted(m), dtype=pl.Int64)
            exprs.append(pl.col("customer_id").is_in(values.cast(pl.Int64).implode()))
    inside = reduce(lambda a, b: a | b, exprs).fill_null(False)
    return inside if cond.op in (Op.EQ, Op.IN) else ~inside


def sample_mask(salt: str, percent: float) -> pl.Expr:
    """Deterministic `percent` % of customers for `salt`: same customers every day."""
    return in_percent_expr(pl.col("customer_id"), salt, percent)


def dependency_order(segments: Mapping[str, SegmentDefinition], external: Collection[str] = frozenset()) -> list[str]:
    """Segment ids with every referenced segment before its referrers (ids sorted otherwise).

    References to `external` ids (members supplied by the caller) are taken as resolved.

    Raises ValueError on an unknown reference or a cycle; `config.segments.load_segments` reports
    those per file beforehand, so this only fires for hand-built mappings.
    """
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(sid: str, trail: tuple[str, ...]) -> None:
        if state.get(sid) == 2 or (sid in external and sid not in segments):
            return
        if state.get(sid) == 1:
            raise ValueError(f"segment reference cycle: {' -> '.join((*trail, sid))}")
        if sid not in segments:
            raise ValueError(f"unknown segment {sid!r} referenced by {trail[-1]!r}")
        state[sid] = 1
        for ref in sorted(referenced_segments(segments[sid].filter)):
            visit(ref, (*trail, sid))
        state[sid] = 2
        order.append(sid)

    for sid in sorted(segments):
        visit(sid, ())
    return order


def segment_expressions(
    segments: Mapping[str, SegmentDefinition], members: Members | None = None
) -> dict[str, pl.Expr]:
    """One boolean expression per segment, references inlined; `members` can supply extra segments."""
    exprs: dict[str, pl.DataFrame | pl.Expr | pl.Series | Collection[int]] = dict(members or {})
    out: dict[str, pl.Expr] = {}
    for sid in dependency_order(segments, external=set(exprs)):
        out[sid] = compile_filter(segments[sid].filter, exprs, sample_salt=sid)
        exprs[sid] = out[sid]
    return out


def _check_columns(filters: Iterable[Filter], features: pl.DataFrame) -> None:
    """Fail with the missing feature columns named, rather than Polars' bare ColumnNotFoundError."""
    missing = sorted(required_columns(filters) - set(features.columns))
    if missing:
        raise ValueError(
            f"features frame lacks column(s) {', '.join(missing)}: compute it with "
            "compute_features(frames, as_of, required_features(<all filters evaluated on it>))"
        )


def evaluate_segments(
    segments: Mapping[str, SegmentDefinition], features: pl.DataFrame, members: Members | None = None
) -> dict[str, pl.DataFrame]:
    """Members of every segment (a `customer_id` frame, sorted), all in one pass over `features`.

    `members` supplies segments that are not saved definitions (manual segments kept by campaign
    steps), which saved segments may reference.
    """
    _check_columns((s.filter for s in segments.values()), features)
    exprs = segment_expressions(segments, members)
    flags = features.select("customer_id", *(e.alias(f"__segment__{sid}") for sid, e in exprs.items()))
    return {
        sid: flags.filter(pl.col(f"__segment__{sid}")).select("customer_id").sort("customer_id")
        for sid in sorted(exprs)
    }


def filter_customers(
    filter: Filter,
    features: pl.DataFrame,
    members: Members | None = None,
    *,
    sample_salt: str = "",
) -> pl.DataFrame:
    """Customers matching an inline filter (a campaign's audience), as a sorted `customer_id` frame.

    A filter referring to saved segments (`field: segment`) needs their members in `members`.
    """
    _check_columns([filter], features)
    return (
        features.filter(compile_filter(filter, members, sample_salt=sample_salt))
        .select("customer_id")
        .sort("customer_id")
    )


@dataclass(frozen=True)
class SegmentPreview:
    """What the segment builder shows before saving: how many, and a few recognisable members."""

    segment_id: str
    count: int
    sample: pl.DataFrame  # customer_id, first_name, email and phone masked


def preview_segment(
    defn: SegmentDefinition, features: pl.DataFrame, sample: int = 10, members: Members | None = None
) -> SegmentPreview:
    """Count and a masked sample (lowest customer ids first, so the preview is stable)."""
    _check_columns([defn.filter], features)
    matched = features.filter(compile_filter(defn.filter, members, sample_salt=defn.id))
    rows = (
        matched.sort("customer_id")
        .head(sample)
        .select(
            "customer_id",
            "first_name",
            mask_email(pl.col("email")).alias("email"),
            mask_phone(pl.col("phone")).alias("phone"),
        )
    )
    return SegmentPreview(segment_id=defn.id, count=matched.height, sample=rows)
