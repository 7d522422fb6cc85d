"""The output warehouse: SQLite by default, PostgreSQL in production, the same code for both.

Every write replaces one scope (e.g. one campaign's rows for one date) inside one transaction that
first takes a lock on that scope, deletes it and inserts the new rows. A crash mid-write rolls the
transaction back, so the previous state stands; two runs of the same scope at once serialise on the
lock, and the second leaves exactly what the first left. Values are always bound parameters.

Rows move in bulk (`warehouse/bulk.py`): COPY on PostgreSQL and one prepared executemany on SQLite,
both on the transaction's own connection after the lock and the delete; reads land in Polars
through COPY TO (PostgreSQL) or ADBC (SQLite) without a Python object per value.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy import event

from loyalty_assets.transforms.activity import LOGGED_KINDS
from loyalty_assets.warehouse import bulk
from loyalty_assets.warehouse.bulk import schema_of

__all__ = ["DEFAULT_URL", "SQL_DIR", "Warehouse", "ddl_statements", "make_engine", "open_existing", "schema_of"]

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
DEFAULT_URL = "sqlite:///.loyalty/warehouse.db"


def make_engine(url: str) -> sa.Engine:
    """An engine whose transactions are safe for concurrent writers on either dialect."""
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide when transactions begin (see SQLAlchemy's
            # "Serializable isolation / Savepoints / Transactional DDL" recipe), and use WAL so
            # readers do not block the writer.
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA busy_timeout=60000")

        @event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            # A writer's IMMEDIATE takes the write lock at BEGIN, so two writers of one scope run one
            # after the other instead of failing on lock upgrade; readers begin deferred.
            writes = conn.get_execution_options().get("loyalty_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def ddl_statements(sql_dir: Path = SQL_DIR, dialect: str | None = None) -> list[str]:
    """The statements of `sql/ddl/*.sql` in file order, comments removed.

    `NAME.<dialect>.sql` files (e.g. `061_activity_log.postgresql.sql`) hold what the two dialects
    spell differently; they apply to that dialect only (and to none when `dialect` is None).
    """
    statements: list[str] = []
    for path in sorted((sql_dir / "ddl").glob("*.sql")):
        only = path.name.split(".")[1] if path.name.count(".") == 2 else None
        if only is not None and only != dialect:
            continue
        text = re.sub(r"--[^\n]*", "", path.read_text(encoding="utf8"))
        statements.extend(s.strip() for s in text.split(";") if s.strip())
    return statements


def _migrate_activity_log(conn: sa.Connection) -> None:
    """An `activity_log` TABLE of an earlier release becomes the lean `activity_events` (in place).

    The rows the view now derives from other tables (entries, accruals, queued messages) are dropped
    from it; its old indexes go too, the DDL creates the new ones.
    """
    if "activity_log" not in sa.inspect(conn).get_table_names():
        return  # a fresh warehouse, or already the view
    conn.execute(sa.text("ALTER TABLE activity_log RENAME TO activity_events"))
    kinds: sa.BindParameter[list[str]] = sa.bindparam("kinds", list(LOGGED_KINDS), expanding=True)
    conn.execute(sa.text("DELETE FROM activity_events WHERE kind NOT IN :kinds").bindparams(kinds))
    for index in ("ix_activity_log_customer", "ix_activity_log_partition"):
        conn.execute(sa.text(f"DROP INDEX IF EXISTS {index}"))


def _migrate_triggered_customers(conn: sa.Connection) -> None:
    """`triggered_customers` of an earlier release lacks the same-run journey end (`ended_*`), which the
    view `activity_log` reads: the columns are added (NULL: those ends are rows of activity_events)."""
    inspector = sa.inspect(conn)
    if "triggered_customers" not in inspector.get_table_names():
        return
    have = {c["name"] for c in inspector.get_columns("triggered_customers")}
    for column, kind in (("ended_at", "TIMESTAMP"), ("ended_reason", "TEXT"), ("ended_step", "TEXT")):
        if column not in have:
            conn.execute(sa.text(f"ALTER TABLE triggered_customers ADD COLUMN {column} {kind}"))


def _migrate_bonus_lots(conn: sa.Connection) -> None:
    """`bonus_lots` of an earlier release stamped the date it holds on every lot (`as_of_date`): the date
    moves to `bonus_lots_as_of` (created by the DDL) and the column goes. A marker table of the
    release before this one lacks `lots_digest`: it is added."""
    inspector = sa.inspect(conn)
    if "lots_digest" not in {c["name"] for c in inspector.get_columns("bonus_lots_as_of")}:
        # a marker without the digest: the next write replaces the table once, then writes changes
        conn.execute(sa.text("ALTER TABLE bonus_lots_as_of ADD COLUMN lots_digest TEXT"))
    if "bonus_lots" not in inspector.get_table_names():
        return
    if "as_of_date" not in {c["name"] for c in inspector.get_columns("bonus_lots")}:
        return
    held = conn.execute(sa.text("SELECT MAX(as_of_date) FROM bonus_lots")).scalar_one_or_none()
    marked = conn.execute(sa.text("SELECT COUNT(*) FROM bonus_lots_as_of")).scalar_one()
    if held is not None and not marked:
        conn.execute(sa.text("INSERT INTO bonus_lots_as_of (as_of_date) VALUES (:held)"), {"held": held})
    conn.execute(sa.text("ALTER TABLE bonus_lots DROP COLUMN as_of_date"))


class Warehouse:
    """Typed, atomic access to the output tables."""

    def __init__(self, url: str = DEFAULT_URL, *, sql_dir: Path = SQL_DIR) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sql_dir = sql_dir
        self._tables: dict[str, sa.Table] = {}
        self._schema_ready = False

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def ensure_schema(self) -> None:
        """Apply the DDL (idempotent: every statement is `IF NOT EXISTS`), once per process."""
        if self._schema_ready:
            return
        with self._write() as conn:
            self.lock(conn, "ddl")
            _migrate_activity_log(conn)
            _migrate_triggered_customers(conn)  # before the DDL: the view reads the new columns
            for statement in ddl_statements(self.sql_dir, self.dialect):
                conn.execute(sa.text(statement))
            _migrate_bonus_lots(conn)
            metadata = sa.MetaData()
            metadata.reflect(conn)
        self._tables = dict(metadata.tables)
        self._schema_ready = True

    def table(self, name: str) -> sa.Table:
        self.ensure_schema()
        return self._tables[name]

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """One write transaction (on SQLite it holds the write lock from its start)."""
        self.ensure_schema()
        with self._write() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self.engine.connect().execution_options(loyalty_write=True) as conn, conn.begin():
            yield conn

    def replace(
        self,
        table_name: str,
        frame: pl.DataFrame,
        scope: Mapping[str, Any],
        *,
        conn: sa.Connection | None = None,
    ) -> int:
        """Make `frame` exactly the rows of `table_name` where the `scope` columns equal its values.

        Pass `conn` to make several replaces one transaction (e.g. accruals with their activity log).
        """
        self.ensure_schema()  # before the transaction: the DDL takes its own write lock
        if conn is None:
            with self.transaction() as own:
                return self.replace(table_name, frame, scope, conn=own)
        table = self.table(table_name)
        self.lock(conn, table_name, *(f"{k}={v}" for k, v in sorted(scope.items())))
        conn.execute(sa.delete(table).where(*(table.c[k] == v for k, v in scope.items())))
        return bulk.write(conn, table, frame.with_columns(*(pl.lit(v).alias(k) for k, v in scope.items())))

    def read(
        self,
        table_name: str,
        where: Mapping[str, Any] | None = None,
        *,
        before: tuple[str, date] | None = None,
        since: tuple[str, date] | None = None,
        conn: sa.Connection | None = None,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Rows of a table matching equality filters (`column < value` for `before`, `>=` for `since`), typed.

        A list, tuple or set value means IN. Decimals arrive exact, timestamps in UTC. With `conn`, the
        read runs inside that transaction and sees its uncommitted writes. `columns` fetches only those.
        """
        return bulk.read(self.engine, conn, self.table(table_name), where, before, since, columns)

    def count(self, table_name: str, where: Mapping[str, Any] | None = None) -> int:
        table = self.table(table_name)
        query = sa.select(sa.func.count()).select_from(table)
        for k, v in (where or {}).items():
            query = query.where(table.c[k] == v)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def lock(self, conn: sa.Connection, *parts: str) -> None:
        """Serialise writers of one scope: a transaction-scoped advisory lock on PostgreSQL.

        SQLite needs nothing here: `BEGIN IMMEDIATE` already holds the database's write lock.
        """
        if self.dialect == "postgresql":
            key = int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:8], "big", signed=True)
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def open_existing(url: str) -> Warehouse | None:
    """The warehouse at `url` if it already exists with its tables, else None — creating nothing.

    For read-only tools (previews, dry runs) that must not leave a database behind.
    """
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and (not parsed.database or not Path(parsed.database).exists()):
        return None
    engine = sa.create_engine(url)
    try:
        present = sa.inspect(engine).has_table("bonus_accruals")
    except sa.exc.SQLAlchemyError:
        present = False
    finally:
        engine.dispose()
    return Warehouse(url) if present else None
