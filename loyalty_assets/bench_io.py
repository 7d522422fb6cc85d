"""Benchmark: warehouse write and read throughput, the project's path beside a plain driver peer.

Why it exists: the warehouse writes were most of a heavy day's run (issue 9: 5–30k rows/s through
SQLAlchemy's executemany of dicts). The targets are ≥ 200k rows/s for a narrow table and ≥ 50k rows/s
for outbox rows with ~1 KB bodies, on SQLite and PostgreSQL. This script measures, in one run:

- `project`: `Warehouse.replace(table, frame, scope)` (the scope's lock, delete, bulk insert and
  commit) and `Warehouse.read(table, scope)` (typed frame: exact decimals, UTC timestamps);
- `peer`: the plain driver a hand-written loader would use on the same frame — psycopg's
  `COPY … FROM STDIN` with `write_row` per row and `fetchall` into a frame on PostgreSQL; sqlite3
  `executemany` over `iter_rows()` (dates, timestamps and decimals rendered as text by Polars first,
  since sqlite3 cannot bind them) and `fetchall` into an untyped frame on SQLite. The peer does no
  locking, no scope delete and no typing: it is the driver's floor.

Tables: `triggered_customers` (11 columns: texts, dates, a timestamp, a boolean, two NUMERIC(14,2),
nulls) and `message_outbox` (14 columns with ~1 KB HTML bodies full of Cyrillic, quotes, tabs and
newlines, the characters COPY must escape). Each (warehouse, table, rows, path) runs in its own
subprocess on a fresh database (SQLite file / PostgreSQL schema), so memory and caches never carry
over. Reported per step: rows/s and wall seconds, the client process's CPU seconds (user + system;
on PostgreSQL the server's work is not in it) and its peak RSS during the step (psutil, sampled every
5 ms), beside the RSS when the step began (the generated frame). Wall time moves with other load on
a shared machine; CPU seconds much less.

    python -m loyalty_assets.bench_io [--rows 100000,1000000] [--warehouses sqlite,postgres]
        [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--out bench/results/io.md]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = PROJECT_ROOT / "bench" / "results" / "io.md"
DEFAULT_ROWS = (100_000, 1_000_000)
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TABLES = ("triggered_customers", "message_outbox")
WAREHOUSES = ("sqlite", "postgres")
PATHS = ("project", "peer")
#: Targets of issue 9 (rows/s), per table.
TARGETS = {"triggered_customers": 200_000, "message_outbox": 50_000}
SCOPE_DATE = date(2025, 6, 26)
CAMPAIGN = "birthday_week_early"
MARK = "BENCH_IO_RESULT "


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def make_frame(table: str, rows: int) -> Any:
    """The frame written for `table` (scope columns included, so both paths write the same rows)."""
    import polars as pl

    index = pl.int_range(rows, dtype=pl.Int64, eager=True).alias("customer_id")
    base = pl.DataFrame(index).with_columns(
        pl.lit(CAMPAIGN).alias("campaign_id"),
        pl.lit(SCOPE_DATE).alias("partition_date"),
        pl.format("birthday:2025-07-{}", (pl.col("customer_id") % 28 + 1).cast(pl.String).str.zfill(2)).alias(
            "occasion"
        ),
    )
    at = datetime(2025, 6, 26, 7, 0, tzinfo=UTC)

    def moment(name: str) -> pl.Expr:
        """Distinct UTC instants with microseconds."""
        return (
            pl.lit(at).cast(pl.Datetime("us", "UTC")) + pl.duration(microseconds=pl.col("customer_id") * 997)
        ).alias(name)

    if table == "triggered_customers":
        return base.with_columns(
            pl.lit(date(2025, 7, 3)).alias("event_date"),
            moment("triggered_at"),
            pl.when(pl.col("customer_id") % 2 == 0).then(pl.lit("email")).otherwise(pl.lit(None)).alias("variant"),
            (pl.col("customer_id") % 10 == 0).alias("is_control"),
            pl.when(pl.col("customer_id") % 3 == 0)
            .then(pl.format("CHK-{}", pl.col("customer_id")))
            .otherwise(pl.lit(None))
            .alias("check_id"),
            pl.format(
                "{}.{}", pl.col("customer_id") % 10_000, (pl.col("customer_id") % 100).cast(pl.String).str.zfill(2)
            )
            .cast(pl.Decimal(14, 2))
            .alias("check_total"),
            pl.lit(None, dtype=pl.Decimal(14, 2)).alias("event_amount"),
        )
    paragraph = (
        "<p>Здравствуйте, {}!\n\tВаши 500 бонусов «ждут» вас до 26.07 — "
        'потратьте их в "Аквариуме" & <b>«Зоомире»</b>: путь C:\\\\бонусы\\\\{}.</p>\n'
    )
    body = pl.format(
        "<html><body>\n" + paragraph * 5 + "<a href='https://example.ru/u?id={}&t=1'>Отписаться</a>\n</body></html>",
        *([pl.col("customer_id")] * 10),
        pl.col("customer_id"),
    )
    return base.with_columns(
        pl.format("{}:s1:email:{}:{}", pl.lit(CAMPAIGN), pl.col("customer_id"), pl.col("occasion")).alias("message_id"),
        pl.lit("s1").alias("step_id"),
        pl.lit("email").alias("channel"),
        pl.format("user{}@example.ru", pl.col("customer_id")).alias("recipient"),
        pl.format("Анна, {} бонусов ждут вас", pl.lit(500)).alias("subject"),
        body.alias("body"),
        pl.lit("birthday_week_early.html").alias("template"),
        pl.lit(None, dtype=pl.String).alias("variant"),
        moment("send_at"),
        (pl.col("customer_id") // 1000).cast(pl.Int64).alias("batch_no"),
    )


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------


@contextmanager
def measured(result: dict[str, Any], server_pid: int | None = None) -> Iterator[None]:
    """Wall and CPU seconds of the block, and the process's RSS before it and at its peak (psutil).

    With `server_pid` (the PostgreSQL backend serving the connection), that process's CPU seconds too.
    """
    import psutil

    process = psutil.Process()
    server = psutil.Process(server_pid) if server_pid else None
    server_before = sum(server.cpu_times()[:2]) if server else 0.0
    gc.collect()
    before = process.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        yield
    finally:
        result["wall_s"] = time.perf_counter() - wall
        result["cpu_s"] = time.process_time() - cpu
        result["server_cpu_s"] = sum(server.cpu_times()[:2]) - server_before if server else None
        done.set()
        sampler.join()
        result["rss_before_mb"] = before / 2**20
        result["peak_rss_mb"] = max(peak[0], process.memory_info().rss) / 2**20


def _columns(frame: Any) -> str:
    return ", ".join(f'"{c}"' for c in frame.columns)


def peer_write_postgres(conn: Any, table: str, frame: Any) -> None:
    from psycopg import sql

    with conn.transaction(), conn.cursor() as cursor:
        naive = frame.with_columns(_naive_utc(frame))
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
        )
        with cursor.copy(statement) as copy:
            for row in naive.iter_rows():
                copy.write_row(row)


def peer_read_postgres(conn: Any, table: str) -> Any:
    import polars as pl
    from psycopg import sql

    with conn.transaction(), conn.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
        names = [d.name for d in cursor.description or ()]
        return pl.DataFrame(cursor.fetchall(), schema=names, orient="row", infer_schema_length=None)


def _naive_utc(frame: Any) -> list[Any]:
    import polars as pl

    return [
        pl.col(n).dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        for n, t in frame.schema.items()
        if isinstance(t, pl.Datetime) and t.time_zone is not None
    ]


def peer_write_sqlite(path: str, table: str, frame: Any) -> None:
    import sqlite3

    import polars as pl

    text = frame.with_columns(_naive_utc(frame)).with_columns(
        pl.col(pl.Datetime).dt.to_string("%Y-%m-%d %H:%M:%S%.6f"),
        pl.col(pl.Date).dt.to_string("%Y-%m-%d"),
        pl.col(pl.Decimal).cast(pl.String),
    )
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        marks = ", ".join("?" for _ in frame.columns)
        conn.executemany(f'INSERT INTO "{table}" ({_columns(frame)}) VALUES ({marks})', text.iter_rows())
        conn.execute("COMMIT")
    finally:
        conn.close()


def peer_read_sqlite(path: str, table: str) -> Any:
    import sqlite3

    import polars as pl

    conn = sqlite3.connect(path)
    try:
        cursor = conn.execute(f'SELECT * FROM "{table}"')
        names = [d[0] for d in cursor.description]
        return pl.DataFrame(cursor.fetchall(), schema=names, orient="row", infer_schema_length=None)
    finally:
        conn.close()


def _libpq(url: str) -> str:
    """A SQLAlchemy URL as a libpq connection string (the driver part removed)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextmanager
