"""Benchmark: the shared features + the seed 004 segment in Polars, against hand-written DuckDB SQL.

Why it exists: every daily run computes one features frame for all segments; the project claims this
step is as fast as a hand-written SQL engine would be and that its memory stays within a few times the
input's size. This script measures both claims on the seeded sample data (default 10k, 100k and 1M
customers; 1M customers ≈ 5M checks, ≈ 20M check lines, ≈ 8M bonus ledger rows) and doubles as a
correctness check: DuckDB computes the segment independently, from the same Parquet files, and the
script fails loudly when the two engines disagree on the members.

    python -m loyalty_assets.bench [--scales 10000,100000,1000000] [--repeat 3] [--threads N]
    python -m loyalty_assets.bench --scales 1000000 --data-dir /tmp/bench_data

What is measured, per scale, with the run date 2025-06-26 (cutoff = start of 2025-06-27 Moscow):

- `polars`: what the pipeline does for one date, restricted to the tables the segment needs
  (`customers`, `checks`, `bonus_transactions`; the other tables are given empty, so `check_items` is
  counted in the table but not read). Step `read+validate` is `load_snapshot` over `read_file_table`
  (read, type, quarantine rules, duplicate keys, point-in-time cut); step `features+segment` is
  `compute_features` for the segment's specs plus `evaluate_segments`.
- `duckdb`: the same two steps as hand-written SQL over the same Parquet files: the validated tables
  are materialised as temp tables (`read+validate`), then one query computes the segment from them
  (`features+segment`). The SQL restates the project's rules: quarantine (nulls in required columns,
  enums, negative amounts, future timestamps, unknown customers and zones, first of duplicate keys in
  file order), the cut (`ts` and `loaded_at` before the cutoff), customer-local days (customer zone,
  else the program zone), windows capped at the run date, and nulls compare false.
- `duckdb (one query)`: the same SQL with views instead of temp tables, so DuckDB plans read, validation
  and segment as one query (projection and filter push-down into the Parquet scans): the way someone
  would write it in DuckDB from scratch.

The SQL is written for seed 004 as its YAML stands; if the YAML changes, the member check fails until
the SQL follows. Zone validity comes from DuckDB's ICU list (`pg_timezone_names()`), not Python's
`zoneinfo`, so the two engines do not share that code either.

Each engine runs in its own subprocess per repetition, so its peak RSS (the child's own high-water
mark, `VmHWM`; see `peak_rss_bytes` for why not `ru_maxrss`) is its own and a repetition never profits
from the previous one's heap; engine libraries are imported inside the child, so the DuckDB child does
not carry Polars and vice versa. Peak RSS of a step is the process peak at the end of that step (so
`features+segment` includes the snapshot it reads). Both engines get the same thread count
(`POLARS_MAX_THREADS`, DuckDB `SET threads`). The median of the repetitions' seconds and the maximum of
their peaks are reported, as a Markdown table on stdout and in `bench/results/latest.md` (git-ignored),
with each engine's CPU seconds beside it: on a shared machine wall time moves with other load, CPU time
much less. Repetitions interleave the engines, so such drift hits all of them alike.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # a type only: the DuckDB child must not import Polars (its RSS would carry it)
    from loyalty_assets.transforms.features import FeatureSpec

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = PROJECT_ROOT / ".loyalty" / "bench" / "data"
DEFAULT_OUT = PROJECT_ROOT / "bench" / "results" / "latest.md"
DEFAULT_CATALOG = Path(__file__).resolve().parent / "catalog"
DEFAULT_SCALES = (10_000, 100_000, 1_000_000)
DEFAULT_SEGMENT = "women_q1_email_bonus"
RUN_DATE = date(2025, 6, 26)
#: Sample-data parameters of every generated scale (the issue's 400 days ending 2025-06-30, seed 42).
DATA_DAYS = 400
DATA_END = date(2025, 6, 30)
DATA_SEED = 42

POLARS = "polars"
DUCKDB = "duckdb"
DUCKDB_ONE_QUERY = "duckdb (one query)"
ENGINES = (POLARS, DUCKDB, DUCKDB_ONE_QUERY)
READ, FEATURES, TOTAL = "read+validate", "features+segment", "total"
#: Tables the hand-written SQL reads (the Polars child reports the tables the segment's specs need).
SQL_TABLES = ("customers", "checks", "bonus_transactions")
#: Prefix of the one stdout line on which a child reports its result as JSON.
RESULT_MARK = "BENCH-RESULT "

COLUMNS = (
    "scale (customers)",
    "check lines",
    "input Parquet (MB)",
    "engine",
    "step",
    "median s",
    "peak RSS (MB)",
    "ratio polars/duckdb",
    "members",
)

_MB = 1024 * 1024


# ---------------------------------------------------------------------------------------------------
# The DuckDB side: hand-written SQL, values bound through variables (never formatted into the text)
# ---------------------------------------------------------------------------------------------------

#: Run parameters as DuckDB variables; the cutoff is derived in SQL, independently of `AsOf`.
SQL_SETUP = (
    "SET TimeZone = 'UTC'",
    "SET VARIABLE run_day = $run_day::DATE",
    "SET VARIABLE program_tz = $program_tz",
    "SET VARIABLE run_now = $run_now::TIMESTAMPTZ",
    "SET VARIABLE customers_files = $customers_files",
    "SET VARIABLE checks_files = $checks_files",
    "SET VARIABLE bonus_files = $bonus_files",
    # start of D+1 in the program zone, as an instant
    "SET VARIABLE cutoff = timezone(getvariable('program_tz'), (getvariable('run_day') + 1)::TIMESTAMP)",
)

#: The validated tables, in dependency order: (name, SELECT). A row is kept when it breaks no rule
#: (a rule on a null value is not broken, as in `sources.validation`), is the first valid row of its
#: key in file order, and is visible at the cutoff.
SQL_VALIDATED: tuple[tuple[str, str], ...] = (
    (
        "customers_kept",
        """
        SELECT customer_id, registered_at, gender, email_subscribed, timezone
        FROM read_parquet(getvariable('customers_files'), filename = true, file_row_number = true)
        WHERE customer_id IS NOT NULL
          AND registered_at IS NOT NULL
          AND coalesce(gender IN ('F', 'M'), true)
          AND coalesce(timezone IN (SELECT name FROM pg_timezone_names()), true)
          AND registered_at <= getvariable('run_now')
        QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY filename, file_row_number) = 1
            AND registered_at < getvariable('cutoff')
        """,
    ),
    (
        "checks_kept",
        """
        SELECT customer_id, ts
        FROM read_parquet(getvariable('checks_files'), filename = true, file_row_number = true)
        WHERE check_id IS NOT NULL
          AND customer_id IS NOT NULL
          AND ts IS NOT NULL
          AND total IS NOT NULL
          AND total >= 0
          AND coalesce(discount >= 0, true)
          AND coalesce(bonus_spent >= 0, true)
          AND ts <= getvariable('run_now')
          AND customer_id IN (SELECT customer_id FROM customers_kept)
        QUALIFY row_number() OVER (PARTITION BY check_id ORDER BY filename, file_row_number) = 1
            AND ts < getvariable('cutoff')
            AND (loaded_at IS NULL OR loaded_at < getvariable('cutoff'))
        """,
    ),
    (
        "bonus_kept",
        """
        SELECT customer_id, ts, kind, amount
        FROM read_parquet(getvariable('bonus_files'), filename = true, file_row_number = true)
        WHERE txn_id IS NOT NULL
          AND customer_id IS NOT NULL
          AND ts IS NOT NULL
          AND kind IN ('accrual', 'redemption', 'expiry')
          AND amount IS NOT NULL
          AND ts <= getvariable('run_now')
          AND customer_id IN (SELECT customer_id FROM customers_kept)
        QUALIFY row_number() OVER (PARTITION BY txn_id ORDER BY filename, file_row_number) = 1
            AND ts < getvariable('cutoff')
        """,
    ),
)

#: Seed 004 (`catalog/segments/women_q1_email_bonus.yaml`) written by hand: women whose last check's
#: local day is in [2025-01-01, 2025-04-01], email subscribed, accruals up to D above 1000. Local days
#: use the customer's zone, else the program's; events on a local day after D do not count.
SQL_SEGMENT = """
WITH cust AS (
    SELECT customer_id, gender, email_subscribed,
           coalesce(timezone, getvariable('program_tz')) AS tz
    FROM customers_kept
),
last_check AS (
    SELECT customer_id, max(local_day) AS last_check_date
    FROM (
        SELECT k.customer_id, timezone(c.tz, k.ts)::DATE AS local_day
        FROM checks_kept AS k JOIN cust AS c USING (customer_id)
    )
    WHERE local_day <= getvariable('run_day')
    GROUP BY customer_id
),
accrued AS (
    SELECT b.customer_id, sum(b.amount) AS bonuses_accrued
    FROM bonus_kept AS b JOIN cust AS c USING (customer_id)
    WHERE b.kind = 'accrual' AND timezone(c.tz, b.ts)::DATE <= getvariable('run_day')
    GROUP BY b.customer_id
),
members AS (
    SELECT c.customer_id
    FROM cust AS c
    JOIN last_check AS l USING (customer_id)
    LEFT JOIN accrued AS a USING (customer_id)
    WHERE c.gender = 'F'
      AND l.last_check_date BETWEEN DATE '2025-01-01' AND DATE '2025-04-01'
      AND c.email_subscribed
      AND coalesce(a.bonuses_accrued, 0) > 1000
)
SELECT count(*) AS members,
       coalesce(string_agg(customer_id::VARCHAR, ',' ORDER BY customer_id), '') AS ids
