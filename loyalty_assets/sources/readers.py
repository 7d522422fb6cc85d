"""Reading a source table from files or a SQL database into a frame typed as the contract says.

Reading and typing are one step because a value that cannot be parsed must not vanish or change:
every cast is non-strict, and a value that was present in the raw data but cannot be typed exactly
is reported back, with its original text, in a flag column (`__unparsable__<column>`, or
`__precision__<column>` for an amount with more decimal places than the contract allows), so
validation can quarantine the row with that reason. Nothing is rounded, truncated or reinterpreted:

- a column whose physical type cannot mean the contract type (an integer where a timestamp is
  expected: seconds? milliseconds?) fails the table, naming the type found;
- empty or whitespace-only text is no value (null), quoted or not;
- CSV lines that cannot be split into the header's fields, or are not UTF-8, are set aside with
  their line number (`RawTable.rejected`) and the rest of the file is read.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import polars as pl
import sqlalchemy as sa

from loyalty_assets.sources.schemas import SCHEMAS, UTC_TS, TableSchema

UNPARSABLE_PREFIX = "__unparsable__"
PRECISION_PREFIX = "__precision__"
#: Prefixes of the flag columns `coerce` adds; they hold the original text of a flagged value.
FLAG_PREFIXES = (UNPARSABLE_PREFIX, PRECISION_PREFIX)
REJECTED_SCHEMA: dict[str, pl.DataType] = {"rule": pl.String(), "column_name": pl.String(), "row_data": pl.String()}
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
    """A source table as read, typed, with flag columns, and where it came from.

    `rejected` holds lines that never became rows (a CSV line with the wrong number of fields, or
    not UTF-8): rule, column_name and row_data (`{"line": N, "text": ...}`), in `REJECTED_SCHEMA`.
    """

    frame: pl.DataFrame
    origin: str
    rejected: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=REJECTED_SCHEMA))


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
    rejected = pl.DataFrame(schema=REJECTED_SCHEMA)
    if path.suffix == ".csv":
        frame, rejected = read_csv_text(path, table)
    else:
        try:
            frame = pl.read_parquet(sorted(path.glob("*.parquet")) if path.is_dir() else path)
        except Exception as exc:  # the reader's own message is the useful part
            raise SourceError(table, str(path), f"cannot be read: {exc}") from exc
    return RawTable(frame=coerce(schema, frame, origin=str(path)), origin=str(path), rejected=rejected)


def read_csv_text(path: Path, table: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A CSV file as text columns, and the lines that could not be read as rows.

    The header must name each column once (Polars would silently rename a repeat to
    `x_duplicated_0`). The whole file is read by Polars; only when that fails (a line that is not
    UTF-8, or has more fields than the header) is it read again by Python's `csv` module, which
    sets those lines aside with their line number and keeps every other row, so one bad byte does
    not stop the day. That slower path runs only on a malformed file.
    """
    header = _csv_header(path, table)
    try:
        frame = pl.read_csv(path, infer_schema=False, encoding="utf8")
    except pl.exceptions.PolarsError:
        return _read_csv_exact(path, table, header)
    return frame, pl.DataFrame(schema=REJECTED_SCHEMA)


def _csv_header(path: Path, table: str) -> list[str]:
    with path.open("rb") as fh:
        first = fh.readline()
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(
            table, str(path), f"line 1 (the header) is not UTF-8: {exc.reason} at byte {exc.start}"
        ) from exc
    header = next(csv.reader([text]), [])
    if not header:
        raise SourceError(table, str(path), "line 1: no header row (expected the column names)")
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if name in seen:
            raise SourceError(
                table,
                str(path),
                f"line 1: the header names this column twice (fields {seen[name]} and {position})",
                column=name,
            )
        seen[name] = position
    return header