def fresh_database(warehouse: str, postgres_url: str) -> Iterator[str]:
    """A URL of an empty warehouse: a new SQLite file, or a new PostgreSQL schema dropped afterwards."""
    if warehouse == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench_io_") as folder:
            yield f"sqlite:///{Path(folder) / 'warehouse.db'}"
        return
    import psycopg
    from psycopg import sql

    schema = f"bench_io_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_libpq(postgres_url), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    separator = "&" if "?" in postgres_url else "?"
    try:
        yield f"{postgres_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(_libpq(postgres_url), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def child(warehouse: str, table: str, rows: int, path: str, postgres_url: str) -> dict[str, Any]:
    """One path's write then read of `rows` rows of `table`, on a fresh database."""
    import polars as pl
    import sqlalchemy as sa

    from loyalty_assets.warehouse.warehouse import Warehouse

    frame = make_frame(table, rows)
    scope = {"campaign_id": CAMPAIGN, "partition_date": SCOPE_DATE}
    result: dict[str, Any] = {"warehouse": warehouse, "table": table, "rows": rows, "path": path}
    with fresh_database(warehouse, postgres_url) as url:
        wh = Warehouse(url)
        wh.ensure_schema()
        write: dict[str, Any] = {}
        read: dict[str, Any] = {}
        if path == "project":
            pid = None
            if warehouse == "postgres":  # the pool's one connection, which replace and read reuse
                with wh.engine.connect() as conn:
                    pid = conn.connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
            with measured(write, pid):
                wh.replace(table, frame.drop(*scope), scope)
            with measured(read, pid):
                back = wh.read(table, scope)
            if pid and wh.engine.pool.checkedin() != 1:  # type: ignore[attr-defined]
                raise RuntimeError("replace/read opened another connection than the one measured")
        elif warehouse == "sqlite":
            database = sa.engine.make_url(url).database or ""
            with measured(write):
                peer_write_sqlite(database, table, frame)
            with measured(read):
                back = peer_read_sqlite(database, table)
        else:
            import psycopg

            with psycopg.connect(_libpq(url)) as peer:
                pid = peer.info.backend_pid
                with measured(write, pid):
                    peer_write_postgres(peer, table, frame)
                with measured(read, pid):
                    back = peer_read_postgres(peer, table)
        if back.height != rows:
            raise RuntimeError(f"{warehouse}/{table}/{path}: wrote {rows} rows, read {back.height}")
        if path == "project" and table == "message_outbox":
            sample = back.sort("customer_id").head(1_000)
            if sample["body"].to_list() != frame.head(1_000)["body"].to_list():
                raise RuntimeError(f"{warehouse}/{table}: bodies differ after the round trip")
        if path == "project" and table == "triggered_customers":
            total = back["check_total"].sum()
            if total != frame["check_total"].sum() or back.schema["check_total"] != pl.Decimal(14, 2):
                raise RuntimeError(f"{warehouse}/{table}: decimals differ after the round trip ({total})")
        wh.engine.dispose()
    result["bytes"] = int(frame.estimated_size())
    result["write"] = write
    result["read"] = read
    return result