FROM members
"""


# ---------------------------------------------------------------------------------------------------
# Children: one engine, one repetition, one process
# ---------------------------------------------------------------------------------------------------


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far, in bytes.

    Linux: `VmHWM` of `/proc/self/status`, the high-water mark of this program's own address space.
    Not `ru_maxrss`: Linux carries it over from the parent across fork + exec, so a child's figure
    would never drop below the parent's size at spawn time (measured: a child of a 1 GB parent reports
    1 GB). Elsewhere `ru_maxrss` (KiB on Linux, bytes on macOS) is the best there is.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def ids_digest(joined_ids: str) -> str:
    """SHA-256 of the sorted member ids joined by commas: equal digests mean equal member lists."""
    return hashlib.sha256(joined_ids.encode("ascii")).hexdigest()


def table_files(data_dir: Path, table: str) -> list[Path]:
    """The Parquet file(s) of `table`: `NAME.parquet` or the parts of folder `NAME/` (as `readers.locate`)."""
    single = data_dir / f"{table}.parquet"
    if single.is_file():
        return [single]
    parts = sorted((data_dir / table).glob("*.parquet"))
    if not parts:
        raise FileNotFoundError(f"{data_dir}: no {table}.parquet and no folder {table}/ of Parquet parts")
    return parts


def run_polars(data_dir: Path, run_date: date, now: datetime, catalog: Path, segment_id: str) -> dict[str, Any]:
    """The pipeline's Polars path for one date: load_snapshot → compute_features → evaluate_segments.

    Only the tables the segment's features read are read from disk; the others are given to
    `load_snapshot` empty, so validation still runs in the pipeline's order at no cost.
    """
    import polars as pl

    from loyalty_assets.config.catalog import load_program
    from loyalty_assets.config.segments import load_segments
    from loyalty_assets.sources.frames import AsOf, empty_frame
    from loyalty_assets.sources.readers import RawTable, read_file_table
    from loyalty_assets.sources.snapshot import load_snapshot
    from loyalty_assets.transforms.audience import closure
    from loyalty_assets.transforms.features import compute_features, required_features
    from loyalty_assets.transforms.segments import evaluate_segments

    program = load_program(catalog)
    segments, errors = load_segments(catalog / "segments")
    if segment_id not in segments:
        raise SystemExit(f"segment {segment_id!r} not loadable from {catalog}: {errors}")
    needed = closure(segments, segment_id)
    specs = required_features([s.filter for s in needed.values()])
    tables = tables_for_specs(specs)
    as_of = AsOf(date=run_date, program_tz=program.timezone)

    def read(table: str) -> RawTable:
        if table in tables:
            return read_file_table(data_dir, table)
        return RawTable(frame=empty_frame(table), origin=f"{table} (not read: no feature uses it)")

    baseline = peak_rss_bytes()
    c0, t0 = time.process_time(), time.perf_counter()
    snapshot = load_snapshot(read, as_of, now=now)
    t1 = time.perf_counter()
    rss_read = peak_rss_bytes()
    features = compute_features(snapshot.frames, as_of, specs)
    members = evaluate_segments(needed, features)[segment_id]
    c2, t2 = time.process_time(), time.perf_counter()
    rss_total = peak_rss_bytes()
    ids = members.get_column("customer_id").cast(pl.String).str.join(",").item() or ""
    in_memory = sum(getattr(snapshot.frames, t).estimated_size() for t in tables)
    return {
        "engine": POLARS,
        "threads": pl.thread_pool_size(),
        "seconds": {READ: t1 - t0, FEATURES: t2 - t1, TOTAL: t2 - t0},
        "cpu_seconds": c2 - c0,
        "peak_rss": {READ: rss_read, FEATURES: rss_total, TOTAL: rss_total},
        "baseline_rss": baseline,
        "members": members.height,
        "ids_sha256": ids_digest(ids),
        "cutoff": as_of.cutoff.isoformat(),
        "tables_read": sorted(tables),
        "validated_bytes": in_memory,
        "features_rows": features.height,
    }


#: Source family of a feature spec → the tables it reads (`customers` is always read).
_SOURCE_TABLES: dict[str, tuple[str, ...]] = {
    "purchases": ("checks",),
    "bonuses": ("bonus_transactions",),
    "attributes": ("customer_attributes",),
    "favourites": ("favourite_categories",),
    "communications": ("communications",),
    "site_visits": ("site_visits",),
    "customer": (),
}


def tables_for_specs(specs: Iterable[FeatureSpec]) -> set[str]:
    """Tables the features of `specs` read: check lines only for line-level specs, categories for rollups."""
    specs = list(specs)
    tables = {"customers"} | {t for s in specs for t in _SOURCE_TABLES[s.source]}
    if any(s.source == "purchases" and (s.category or s.product) for s in specs) or any(
        s.field == "average_items_per_check" for s in specs
    ):
        tables.add("check_items")
    if any(s.category for s in specs):
        tables.add("categories")
    return tables


def run_duckdb(
    data_dir: Path, run_date: date, now: datetime, program_tz: str, threads: int, *, one_query: bool
) -> dict[str, Any]:
    """The segment as hand-written SQL over the Parquet files (temp tables, or views for one query)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = $threads", {"threads": threads})
    params: dict[str, object] = {
        "run_day": run_date,
        "program_tz": program_tz,
        "run_now": now,
        "customers_files": [str(p) for p in table_files(data_dir, "customers")],
        "checks_files": [str(p) for p in table_files(data_dir, "checks")],
        "bonus_files": [str(p) for p in table_files(data_dir, "bonus_transactions")],
    }
    for statement in SQL_SETUP:
        names = [name for name in params if f"${name}" in statement]
        con.execute(statement, {name: params[name] for name in names})
    create = "CREATE TEMP VIEW " if one_query else "CREATE TEMP TABLE "
    baseline = peak_rss_bytes()
    c0, t0 = time.process_time(), time.perf_counter()
    for name, select in SQL_VALIDATED:
        con.execute(create + name + " AS " + select)
    t1 = time.perf_counter()
    rss_read = peak_rss_bytes()
    row = con.execute(SQL_SEGMENT).fetchone()
    c2, t2 = time.process_time(), time.perf_counter()
    rss_total = peak_rss_bytes()
    assert row is not None
    members, ids = int(row[0]), str(row[1])
    threads_used = con.execute("SELECT current_setting('threads')").fetchone()
    cutoff = con.execute("SELECT getvariable('cutoff')").fetchone()
    assert threads_used is not None and cutoff is not None
    if one_query:
        seconds = {TOTAL: t2 - t0}
        peaks = {TOTAL: rss_total}
    else:
        seconds = {READ: t1 - t0, FEATURES: t2 - t1, TOTAL: t2 - t0}
        peaks = {READ: rss_read, FEATURES: rss_total, TOTAL: rss_total}
    return {
        "engine": DUCKDB_ONE_QUERY if one_query else DUCKDB,
        "threads": int(threads_used[0]),
        "seconds": seconds,
        "cpu_seconds": c2 - c0,
        "peak_rss": peaks,
        "baseline_rss": baseline,
        "members": members,
        "ids_sha256": ids_digest(ids),
        "cutoff": cutoff[0].astimezone(UTC).isoformat(),
        "tables_read": sorted(SQL_TABLES),
    }


