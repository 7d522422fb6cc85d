"""Row rules of the source tables, the quarantine, and the point-in-time cut.

Each rule is a named Polars expression that is true when a row breaks it. A row that breaks any rule
goes to the quarantine with the first rule it broke (so the reason is stable); the rest is cut at
the run's cutoff. Nothing is dropped without being counted: `ValidationResult.counts` adds up to
the rows read.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from loyalty_assets.sources.frames import AsOf
from loyalty_assets.sources.readers import FLAG_PREFIXES, PRECISION_PREFIX, UNPARSABLE_PREFIX, RawTable
from loyalty_assets.sources.schemas import ENUMS, NON_NEGATIVE, TableSchema

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source_table": pl.String(),
    "source_file": pl.String(),
    "rule": pl.String(),
    "column_name": pl.String(),
    "row_data": pl.String(),
}

_KNOWN_ZONES = tuple(sorted(zoneinfo.available_timezones()))


@dataclass(frozen=True)
class Rule:
    """A row rule: `broken` is true for the rows that violate it."""

    name: str
    column: str | None
    broken: pl.Expr


@dataclass(frozen=True)
class ValidationResult:
    """Kept rows visible at the cutoff, the quarantine, and how the rows read were divided."""

    kept: pl.DataFrame
    quarantine: pl.DataFrame
    not_yet_visible: pl.DataFrame
    counts: dict[str, int]


def rules_for(
    schema: TableSchema,
    columns: list[str],
    *,
    now: datetime,
    known_customers: pl.Series | None = None,
    known_parents: pl.Series | None = None,
    parent_keys: pl.DataFrame | None = None,
    visible: pl.Expr | None = None,
) -> list[Rule]:
    """The rules a table's rows must satisfy, in the order they are reported.

    `visible` limits the unknown-customer rule to rows visible at the cutoff: a later check of a
    customer who registers later is not yet visible, not bad.
    """
    rules: list[Rule] = []
    for column, dtype in schema.columns.items():
        flag = f"{UNPARSABLE_PREFIX}{column}"
        if flag in columns:
            rules.append(Rule(f"unparsable {_type_word(dtype)}", column, pl.col(flag).is_not_null()))
        flag = f"{PRECISION_PREFIX}{column}"
        if flag in columns and isinstance(dtype, pl.Decimal):
            rules.append(Rule(f"more than {dtype.scale} decimal places", column, pl.col(flag).is_not_null()))
    rules.extend(Rule("null value", c, pl.col(c).is_null()) for c in schema.not_null)
    for (table, column), allowed in ENUMS.items():
        if table == schema.name:
            rules.append(Rule(f"value not in {list(allowed)}", column, pl.col(column).is_in(allowed).not_()))
    rules.extend(Rule("negative value", c, pl.col(c) < 0) for c in NON_NEGATIVE.get(schema.name, ()))
    if schema.name == "customers":
        rules.append(Rule("unknown time zone", "timezone", pl.col("timezone").is_in(_KNOWN_ZONES).not_()))
        # The latest calendar date anywhere on Earth (UTC+14) at the moment of the run.
        latest_date = (now + timedelta(hours=14)).date()
        rules.append(Rule("birth date in the future", "birth_date", pl.col("birth_date") > pl.lit(latest_date)))
    if schema.name == "favourite_categories":
        rules.append(
            Rule("period_end before period_start", "period_end", pl.col("period_end") < pl.col("period_start"))
        )
    if schema.name == "customer_attributes":
        rules.append(Rule("valid_to before valid_from", "valid_to", pl.col("valid_to") < pl.col("valid_from")))
    if schema.visible_at is not None:
        now_literal = pl.lit(now).cast(pl.Datetime("us", "UTC"))
        rules.append(
            Rule(
                "timestamp in the future of the run",
                schema.visible_at,
                pl.col(schema.visible_at) > now_literal,
            )
        )
    if known_customers is not None and schema.customer_column:
        rules.append(
            Rule(
                "unknown customer",
                schema.customer_column,
                pl.col(schema.customer_column).is_in(known_customers.implode()).not_()
                & (visible if visible is not None else pl.lit(True)),
            )
        )
    if parent_keys is not None:
        (column,) = parent_keys.columns
        rules.append(
            Rule(
                f"{column.removesuffix('_id')} missing or quarantined",
                column,
                pl.col(column).is_in(parent_keys.get_column(column).implode()).not_(),
            )
        )
    if known_parents is not None:
        rules.append(
            Rule(
                "unknown parent category",
                "parent_id",
                pl.col("parent_id").is_not_null() & pl.col("parent_id").is_in(known_parents.implode()).not_(),
            )
        )
    return rules


def validate(
    schema: TableSchema,
    raw: RawTable,
    as_of: AsOf,
    *,
    now: datetime,
    known_customers: pl.Series | None = None,
    visible_keys: pl.DataFrame | None = None,
    parent_keys: pl.DataFrame | None = None,
    carry: tuple[str, ...] = (),
) -> ValidationResult:
    """Split `raw` into kept (valid and visible at the cutoff), quarantined and not-yet-visible rows.

    `visible_keys` (for child tables such as check lines) makes a valid row visible only when its
    parent's key is among them; `parent_keys` (all valid parents, visible or not) quarantines rows
    whose parent does not exist at all. A duplicate key keeps the first row in file order and quarantines
    the others. `carry` names extra columns of `raw` that no rule reads and that are appended, as they
    are, to every output (kept, not yet visible and quarantine rows; null on rejected lines), e.g. the
    source store's visibility day.
    """
    frame = raw.frame
    known_parents = frame.get_column("category_id") if schema.name == "categories" else None
    visible = _visible(schema, frame, as_of)
    rules = rules_for(
        schema,
        frame.columns,
        now=now,
        known_customers=known_customers,
        known_parents=known_parents,
        parent_keys=parent_keys,
        visible=visible,
    )
    reason = (
        pl.coalesce([pl.when(r.broken.fill_null(False)).then(pl.lit(f"{r.name}\x1f{r.column or ''}")) for r in rules])
        if rules
        else pl.lit(None, dtype=pl.String())
    )
    flagged = frame.with_columns(reason.alias("__reason"))
    # Among rows that broke no other rule, every repeat of a key after its first (file order) is a
    # duplicate. `is_first_distinct` on a struct is ~5x faster than a window over the key.
    valid = pl.col("__reason").is_null()
    is_duplicate = valid & pl.struct(valid.alias("__valid"), *schema.key).is_first_distinct().not_()
    flagged = flagged.with_columns(
        pl.when(is_duplicate)
        .then(pl.lit(f"duplicate key\x1f{','.join(schema.key)}"))
        .otherwise(pl.col("__reason"))
        .alias("__reason")
    )
    data_columns = [c for c in frame.columns if not c.startswith(FLAG_PREFIXES) and c not in carry]
    bad = flagged.filter(pl.col("__reason").is_not_null())
    good = flagged.filter(pl.col("__reason").is_null()).select(*data_columns, *carry)

    if visible_keys is not None:
        keyed = good.join(
            visible_keys.with_columns(pl.lit(True).alias("__parent_visible")),
            on=visible_keys.columns,
            how="left",
        )
        good = keyed.with_columns(pl.col("__parent_visible").fill_null(False))
        visible = visible & pl.col("__parent_visible")
    good = good.with_columns(visible.alias("__visible"))
    kept = good.filter(pl.col("__visible")).select(*data_columns, *carry)
    later = good.filter(pl.col("__visible").not_()).select(*data_columns, *carry)

    quarantine = bad.select(
        pl.lit(schema.name).alias("source_table"),
        pl.lit(raw.origin).alias("source_file"),
        pl.col("__reason").str.split("\x1f").list.get(0).alias("rule"),
        pl.col("__reason").str.split("\x1f").list.get(1).alias("column_name"),
        _row_json(bad, data_columns).alias("row_data"),
        *carry,
    )
    rejected = raw.rejected.select(
        pl.lit(schema.name).alias("source_table"),
        pl.lit(raw.origin).alias("source_file"),
        "rule",
        pl.when(pl.col("column_name") != "").then(pl.col("column_name")).alias("column_name"),
        "row_data",
    )
    quarantine = pl.concat(
        [quarantine.cast(QUARANTINE_SCHEMA), rejected.cast(QUARANTINE_SCHEMA)],  # type: ignore[arg-type]
        how="diagonal" if carry else "vertical",
    )
    counts = {
        "rows_read": frame.height + rejected.height,
        "rows_kept": kept.height,
        "rows_quarantined": quarantine.height,
        "rows_not_yet_visible": later.height,
    }
    return ValidationResult(kept=kept, quarantine=quarantine, not_yet_visible=later, counts=counts)


def _visible(schema: TableSchema, frame: pl.DataFrame, as_of: AsOf) -> pl.Expr:
    """Whether a row exists as of the cutoff (its timestamp, and `loaded_at` when given, before it)."""
    if schema.visible_at is None:
        return pl.lit(True)
    visible = pl.col(schema.visible_at) < as_of.cutoff_literal
    if "loaded_at" in frame.columns:
        visible = visible & (pl.col("loaded_at").is_null() | (pl.col("loaded_at") < as_of.cutoff_literal))
    return visible.fill_null(False)


def _type_word(dtype: pl.DataType) -> str:
    """A reader's word for a type: 'timestamp', 'date', 'decimal', 'integer', 'boolean', 'list'."""
    if isinstance(dtype, pl.Datetime):
        return "timestamp"
    if isinstance(dtype, pl.Decimal):
        return "decimal"
    if isinstance(dtype, pl.List):
        return "list"
    if dtype.is_integer():
        return "integer"
    return {pl.Date(): "date", pl.Boolean(): "boolean"}.get(dtype, str(dtype))


def quarantine_summary(quarantine: pl.DataFrame) -> dict[str, int]:
    """Quarantined rows per 'rule (column)', for asset metadata."""
    if quarantine.is_empty():
        return {}
    grouped = (
        quarantine.group_by("rule", "column_name")
        .agg(pl.len().alias("rows"))
        .sort("rows", "rule", descending=[True, False])
    )
    return {f"{r['rule']} ({r['column_name']})": r["rows"] for r in grouped.iter_rows(named=True)}


def _row_json(frame: pl.DataFrame, columns: list[str]) -> pl.Expr:
    """The offending row as JSON text, every value as a string, so any column type fits one table.

    A value that could not be typed appears as it was in the source (its flag column's text).
    """
    parts = []
    for c in columns:
        dtype = frame.schema[c]
        expr = pl.col(c).list.join("|") if isinstance(dtype, pl.List) else pl.col(c).cast(pl.String())
        originals = [pl.col(f"{p}{c}") for p in FLAG_PREFIXES if f"{p}{c}" in frame.columns]
        if originals:
            expr = pl.coalesce([*originals, expr])
        parts.append(expr.alias(c))
    if not parts:
        return pl.lit("{}")
    return pl.struct(parts).struct.json_encode()
