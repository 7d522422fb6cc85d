"""Bulk paths between Polars frames and the warehouse tables, without a Python object per value.

Rows moved as one Python dict each through SQLAlchemy's executemany ran at 5–30k rows/s, which made
the warehouse writes most of a heavy day's run. Here Polars (Rust) does every per-value conversion:

- **PostgreSQL writes** are one `COPY … FROM STDIN` in CSV format, streamed in chunks that Polars
  renders with `write_csv`: every text is quoted (quotes doubled; tabs, newlines, backslashes and
  `\\.` need nothing more inside quotes) and a NULL is an unquoted empty field, so NULL and `""` stay
  apart. CSV rather than COPY's text format because text needs a backslash-escaping pass over every
  string (it cost more than the CSV rendering itself on ~1 KB bodies). The COPY runs on the DBAPI
  connection of the caller's SQLAlchemy connection, so it is inside the transaction that holds the
  scope's advisory lock and has just deleted the scope.
- **SQLite writes** are one prepared multi-row `INSERT` run by sqlite3's `executemany` over tuples
  zipped from Polars columns already in their stored form (ISO text dates and timestamps, 0/1 booleans,
  decimal text), on the same connection and transaction (`BEGIN IMMEDIATE`). ADBC's ingest would
  be a second connection, which can neither join that transaction nor write while it holds the
  database's write lock (and its driver carries a second copy of SQLite: see `_read_sqlite`).
- **PostgreSQL reads** are `COPY (SELECT …) TO STDOUT` in CSV, parsed by Polars' CSV reader: in CSV
  a NULL is an unquoted empty field and an empty text is `""`, so the two stay apart. Dates and
  timestamps are rendered by `to_char` in a fixed format, independent of the session's DateStyle.
- **SQLite reads** run one query with every column cast to one storage class, and Polars builds
  the columns from sqlite3's tuples with a fixed schema (no Python loop; the decimal, date and
  timestamp parsing is vectorised). ADBC is deliberately not used on SQLite (see `_read_sqlite`).
- Both reads run on the caller's connection when one is given, so a read inside `transaction()`
  sees that transaction's own uncommitted writes.

Values in WHERE clauses are always bound by the driver: server-side for SQLite, and for COPY (which
has no server-side parameters) merged client-side by psycopg's own literal adaptation, never
formatted by this module. Identifiers come from the reflected table and are quoted.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import chain, islice
from typing import Any

import polars as pl
import sqlalchemy as sa

#: Rough size of one chunk handed to COPY or executemany: bounds memory on million-row writes.
CHUNK_BYTES = 32 * 1024 * 1024
#: Rows fetched per batch in SQLite reads: a million 1 KB bodies fetched at once peaked at 6.7 GB.
FETCH_ROWS = 20_000
#: Longer IN lists go to SQLite as one JSON array (its limit on bound variables: 32,766 by default).
SQLITE_MAX_LISTED = 500
#: Rows per SQLite INSERT statement (capped by the database's limit on bound variables).
ROWS_PER_STATEMENT = 200
#: How timestamps are stored on SQLite (SQLAlchemy's own format, so older rows compare as text).
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S%.6f"
#: Timestamps as COPY input is written, and as parsed back (`%.f` also accepts no fraction).
DATETIME_TEXT = "%Y-%m-%d %H:%M:%S%.6f"
DATETIME_PARSE = "%Y-%m-%d %H:%M:%S%.f"
DATE_TEXT = "%Y-%m-%d"
PG_DATETIME = "YYYY-MM-DD HH24:MI:SS.US"
PG_DATE = "YYYY-MM-DD"
#: Name of the constant first column of PostgreSQL reads (see `_read_postgres`).
LEAD = "__lead"


def _python_type(column: sa.Column[Any]) -> pl.DataType:
    kind = column.type
    if isinstance(kind, sa.Numeric) and not isinstance(kind, sa.Integer | sa.Float):
        return pl.Decimal(14, kind.scale if kind.scale is not None else 2)
    if isinstance(kind, sa.BigInteger | sa.Integer):
        return pl.Int64()
    if isinstance(kind, sa.Boolean):
        return pl.Boolean()
    if isinstance(kind, sa.DateTime):
        return pl.Datetime("us", "UTC")
    if isinstance(kind, sa.Date):
        return pl.Date()
    return pl.String()


def schema_of(table: sa.Table) -> dict[str, pl.DataType]:
    """The Polars schema matching a warehouse table."""
    return {c.name: _python_type(c) for c in table.columns}


# ---------------------------------------------------------------------------------------------
# Writes
# ---------------------------------------------------------------------------------------------


def prepare(frame: pl.DataFrame, table: sa.Table) -> pl.DataFrame:
    """The frame's columns that the table has, in table order and cast to its types.

    Timestamps become naive UTC (a zone-aware column is converted first; a naive one is taken as
    UTC). Decimals become their text form: the database, not a binary float, rounds to the column's
    scale. A missing NOT NULL column is refused before anything is written.
    """
    missing = [c.name for c in table.columns if c.name not in frame.columns and not c.nullable]
    if missing:
        raise ValueError(f"warehouse table '{table.name}': frame lacks required columns {missing}")
    select = []
    for name, dtype in schema_of(table).items():
        if name not in frame.columns:
            continue
        source = frame.schema[name]
        expr = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            if isinstance(source, pl.Datetime) and source.time_zone is not None:
                expr = expr.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
            expr = expr.cast(pl.Datetime("us"))
        elif isinstance(dtype, pl.Decimal):
            expr = expr.cast(pl.String())
        else:
            expr = expr.cast(dtype)
        select.append(expr.alias(name))
    return frame.select(select)


def _chunks(frame: pl.DataFrame) -> Iterator[pl.DataFrame]:
    """Slices of about CHUNK_BYTES each (at least 1,000 rows)."""
    if frame.height == 0:
        return
    per_row = max(1, int(frame.estimated_size()) // frame.height)
    step = max(1_000, CHUNK_BYTES // per_row)
    for offset in range(0, frame.height, step):
        yield frame.slice(offset, step)


def _driver(conn: sa.Connection) -> Any:
    """The driver's connection (psycopg or sqlite3) under `conn`: the same session and transaction."""
    raw = conn.connection.dbapi_connection
    if raw is None:
        raise RuntimeError("the warehouse connection is closed")
    return raw