def _child_main(args: argparse.Namespace) -> int:
    """Run one engine once and print its result on one marked line (the parent parses it)."""
    now = datetime.fromisoformat(args.now)
    if args.child == POLARS:
        result = run_polars(args.data_dir, args.date, now, args.catalog, args.segment)
    else:
        from loyalty_assets.config.catalog import load_program

        tz = load_program(args.catalog).timezone
        result = run_duckdb(args.data_dir, args.date, now, tz, args.threads, one_query=args.child != DUCKDB)
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------------
# Parent: data sets, subprocesses, the table
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSet:
    """One scale's data folder and the facts the table reports about it."""

    scale: int
    path: Path
    customers: int
    checks: int
    check_lines: int
    input_bytes: int  # Parquet bytes of the tables the engines read
    total_bytes: int  # Parquet bytes of all nine tables


@dataclass
class EngineRuns:
    """Every repetition of one engine at one scale."""

    engine: str
    results: list[dict[str, Any]] = field(default_factory=list)

    def median_seconds(self, step: str) -> float | None:
        values = [r["seconds"][step] for r in self.results if step in r["seconds"]]
        return statistics.median(values) if values else None

    def peak_rss(self, step: str) -> int | None:
        values = [r["peak_rss"][step] for r in self.results if step in r["peak_rss"]]
        return max(values) if values else None


