"""Reading a source table from files or a SQL database into a frame typed as the contract says.

Reading and typing are one step because a value that cannot be parsed must not vanish: every cast
is non-strict, and a value that was present in the raw data but is null after the cast is reported
back (as `__unparsable__<column>` flags) so validation can quarantine the row with that reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from loyalty_assets.sources.schemas import SCHEMAS, TableSchema

UNPARSABLE_PREFIX = "__unparsable__"
_SQL_DIR = Path(__file__).resolve().parents[2] / "sql"

_DATETIME_FORMATS_AWARE = ("%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z")
_DATETIME_FORMATS_NAIVE = (
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)
_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")


class SourceError(Exception):
    """A source that cannot be read at all: the run fails and says table, file and column."""

    def __init__(self, table: str, file: str, message: str, column: str | None = None) -> None:
        self.table, self.file, self.column = table, file, column
        where = f"table '{table}' ({file})" + (f", column '{column}'" if column else "")
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class RawTable:
    """A source table as read, typed, with unparsable-value flags, and where it came from."""

    frame: pl.DataFrame
    origin: str


def locate(data_dir: Path, table: str) -> Path | None:
    """The file or folder holding `table`: `NAME.parquet`, a folder of parts `NAME/`, or `NAME.csv`."""
    for candidate in (data_dir / f"{table}.parquet", data_dir / table, data_dir / f"{table}.csv"):
        if candidate.is_file() or (candidate.is_dir() and any(candidate.glob("*.parquet"))):
            return candidate
    return None


def read_file_table(data_dir: Path, table: str) -> RawTable:
    """Read `table` from `data_dir`, check its columns and type it per the contract."""
    schema = SCHEMAS[table]
    path = locate(data_dir, table)
    if path is None:
        raise SourceError(
            table,
            str(data_dir / f"{table}.parquet|.csv|/"),
            "no such file: expected NAME.parquet, a folder NAME/ of Parquet parts, or NAME.csv",
        )
    try:
        if path.suffix == ".csv":
            frame = pl.read_csv(path, infer_schema=False, encoding="utf8")
        elif path.is_dir():
            frame = pl.read_parquet(sorted(path.glob("*.parquet")))
        else:
            frame = pl.read_parquet(path)
    except Exception as exc:  # the reader's own message is the useful part
        raise SourceError(table, str(path), f"cannot be read: {exc}") from exc
    return RawTable(frame=coerce(schema, frame, origin=str(path)), origin=str(path))


def read_sql_table(engine: sa.Engine, sql_dir: Path, table: str, params: dict[str, object]) -> RawTable:
    """Run `sql/sources/<table>.sql` (bound parameters only, e.g. `:cutoff`) and type the result."""
    schema = SCHEMAS[table]
    query_file = sql_dir / "sources" / f"{table}.sql"
    if not query_file.is_file():
        raise SourceError(table, str(query_file), "no query file for this table")
    # Comments are dropped first: a `:name` in a comment would otherwise become a bind parameter.
    statement = sa.text(re.sub(r"--[^\n]*", "", query_file.read_text(encoding="utf8")))
    used = {k: _naive_utc(v) for k, v in params.items() if f":{k}" in str(statement)}
    try:
        with engine.connect() as conn:
            result = conn.execute(statement, used)
            frame = pl.DataFrame(
                [tuple(row) for row in result.fetchall()],
                schema=list(result.keys()),
                orient="row",
                infer_schema_length=None,
            )
    except sa.exc.SQLAlchemyError as exc:
        raise SourceError(table, str(query_file), f"query failed: {exc}") from exc
    return RawTable(frame=coerce(schema, frame, origin=str(query_file)), origin=str(query_file))


def _naive_utc(value: object) -> object:
    """Timestamps bound to source queries are naive UTC, matching how the contract stores them."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def coerce(schema: TableSchema, frame: pl.DataFrame, *, origin: str) -> pl.DataFrame:
    """Cast the contract's columns to their types; keep extra columns; flag unparsable values.

    A missing required column is a `SourceError`; a missing optional column is added as nulls.
    """
    missing = [c for c in schema.required if c not in frame.columns]
    if missing:
        raise SourceError(
            schema.name,
            origin,
            f"required column missing (has: {', '.join(frame.columns) or 'none'})",
            column=missing[0],
        )
    casts: list[pl.Expr] = []
    flags: list[pl.Expr] = []
    for column, dtype in schema.columns.items():
        if column not in frame.columns:
            casts.append(pl.lit(None, dtype=dtype).alias(column))
            continue
        typed = _cast_expr(pl.col(column), frame.schema[column], dtype).alias(column)
        casts.append(typed)
        present = pl.col(column).is_not_null()
        if frame.schema[column] == pl.String():
            present = present & (pl.col(column).str.strip_chars() != "")
        flags.append((present & typed.is_null()).alias(f"{UNPARSABLE_PREFIX}{column}"))
    extra = [pl.col(c) for c in frame.columns if c not in schema.columns]
    if "loaded_at" in frame.columns:
        extra = [c for c in extra if c.meta.output_name() != "loaded_at"]
        loaded = _cast_expr(pl.col("loaded_at"), frame.schema["loaded_at"], pl.Datetime("us", "UTC"))
        casts.append(loaded.alias("loaded_at"))
    return frame.select([*casts, *extra, *flags])