def _dbapi_error(conn: sa.Connection, statement: str, exc: Exception) -> Exception:
    """The SQLAlchemy exception SQLAlchemy itself would raise for a driver error (IntegrityError, …)."""
    return sa.exc.DBAPIError.instance(statement, None, exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect)


def copy_into_postgres(conn: sa.Connection, table: sa.Table, rows: pl.DataFrame) -> None:
    """COPY prepared rows into `table` inside `conn`'s transaction."""
    from psycopg import sql

    raw = _driver(conn)
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(c) for c in rows.columns)
    )
    utf8 = raw.info.encoding == "utf-8"
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for chunk in _chunks(rows):
                buffer = io.BytesIO()
                chunk.write_csv(
                    buffer,
                    quote_style="non_numeric",
                    include_header=False,
                    datetime_format=DATETIME_TEXT,
                    date_format=DATE_TEXT,
                )
                data = buffer.getvalue()
                copy.write(data if utf8 else data.decode("utf8"))
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _dbapi_error(conn, statement.as_string(raw), exc) from exc


def _sqlite_stored(rows: pl.DataFrame) -> pl.DataFrame:
    """Prepared rows in SQLite's stored form: the text SQLAlchemy's SQLite types write, 0/1 booleans."""
    exprs = []
    for name, dtype in rows.schema.items():
        expr = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            expr = expr.dt.to_string(SQLITE_DATETIME)
        elif dtype == pl.Date():
            expr = expr.dt.to_string(DATE_TEXT)
        elif dtype == pl.Boolean():
            expr = expr.cast(pl.Int64())
        exprs.append(expr)
    return rows.select(exprs)


def insert_into_sqlite(conn: sa.Connection, table: sa.Table, rows: pl.DataFrame) -> None:
    """executemany prepared rows into `table` inside `conn`'s transaction, many rows per statement.

    One `INSERT … VALUES (…), (…), …` of ROWS_PER_STATEMENT rows per execution cut the insert's CPU
    by about a third against one row per execution (fewer statement steps and Python iterations for
    the same bindings), within SQLite's limit on bound variables.
    """
    import sqlite3

    quote = conn.dialect.identifier_preparer.quote
    raw = _driver(conn)
    width = rows.width
    per = max(1, min(ROWS_PER_STATEMENT, raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in rows.columns)}) VALUES "
    one = "(" + ", ".join("?" for _ in rows.columns) + ")"
    statement = head + ", ".join([one] * per)
    key = [c.name for c in table.primary_key.columns]
    if key and all(k in rows.columns for k in key):
        # in key order the primary key's B-tree grows at its edge instead of splitting pages all over
        # it: 709k outbox rows (random message ids) went in with 6.2 → 4.8 CPU s
        rows = rows.sort(key)
    cursor = raw.cursor()
    try:
        for chunk in _chunks(_sqlite_stored(rows)):
            values = chain.from_iterable(zip(*(s.to_list() for s in chunk.iter_columns()), strict=True))
            full, rest = divmod(chunk.height, per)
            if full:
                cursor.executemany(statement, (tuple(islice(values, per * width)) for _ in range(full)))
            if rest:
                cursor.execute(head + ", ".join([one] * rest), tuple(values))
    except sqlite3.Error as exc:
        raise _dbapi_error(conn, statement, exc) from exc
    finally:
        cursor.close()