@dataclass
class ScaleResult:
    data: DataSet
    runs: dict[str, EngineRuns]
    mismatches: list[str]


def _parquet_rows(files: Sequence[Path]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def ensure_data(scale: int, folder: Path, *, generate_if_absent: bool = True) -> DataSet:
    """The scale's data set, generated with the benchmark's parameters when `folder` has none yet."""
    from loyalty_assets.sample_data import existing_customers_file, generate

    if existing_customers_file(folder) is None:
        if not generate_if_absent:
            raise FileNotFoundError(f"no sample data in {folder}")
        print(f"generating {scale:,} customers into {folder} …", file=sys.stderr, flush=True)
        generate(folder, customers=scale, days=DATA_DAYS, end_date=DATA_END, seed=DATA_SEED, progress=False)
    all_files = sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith("."))
    input_files = [p for t in SQL_TABLES for p in table_files(folder, t)]
    return DataSet(
        scale=scale,
        path=folder,
        customers=_parquet_rows(table_files(folder, "customers")),
        checks=_parquet_rows(table_files(folder, "checks")),
        check_lines=_parquet_rows(table_files(folder, "check_items")),
        input_bytes=sum(p.stat().st_size for p in input_files),
        total_bytes=sum(p.stat().st_size for p in all_files),
    )