def _cast_expr(col: pl.Expr, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    """One non-strict cast from whatever the file holds to the contract type."""
    if source == pl.String() and target != pl.String():
        return _parse_string(col.str.strip_chars(), target)
    if isinstance(target, pl.Datetime):
        if isinstance(source, pl.Datetime):
            if source.time_zone is None:
                return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
            return col.dt.convert_time_zone("UTC").cast(target)
        if source == pl.Date():
            return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        return col.cast(target, strict=False)
    if isinstance(target, pl.Decimal) and source.is_float():
        return col.round(target.scale or 0).cast(target, strict=False)
    if isinstance(target, pl.List) and source == pl.String():
        return _parse_string(col, target)
    if target == pl.String() and source != pl.String():
        return col.cast(pl.String(), strict=False)
    return col.cast(target, strict=False)


def _parse_string(col: pl.Expr, target: pl.DataType) -> pl.Expr:
    """Parse text (CSV cells, SQL text columns) into `target`; unparsable text becomes null."""
    blank_as_null = pl.when(col == "").then(None).otherwise(col)
    if isinstance(target, pl.Datetime):
        aware = [
            blank_as_null.str.replace(r"Z$", "+00:00").str.to_datetime(f, strict=False, time_unit="us")
            for f in _DATETIME_FORMATS_AWARE
        ]
        naive = [
            blank_as_null.str.to_datetime(f, strict=False, time_unit="us").dt.replace_time_zone("UTC")
            for f in _DATETIME_FORMATS_NAIVE
        ]
        return pl.coalesce([a.dt.convert_time_zone("UTC") for a in aware] + naive)
    if target == pl.Date():
        return blank_as_null.str.to_date("%Y-%m-%d", strict=False)
    if target == pl.Boolean():
        lowered = blank_as_null.str.to_lowercase()
        return (
            pl.when(lowered.is_in(_TRUE))
            .then(pl.lit(True))
            .when(lowered.is_in(_FALSE))
            .then(pl.lit(False))
            .otherwise(pl.lit(None, dtype=pl.Boolean()))
        )
    if isinstance(target, pl.List):
        return pl.when(blank_as_null.is_null()).then(pl.lit([], dtype=target)).otherwise(blank_as_null.str.split("|"))
    return blank_as_null.cast(target, strict=False)


def make_reader(data_dir: Path, database_url: str | None, cutoff: object = None) -> Callable[[str], RawTable]:
    """`read(table)` from the SQL source when `database_url` is set, else from files in `data_dir`."""
    if not database_url:
        return lambda table: read_file_table(data_dir, table)

    def read(table: str) -> RawTable:
        engine = sa.create_engine(database_url)
        try:
            return read_sql_table(engine, _SQL_DIR, table, {"cutoff": cutoff})
        finally:
            engine.dispose()

    return read