def run_child(warehouse: str, table: str, rows: int, path: str, postgres_url: str) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and parse its marked result line."""
    command = [sys.executable, "-m", "loyalty_assets.bench_io", "--child", warehouse, table, str(rows), path]
    command += ["--postgres-url", postgres_url]
    done = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{warehouse}/{table}/{rows}/{path} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith(MARK))
    return dict(json.loads(line[len(MARK) :]))


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

COLUMNS = (
    "warehouse",
    "table",
    "rows",
    "path",
    "step",
    "rows/s",
    "rows per CPU s",
    "wall s",
    "CPU s",
    "server CPU s",
    "RSS before (MB)",
    "peak RSS (MB)",
    "target",
)


def report(results: list[dict[str, Any]], notes: str) -> str:
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|"
        + "|".join("---" if c in ("warehouse", "table", "path", "step", "target") else "---:" for c in COLUMNS)
        + "|",
    ]
    for r in results:
        for step in ("write", "read"):
            m = r[step]
            rate = r["rows"] / m["wall_s"] if m["wall_s"] else float("inf")
            cpu = m["cpu_s"] + (m["server_cpu_s"] or 0.0)
            per_cpu = r["rows"] / cpu if cpu else float("inf")
            target = ""
            if step == "write" and r["path"] == "project":
                goal = TARGETS[r["table"]]
                verdicts = [
                    f"wall {'met' if rate >= goal else 'missed'}",
                    f"CPU {'met' if per_cpu >= goal else 'missed'}",
                ]
                target = f"≥ {goal // 1000}k: " + ", ".join(verdicts)
            cells = [r["warehouse"], r["table"], f"{r['rows']:,}", r["path"], step, f"{rate:,.0f}", f"{per_cpu:,.0f}"]
            server = "–" if m["server_cpu_s"] is None else f"{m['server_cpu_s']:.2f}"
            cells += [
                f"{m['wall_s']:.2f}",
                f"{m['cpu_s']:.2f}",
                server,
                f"{m['rss_before_mb']:,.0f}",
                f"{m['peak_rss_mb']:,.0f}",
            ]
            lines.append("| " + " | ".join([*cells, target]) + " |")
    return notes + "\n\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loyalty_assets.bench_io", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default=",".join(str(n) for n in DEFAULT_ROWS), help="row counts, comma separated")
    parser.add_argument("--warehouses", default=",".join(WAREHOUSES), help="sqlite,postgres")
    parser.add_argument("--tables", default=",".join(TABLES), help="triggered_customers,message_outbox")
    parser.add_argument("--paths", default=",".join(PATHS), help="project,peer")
    parser.add_argument("--postgres-url", default=os.environ.get("LOYALTY_TEST_POSTGRES_URL", DEFAULT_PG_URL))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"Markdown report (default {DEFAULT_OUT})")
    parser.add_argument("--child", nargs=4, metavar=("WAREHOUSE", "TABLE", "ROWS", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        warehouse, table, rows, path = args.child
        print(MARK + json.dumps(child(warehouse, table, int(rows), path, args.postgres_url)), flush=True)
        return 0
    counts = [int(x.replace("_", "")) for x in args.rows.split(",") if x.strip()]
    warehouses = [w for w in args.warehouses.split(",") if w]
    tables = [t for t in args.tables.split(",") if t]
    unknown = sorted({*warehouses} - {*WAREHOUSES}) + sorted({*tables} - {*TABLES})
    if unknown:
        print(f"bench_io: unknown warehouse or table {unknown}", file=sys.stderr)
        return 2
    results: list[dict[str, Any]] = []
    failures = 0
    load = os.getloadavg()
    for rows in counts:
        for warehouse in warehouses:
            for table in tables:
                for path in [p for p in args.paths.split(",") if p in PATHS]:
                    try:
                        r = run_child(warehouse, table, rows, path, args.postgres_url)
                    except RuntimeError as exc:
                        print(f"bench_io: {str(exc).splitlines()[0]}", file=sys.stderr)
                        print(str(exc), file=sys.stderr)
                        failures += 1
                        continue
                    results.append(r)
                    steps = "  ".join(
                        f"{step} {rows / m['wall_s']:>10,.0f} rows/s ({m['cpu_s']:.2f} CPU s, "
                        f"peak {m['peak_rss_mb']:,.0f} MB)"
                        for step, m in (("write", r["write"]), ("read", r["read"]))
                    )
                    print(f"  {warehouse:<8} {table:<20} {rows:>9,} {path:<7} {steps}", flush=True)
    import polars as pl
    import psutil

    notes = (
        f"`python -m loyalty_assets.bench_io --rows {args.rows}` on {platform.node() or 'this machine'}: "
        f"{psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, Python "
        f"{platform.python_version()}, Polars {pl.__version__}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"load average at the start {load[0]:.1f}, at the end {os.getloadavg()[0]:.1f}. One run per row (its own "
        "process, fresh database); CPU s = the client process, server CPU s = the PostgreSQL backend serving it; "
        "rows per CPU s = rows / (CPU s + server CPU s), the rate one otherwise idle core would sustain."
    )
    text = report(results, notes)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf8")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1), encoding="utf8")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