#: Runs one child: (engine, data set, run date, now, threads, catalog, segment) → its result dict.
ChildRunner = Callable[[str, Path, date, datetime, int, Path, str], dict[str, Any]]


def run_child(
    engine: str, data_dir: Path, run_date: date, now: datetime, threads: int, catalog: Path, segment: str
) -> dict[str, Any]:
    """Run one engine once in a fresh interpreter, with the thread count in its environment."""
    env = {**os.environ, "POLARS_MAX_THREADS": str(threads)}
    command = [
        sys.executable,
        "-m",
        "loyalty_assets.bench",
        "--child",
        engine,
        "--data-dir",
        str(data_dir),
        "--date",
        run_date.isoformat(),
        "--now",
        now.isoformat(),
        "--threads",
        str(threads),
        "--catalog",
        str(catalog),
        "--segment",
        segment,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, cwd=PROJECT_ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{engine} child failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix(RESULT_MARK))
    return result


def compare(runs: dict[str, EngineRuns]) -> list[str]:
    """Disagreements between engines (and repetitions): member count, id digest, cutoff, threads.

    Every result is compared with the first Polars result, so a single diverging run shows up.
    """
    results = [r for er in runs.values() for r in er.results]
    if not results:
        return ["no results"]
    reference = runs[POLARS].results[0] if runs.get(POLARS) and runs[POLARS].results else results[0]
    problems: list[str] = []
    for r in results:
        for key in ("members", "ids_sha256", "cutoff", "threads"):
            if r[key] != reference[key]:
                problems.append(f"{r['engine']}: {key} = {r[key]!r}, but {reference['engine']} gave {reference[key]!r}")
    return problems