def _read_csv_exact(path: Path, table: str, header: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Row by row: keep records with the header's field count and valid UTF-8, reject the others."""
    bad_lines: set[int] = set()
    raw_lines: dict[int, bytes] = {}

    def lines() -> Iterator[str]:
        with path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                try:
                    yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError:
                    bad_lines.add(number)
                    raw_lines[number] = raw
                    yield raw.decode("utf-8", errors="replace")

    columns: list[list[str | None]] = [[] for _ in header]
    rejected: list[dict[str, str]] = []
    reader = csv.reader(lines())
    next(reader, None)  # the header, checked by `_csv_header`
    last_line = 1
    for record in _records(reader, table, path):
        first_line, last_line = last_line + 1, reader.line_num
        where = range(first_line, last_line + 1)
        if any(n in bad_lines for n in where):
            text = b"".join(raw_lines.get(n, b"") for n in where).decode("utf-8", errors="backslashreplace")
            rule, column = "not UTF-8", None
        elif len(record) > len(header):
            text = ",".join(record)
            rule, column = f"{len(record)} fields, the header has {len(header)}", None
        else:  # as Polars reads it: missing trailing fields (and a blank line) are empty
            padded: list[str | None] = [*record, *([None] * (len(header) - len(record)))]
            for values, value in zip(columns, padded, strict=True):
                values.append(value)
            continue
        row = {"line": str(first_line), "text": text.rstrip("\r\n")}
        rejected.append({"rule": rule, "column_name": column or "", "row_data": _json(row)})
    frame = pl.DataFrame(
        {name: pl.Series(name, values, dtype=pl.String()) for name, values in zip(header, columns, strict=True)}
    )
    return frame, pl.DataFrame(rejected, schema=REJECTED_SCHEMA)


def _records(reader: Any, table: str, path: Path) -> Iterator[list[str]]:
    """The reader's records; a line even Python's `csv` cannot split fails naming its number."""
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise SourceError(table, str(path), f"line {reader.line_num}: not readable as CSV: {exc}") from exc
        yield record


def _json(row: dict[str, str]) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


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
            names = list(result.keys())
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise SourceError(table, str(query_file), "the query returns this column twice", column=repeated[0])
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
    """Cast the contract's columns to their types; keep extra columns; flag values that do not fit.

    A missing required column, or a column whose physical type cannot hold the contract type, is
    a `SourceError`; a missing optional column is added as nulls. Flag columns hold the original
    text of each value that could not be typed exactly (null elsewhere).
    """
    missing = [c for c in schema.required if c not in frame.columns]
    if missing:
        raise SourceError(
            schema.name,
            origin,
            f"required column missing (has: {', '.join(frame.columns) or 'none'})",
            column=missing[0],
        )
    dictionary_text = [c for c, t in frame.schema.items() if isinstance(t, pl.Categorical | pl.Enum)]
    frame = frame.with_columns(pl.col(dictionary_text).cast(pl.String())) if dictionary_text else frame
    casts: list[pl.Expr] = []
    flags: list[pl.Expr] = []
    for column, dtype in schema.columns.items():
        if column not in frame.columns:
            casts.append(pl.lit(None, dtype=dtype).alias(column))
            continue
        source = frame.schema[column]
        _check_physical_type(schema.name, origin, column, source, dtype)
        typed, too_precise = _cast_expr(pl.col(column), source, dtype)
        casts.append(typed.alias(column))
        present = pl.col(column).is_not_null()
        if source == pl.String():
            present = present & (pl.col(column).str.strip_chars() != "")
        as_text = _as_text(pl.col(column), source)
        if too_precise is not None:
            flags.append(pl.when(present & too_precise).then(as_text).alias(f"{PRECISION_PREFIX}{column}"))
            present = present & too_precise.not_()
        if source == pl.String() and dtype == pl.String():
            continue  # text stays text: only blank text becomes null, which is no value, not unparsable
        flags.append(pl.when(present & typed.is_null()).then(as_text).alias(f"{UNPARSABLE_PREFIX}{column}"))
    extra = [pl.col(c) for c in frame.columns if c not in schema.columns]
    if "loaded_at" in frame.columns:
        extra = [c for c in extra if c.meta.output_name() != "loaded_at"]
        _check_physical_type(schema.name, origin, "loaded_at", frame.schema["loaded_at"], UTC_TS)
        loaded, _ = _cast_expr(pl.col("loaded_at"), frame.schema["loaded_at"], UTC_TS)
        casts.append(loaded.alias("loaded_at"))
    return frame.select([*casts, *extra, *flags])


def _as_text(col: pl.Expr, source: pl.DataType) -> pl.Expr:
    """A raw value as text, for the quarantine's copy of the row."""
    if isinstance(source, pl.List):
        return col.cast(pl.List(pl.String())).list.join("|")
    if isinstance(source, pl.Struct | pl.Array | pl.Object | pl.Binary):
        return pl.lit("<unprintable>")
    return col.cast(pl.String())


def _family(dtype: pl.DataType) -> str:
    if dtype == pl.String() or isinstance(dtype, pl.Categorical | pl.Enum):
        return "text"
    if dtype.is_integer():
        return "integer"
    if dtype.is_float():
        return "float"
    if isinstance(dtype, pl.Decimal):
        return "decimal"
    if isinstance(dtype, pl.Datetime):
        return "timestamp"
    if isinstance(dtype, pl.List):
        return "list"
    if dtype == pl.Null():
        return "null"
    return {pl.Date(): "date", pl.Boolean(): "boolean"}.get(dtype, str(dtype))


#: Physical types a contract type may be read from. Anything else is ambiguous (what unit is an
#: integer timestamp?) or lossy, and fails the table instead of being guessed.
_ACCEPTED: dict[str, tuple[str, ...]] = {
    "timestamp": ("timestamp", "date", "text", "null"),
    "date": ("date", "timestamp", "text", "null"),
    "decimal": ("decimal", "integer", "float", "text", "null"),
    "integer": ("integer", "float", "decimal", "text", "null"),
    "boolean": ("boolean", "integer", "text", "null"),
    "text": ("text", "integer", "decimal", "float", "boolean", "date", "timestamp", "null"),
    "list": ("list", "text", "null"),
}


def _check_physical_type(table: str, origin: str, column: str, source: pl.DataType, target: pl.DataType) -> None:
    wanted, found = _family(target), _family(source)
    if isinstance(source, pl.List):
        inner = _family(cast(pl.DataType, source.inner))  # an instance in a frame's schema
        if inner not in ("text", "null"):
            found = f"list of {inner}"
    if found not in _ACCEPTED[wanted]:
        raise SourceError(
            table,
            origin,
            f"has type {source} ({found}), expected {wanted} ({target}); "
            "convert it in the source (e.g. epoch seconds to a timestamp): it is not guessed",
            column=column,
        )


def _cast_expr(col: pl.Expr, source: pl.DataType, target: pl.DataType) -> tuple[pl.Expr, pl.Expr | None]:
    """One non-strict cast from whatever the file holds to the contract type.

    Returns the typed value (null where the value does not fit exactly) and, for amounts, an
    expression true where the value has more decimal places than the contract type holds.
    """
    if isinstance(target, pl.Decimal):
        return _cast_decimal(col, source, target)
    if isinstance(target, pl.List):
        if source == pl.String():
            return _labels(col.str.split("|")), None
        return _labels(col.cast(target, strict=False)), None
    if source == pl.String() and target != pl.String():
        return _parse_string(col.str.strip_chars(), target), None
    if isinstance(target, pl.Datetime):
        if isinstance(source, pl.Datetime):
            if source.time_zone is None:
                return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC"), None
            return col.dt.convert_time_zone("UTC").cast(target), None
        if source == pl.Date():
            return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC"), None
        return col.cast(target, strict=False), None
    if target == pl.Date() and isinstance(source, pl.Datetime):
        # A date stored as a timestamp is only a date at midnight; any other time is not a date.
        return pl.when(col.dt.time() == pl.time(0)).then(col.dt.date()), None
    if target.is_integer() and (source.is_float() or isinstance(source, pl.Decimal)):
        return pl.when(col.round(0) == col).then(col.cast(target, strict=False)), None
    if target == pl.Boolean() and source.is_integer():
        return pl.when(col.is_in([0, 1])).then(col.cast(pl.Boolean())), None
    if target == pl.String():
        text = col if source == pl.String() else col.cast(pl.String(), strict=False)
        return pl.when(text.str.strip_chars() != "").then(text), None
    return col.cast(target, strict=False), None


def _cast_decimal(col: pl.Expr, source: pl.DataType, target: pl.Decimal) -> tuple[pl.Expr, pl.Expr | None]:
    """An amount, exactly: a value with more decimal places than `target` is flagged, never rounded."""
    scale = target.scale or 0
    if source == pl.String():
        text = col.str.strip_chars()
        text = pl.when(text != "").then(text)
        # Places after the point up to the last non-zero digit; scientific notation by value.
        fraction = text.str.extract(r"^[+-]?\d*\.(\d*[1-9])0*$", 1).str.len_chars().fill_null(0)
        wide = text.cast(pl.Decimal(38, 18), strict=False)
        scientific = text.str.contains("[eE]") & (wide.round(scale) != wide)
        too_precise = ((fraction > scale) | scientific).fill_null(False)
        return pl.when(too_precise.not_()).then(text.cast(target, strict=False)), too_precise
    if source.is_float():
        finite = col.is_finite()
        too_precise = (finite & (col.round(scale) != col)).fill_null(False)
        typed = pl.when(finite & too_precise.not_()).then(col.round(scale).cast(target, strict=False))
        return typed, too_precise
    if isinstance(source, pl.Decimal) and (source.scale or 0) > scale:
        too_precise = (col.round(scale) != col).fill_null(False)
        return pl.when(too_precise.not_()).then(col.cast(target, strict=False)), too_precise
    return col.cast(target, strict=False), None


def _labels(lists: pl.Expr) -> pl.Expr:
    """Labels without surrounding spaces, empty labels dropped (`a||b`, ` a | b ` → [a, b])."""
    return lists.list.eval(pl.element().str.strip_chars().filter(pl.element().str.strip_chars() != "")).fill_null(
        pl.lit([], dtype=pl.List(pl.String()))
    )


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