def write(conn: sa.Connection, table: sa.Table, frame: pl.DataFrame) -> int:
    """Insert `frame` into `table` through the dialect's bulk path; returns the rows written."""
    rows = prepare(frame, table)
    if rows.height == 0:
        return 0
    if conn.dialect.name == "postgresql":
        copy_into_postgres(conn, table, rows)
    else:
        insert_into_sqlite(conn, table, rows)
    return rows.height


# ---------------------------------------------------------------------------------------------
# Reads
# ---------------------------------------------------------------------------------------------


def _sqlite_value(value: Any) -> Any:
    """A filter value in the form SQLite stores it (so text comparisons match the stored text)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        return str(value)
    return value


def _postgres_value(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def where_clause(
    table: sa.Table,
    dialect: sa.Dialect,
    where: Mapping[str, Any] | None,
    before: tuple[str, date] | None,
    since: tuple[str, date] | None,
) -> tuple[str, list[Any]]:
    """` WHERE …` with placeholders and its parameters: equality (a list/tuple/set means IN, None
    means IS NULL), `before` as `<`, `since` as `>=`. Unknown columns raise KeyError."""
    postgres = dialect.name == "postgresql"
    mark = "%s" if postgres else "?"
    convert = _postgres_value if postgres else _sqlite_value
    quote = dialect.identifier_preparer.quote
    terms: list[str] = []
    params: list[Any] = []
    for key, value in (where or {}).items():
        column = quote(table.c[key].name)
        if isinstance(value, list | tuple | set):
            values = [convert(v) for v in value]
            if not values:
                terms.append("1 = 0")
            elif postgres:
                terms.append(f"{column} = ANY({mark})")
                params.append(values)
            elif len(values) > SQLITE_MAX_LISTED:  # one JSON parameter instead of one variable per value
                terms.append(f"{column} IN (SELECT value FROM json_each({mark}))")
                params.append(json.dumps(values))
            else:
                terms.append(f"{column} IN ({', '.join(mark for _ in values)})")
                params.extend(values)
        elif value is None:
            terms.append(f"{column} IS NULL")
        else:
            terms.append(f"{column} = {mark}")
            params.append(convert(value))
    for bound, op in ((before, "<"), (since, ">=")):
        if bound is not None:
            terms.append(f"{quote(table.c[bound[0]].name)} {op} {mark}")
            params.append(convert(bound[1]))
    return (" WHERE " + " AND ".join(terms) if terms else ""), params


def _decode(raw: pl.DataFrame, target: Mapping[str, pl.DataType], *, text_booleans: bool) -> pl.DataFrame:
    """Raw columns (text, or integers for integer and boolean columns) → the table's Polars types.

    Decimals go through their text form (SQLite's numeric affinity stores 500.00 as 500 and 0.10 as
    0.1; PostgreSQL prints NUMERIC exactly), so they arrive as exact 2-place decimals, never floats.
    """
    exprs = []
    for name, dtype in target.items():
        value = pl.col(name)
        if isinstance(dtype, pl.Decimal):
            expr = value.cast(dtype)
        elif isinstance(dtype, pl.Datetime):
            expr = value.str.to_datetime(DATETIME_PARSE, time_unit="us").dt.replace_time_zone("UTC")
        elif dtype == pl.Date():
            expr = value.str.to_date(DATE_TEXT)
        elif dtype == pl.Boolean():
            expr = (value == "t") if text_booleans else value.cast(pl.Boolean())
        else:
            expr = value.cast(dtype)
        exprs.append(expr.alias(name))
    return raw.select(exprs)


def _read_postgres(conn: sa.Connection, table: sa.Table, condition: str, params: list[Any]) -> pl.DataFrame:
    """COPY (SELECT …) TO STDOUT as CSV, parsed by Polars in blocks of about CHUNK_BYTES (the whole
    stream at once peaked at 4.5× the frame for a million 1 KB bodies).

    A constant first column keeps a text value's leading byte-order mark away from the start of the
    stream, where a CSV reader would drop it.
    """
    from psycopg import sql

    target = schema_of(table)
    columns: list[sql.Composable] = [sql.SQL("0")]
    for name, dtype in target.items():
        column = sql.Identifier(name)
        if isinstance(dtype, pl.Datetime):
            columns.append(sql.SQL("to_char({}, {})").format(column, sql.Literal(PG_DATETIME)))
        elif dtype == pl.Date():
            columns.append(sql.SQL("to_char({}, {})").format(column, sql.Literal(PG_DATE)))
        else:
            columns.append(column)
    select = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(columns), sql.Identifier(table.name))
    statement = sql.SQL("COPY ({}{}) TO STDOUT WITH (FORMAT csv)").format(select, sql.SQL(condition))
    raw = _driver(conn)
    names = [LEAD, *target]
    parts: list[pl.DataFrame] = []
    block = io.BytesIO()

    def parse() -> None:
        # Each COPY message is one whole row, so a block cut between messages is valid CSV.
        parts.append(pl.read_csv(block.getvalue(), has_header=False, new_columns=names, infer_schema=False))
        block.seek(0)
        block.truncate()

    try:
        with raw.cursor() as cursor, cursor.copy(statement, params or None) as copy:
            for row in copy:
                block.write(row)
                if block.tell() >= CHUNK_BYTES:
                    parse()
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _dbapi_error(conn, statement.as_string(raw), exc) from exc
    if block.tell():
        parse()
    if not parts:
        return pl.DataFrame(schema=target)
    return _decode(pl.concat(parts, rechunk=False), target, text_booleans=True)


def _sqlite_select(table: sa.Table, dialect: sa.Dialect) -> tuple[str, dict[str, pl.DataType]]:
    """The SELECT list of a SQLite read and the raw type of each column.

    Every column is cast to one storage class (integers for integer and boolean columns, text for
    the rest), so a column never mixes SQLite's INTEGER and REAL (numeric affinity stores 500.00 as
    500 and 0.10 as 0.1) and the frame can be built with a fixed schema.
    """
    quote = dialect.identifier_preparer.quote
    terms: list[str] = []
    raw: dict[str, pl.DataType] = {}
    for column in table.columns:
        as_integer = _python_type(column) in (pl.Int64(), pl.Boolean())
        terms.append(f"CAST({quote(column.name)} AS {'INTEGER' if as_integer else 'TEXT'}) AS {quote(column.name)}")
        raw[column.name] = pl.Int64() if as_integer else pl.String()
    return f"SELECT {', '.join(terms)} FROM {quote(table.name)}", raw


def _read_sqlite(conn: sa.Connection, table: sa.Table, condition: str, params: list[Any]) -> pl.DataFrame:
    """One query on the caller's connection; Polars builds the columns from the fetched tuples.

    Not ADBC: its driver links a second copy of SQLite into the process, and two copies using one
    database file release each other's POSIX locks (https://sqlite.org/howtocorrupt.html §2.2.1).
    Tried here, it ended in `disk I/O error` right after a rolled-back write.
    """
    query, raw_schema = _sqlite_select(table, conn.dialect)
    cursor = _driver(conn).cursor()  # plain tuples: SQLAlchemy's Row objects cost a third more
    try:
        cursor.execute(query + condition, params)
        raw = fetched(cursor, raw_schema)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _dbapi_error(conn, query + condition, exc) from exc
    finally:
        cursor.close()
    return _decode(raw, schema_of(table), text_booleans=False)


def fetched(cursor: Any, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """The rows left in a DB-API cursor as a frame of `schema`, FETCH_ROWS at a time (Python objects
    for one batch at a time only)."""
    parts = [pl.DataFrame(schema=schema)]
    while batch := cursor.fetchmany(FETCH_ROWS):
        parts.append(pl.DataFrame(batch, schema=schema, orient="row"))
    return pl.concat(parts, rechunk=False)


def read(
    engine: sa.Engine,
    conn: sa.Connection | None,
    table: sa.Table,
    where: Mapping[str, Any] | None,
    before: tuple[str, date] | None,
    since: tuple[str, date] | None,
    columns: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Rows of `table` matching the filters, typed per `schema_of`; inside `conn` when given.

    `columns` limits the columns fetched (a history read never needs the message bodies).
    """
    condition, params = where_clause(table, engine.dialect, where, before, since)
    if columns is not None:
        unknown = sorted(set(columns) - set(table.c.keys()))
        if unknown:
            raise KeyError(f"table {table.name} has no column(s) {unknown}")
        table = sa.Table(table.name, sa.MetaData(), *(sa.Column(c, table.c[c].type) for c in columns))
    reader = _read_postgres if engine.dialect.name == "postgresql" else _read_sqlite
    if conn is not None:
        return reader(conn, table, condition, params)
    with engine.connect() as own:
        return reader(own, table, condition, params)