def run_scale(
    data: DataSet,
    *,
    repeat: int,
    threads: int,
    run_date: date = RUN_DATE,
    now: datetime | None = None,
    catalog: Path = DEFAULT_CATALOG,
    segment: str = DEFAULT_SEGMENT,
    engines: Sequence[str] = ENGINES,
    runner: ChildRunner | None = None,
) -> ScaleResult:
    """All engines `repeat` times at one scale, interleaved (A B C A B C …) so drift hits all alike.

    `runner` defaults to `run_child` (looked up at call time, so a test can replace it).
    """
    now = now or datetime.now(UTC)
    runner = runner or run_child
    runs = {e: EngineRuns(e) for e in engines}
    for rep in range(repeat):
        for engine in engines:
            result = runner(engine, data.path, run_date, now, threads, catalog, segment)
            runs[engine].results.append(result)
            steps = ", ".join(f"{k} {v:.2f} s" for k, v in result["seconds"].items())
            print(
                f"  {data.scale:>9,} · {engine:<18} · rep {rep + 1}/{repeat}: {steps}; "
                f"peak {result['peak_rss'][TOTAL] / _MB:,.0f} MB; {result['members']:,} members",
                file=sys.stderr,
                flush=True,
            )
    return ScaleResult(data=data, runs=runs, mismatches=compare(runs))


def _fmt_seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if value < 10 else f"{value:.2f}"


def _fmt_mb(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value / _MB:,.1f}" if value < 10 * _MB else f"{value / _MB:,.0f}"


def table_rows(result: ScaleResult) -> list[list[str]]:
    """The scale's rows, grouped by step; the ratio (Polars ÷ that DuckDB variant) sits on DuckDB rows."""
    data, runs = result.data, result.runs
    polars = runs.get(POLARS)
    rows: list[list[str]] = []
    for step in (READ, FEATURES, TOTAL):
        for engine, er in runs.items():
            seconds = er.median_seconds(step)
            if seconds is None:
                continue
            ratio = "—"
            if engine != POLARS and polars is not None:
                mine = polars.median_seconds(step)
                if mine is not None and seconds > 0:
                    ratio = f"{mine / seconds:.2f}"
            members = sorted({r["members"] for r in er.results})
            rows.append(
                [
                    f"{data.scale:,}",
                    f"{data.check_lines:,}",
                    f"{data.input_bytes / _MB:,.1f}",
                    engine,
                    step,
                    _fmt_seconds(seconds),
                    _fmt_mb(er.peak_rss(step)),
                    ratio,
                    "/".join(f"{m:,}" for m in members),
                ]
            )
    return rows


def machine_facts(threads: int) -> str:
    """One line that makes the figures interpretable on another machine."""
    mem = ""
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        mem = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1024**3:.0f} GiB RAM"
    return (
        f"Machine: {os.cpu_count()} cores{mem}, {platform.system()} {platform.machine()}; "
        f"threads per engine: {threads} (POLARS_MAX_THREADS = DuckDB threads); "
        f"Python {platform.python_version()}, Polars {version('polars')}, DuckDB {version('duckdb')}, "
        f"pyarrow {version('pyarrow')}."
    )


def render_markdown(results: Sequence[ScaleResult], *, threads: int, repeat: int, run_date: date) -> str:
    """The results table plus the facts needed to read it."""
    lines = [
        f"# Segment benchmark: features + `{DEFAULT_SEGMENT}`, Polars vs DuckDB",
        "",
        f"Run date {run_date.isoformat()}; sample data {DATA_DAYS} days to {DATA_END.isoformat()}, seed "
        f"{DATA_SEED}; median of {repeat} run(s), each engine in its own process; peak RSS = max over runs "
        "of the process peak at the end of the step.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---:" if c not in ("engine", "step") else "---" for c in COLUMNS) + "|",
    ]
    for result in results:
        lines += ["| " + " | ".join(row) + " |" for row in table_rows(result)]
    lines += [
        "",
        "- ratio polars/duckdb: Polars' median for the step ÷ that DuckDB variant's median (below 1: Polars faster).",
        f"- input Parquet: the tables both engines read ({', '.join(SQL_TABLES)}); check lines are counted "
        "but not read (the segment needs no line-level feature).",
    ]
    for result in results:
        d = result.data
        polars = result.runs.get(POLARS)
        extra = ""
        if polars and polars.results:
            extra = f"; validated tables in Polars memory {_fmt_mb(polars.results[0]['validated_bytes'])} MB"
        baselines = ", ".join(
            f"{engine} {_fmt_mb(max(r['baseline_rss'] for r in er.results))} MB"
            for engine, er in result.runs.items()
            if er.results
        )
        cpu = ", ".join(
            f"{engine} {statistics.median(r['cpu_seconds'] for r in er.results):.2f}"
            for engine, er in result.runs.items()
            if er.results and all("cpu_seconds" in r for r in er.results)
        )
        lines.append(
            f"- {d.scale:,}: {d.customers:,} customer rows, {d.checks:,} checks, all nine tables "
            f"{_fmt_mb(d.total_bytes)} MB Parquet{extra}; RSS of each child before its first step "
            f"(interpreter + engine): {baselines}; CPU seconds of the whole computation (median, user + "
            f"system, all threads; less sensitive than wall time to other load on the machine): {cpu}; "
            "agreement: "
            + ("MISMATCH" if result.mismatches else "all runs give the same members (count and id digest)")
        )
    lines += ["", machine_facts(threads), ""]
    return "\n".join(lines)


def parse_scales(text: str) -> list[int]:
    scales = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if not scales or any(s < 1 for s in scales):
        raise argparse.ArgumentTypeError(f"expected positive customer counts, got {text!r}")
    return scales


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loyalty_assets.bench",
        description="Features + seed 004 segment: Polars pipeline vs hand-written DuckDB SQL.",
    )
    parser.add_argument(
        "--scales",
        type=parse_scales,
        default=list(DEFAULT_SCALES),
        help="customer counts, comma-separated (default: 10000,100000,1000000)",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=DEFAULT_DATA_ROOT,
        help="data sets live in DATA_ROOT/<scale>, generated when absent (default: .loyalty/bench/data)",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="an existing data folder for the single scale given"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per engine and scale (default: 3)")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="threads per engine (default: all cores)"
    )
    parser.add_argument("--date", type=date.fromisoformat, default=RUN_DATE, help="run date D")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown results file")
    parser.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG, help=argparse.SUPPRESS)
    parser.add_argument("--segment", default=DEFAULT_SEGMENT, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=ENGINES, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--now", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is None and args.data_dir is not None and len(args.scales) != 1:
        parser.error("--data-dir names one folder: give exactly one scale with it")
    if args.repeat < 1 or args.threads < 1:
        parser.error("--repeat and --threads must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI; exit code 1 when the engines disagree on the members."""
    args = _parse_args(argv)
    if args.child is not None:
        return _child_main(args)
    now = datetime.now(UTC)
    print(machine_facts(args.threads), file=sys.stderr, flush=True)
    results: list[ScaleResult] = []
    for scale in args.scales:
        folder = args.data_dir if args.data_dir is not None else args.data_root / str(scale)
        data = ensure_data(scale, folder)
        results.append(
            run_scale(
                data,
                repeat=args.repeat,
                threads=args.threads,
                run_date=args.date,
                now=now,
                catalog=args.catalog,
                segment=args.segment,
            )
        )
    markdown = render_markdown(results, threads=args.threads, repeat=args.repeat, run_date=args.date)
    print(markdown)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown, encoding="utf-8")
    print(f"written to {args.out}", file=sys.stderr)
    mismatches = [f"{r.data.scale:,}: {m}" for r in results for m in r.mismatches]
    if mismatches:
        banner = "!" * 80
        message = "\n".join([banner, "MISMATCH: the engines disagree on the segment's members", *mismatches, banner])
        print(message)
        print(message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
