"""Benchmark: the whole daily pipeline, stage by stage, each stage beside a peer where one exists.

Why it exists: issue 9 sets targets for the day as a whole — rendering ≥ 500k messages/s per core;
warehouse loads ≥ 200k rows/s (≥ 50k rows/s for outbox rows with bodies) on SQLite and PostgreSQL;
the 1M-customer heavy day (2025-06-26) in ≤ 60 s wall on 2 cores; the 5,000-customer day in ≤ 5 s.
The per-step benchmarks (`bench`, `bench_io`, `bench_render`) measure synthetic inputs; this one
measures the real chain on the sample data, so a stage that is fast alone but slow in the day (or
the Dagster run around it) shows up. It measures honestly: a missed target is reported as missed.

    python -m loyalty_assets.bench_pipeline [--scales 10000,100000,1000000] [--with-10m]
        [--warehouse sqlite|postgresql|both] [--data-dir DIR] [--date 2025-06-26]

Per scale and warehouse, with the run date D (default the heavy sample day 2025-06-26):

1. `pipeline` child (one process): D−1 runs first as the first date on an empty warehouse and
   state (as `loyalty run` does on an empty store; its total is reported), then D is measured stage
   by stage with D−1's state: `read+validate` (`load_snapshot` over the Parquet files),
   `run_day` split by timing wrappers put around the module globals `day_features` and
   `evaluate_segments` of `transforms.campaign_day` (this process only; `run_day` itself is not
   edited) into `features`, `segments` and `campaigns` (the rest: entrants, journeys, accruals,
   messages, the next state); `render` is the time spent inside the compiled templates' `render`
   (a `TemplateRenderer` subclass handed to `run_day` as `renderer=`), so it is part of
   `campaigns`. Then the writes the daily asset does: `write_membership` + `export_audiences` per
   segment, `write_campaign_day` per campaign (per table: the time inside `Warehouse.replace`, commits
   excluded; the group's total includes them) and the `loyalty_state` Parquet folder. Peak RSS of a
   stage is the process's high-water mark (`VmHWM`) at the end of the stage, so it includes what
   earlier stages still hold. Source quarantine rows (written by the Dagster source assets) are not
   written by this child.
2. Render peer: Jinja2's sandbox (what the pipeline used before the compiler) on the same variables:
   the first `--sandbox-rows` rows of every render call, after the clock; each call's sandbox time is
   scaled by rows / sampled rows, so its seconds are an EXTRAPOLATION (labelled so) unless every row
   was sampled. The compiled output is compared with the sandbox's on the sample.
3. `peer-write` child: the same frames the warehouse got (with their scope columns), into a fresh
   database by the plain driver — sqlite3 `executemany`, psycopg `COPY … FROM STDIN` — through
   `bench_io`'s peer writers; CPU s of the client, plus the PostgreSQL backend's as server CPU s.
4. Whole day through Dagster: `loyalty run --date D−1`, then `loyalty run --date D`, each in its own
   process with `LOYALTY_DATA_DIR`, `LOYALTY_DATABASE_URL`, `LOYALTY_STORAGE_DIR` and `DAGSTER_HOME`
   pointed at fresh places. CPU s come from `os.wait4` on the process (user + system of it and of
   any descendants it waited for); peak RSS is the largest sum of RSS over the process tree, polled
   with psutil every 50 ms (a peak shorter than that can be missed). Rows = an independent
   `SELECT COUNT(*)` per warehouse table for that date after the run. Each step's wall seconds are
   read back from the run's Dagster storage: the daily job is more than `loyalty_day` (results,
   ledger, summary and source-check assets), and this says where a whole day's time goes.

Once per scale, the features + segment peer of `bench`: the seed 004 segment through the project's
Polars path and through the hand-written DuckDB SQL, each in its own process (`bench.run_scale`).

Every child is its own process so its peaks are its own; CPU seconds stand beside wall seconds
because the machine may be shared. Output: a Markdown report on stdout and in
`bench/results/pipeline-latest.md` (git-ignored), with the raw results as JSON beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from loyalty_assets.bench import PROJECT_ROOT, ensure_data, parse_scales, peak_rss_bytes
from loyalty_assets.bench_io import DEFAULT_PG_URL, fresh_database
from loyalty_assets.transforms.template_compiler import CompiledTemplate
from loyalty_assets.transforms.templates import TemplateRenderer

if TYPE_CHECKING:
    import polars as pl

    from loyalty_assets.warehouse.warehouse import Warehouse

DEFAULT_OUT = PROJECT_ROOT / "bench" / "results" / "pipeline-latest.md"
DEFAULT_DATA_ROOT = PROJECT_ROOT / ".loyalty" / "bench" / "data"
DEFAULT_SCALES = (10_000, 100_000, 1_000_000)
TEN_MILLION = 10_000_000
RUN_DATE = date(2025, 6, 26)
WAREHOUSES = ("sqlite", "postgresql")
SANDBOX_ROWS = 1_000  # rows of each render call the Jinja2 peer renders
MARK = "BENCH_PIPELINE_RESULT "
_MB = 2**20

#: Issue 9's targets.
RENDER_TARGET = 500_000  # messages/s per core
LOAD_TARGET = 200_000  # rows/s, narrow tables
LOAD_BODY_TARGET = 50_000  # rows/s, message_outbox (bodies)
HEAVY_DAY_TARGET_S = 60.0  # 1M customers, whole run, wall
SMALL_DAY_TARGET_S = 5.0  # 5,000 customers, whole run, wall
BODY_TABLES = ("message_outbox",)
STEPS_SHOWN = 5  # a whole-day run's longest Dagster steps shown by name
BULK_ROWS = 50_000  # load targets are judged on tables of at least this many rows for the date


# ---------------------------------------------------------------------------------------------------
# Measuring inside one process
# ---------------------------------------------------------------------------------------------------


@dataclass
class Clock:
    """Stages of one process, in order: wall and CPU seconds, rows, and `VmHWM` at the stage's end."""

    stages: list[dict[str, Any]] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str, **facts: Any) -> Iterator[dict[str, Any]]:
        record: dict[str, Any] = {"stage": name, **facts}
        cpu, wall = time.process_time(), time.perf_counter()
        yield record
        record["wall_s"] = time.perf_counter() - wall
        record["cpu_s"] = time.process_time() - cpu
        record["peak_rss_mb"] = peak_rss_bytes() / _MB
        self.stages.append(record)


@contextmanager
def timed_global(module: ModuleType, name: str, into: dict[str, Any]) -> Iterator[None]:
    """Time every call of `module.name` (a function another function of `module` calls by name).

    How `run_day` is split without editing it: it calls `day_features` and `evaluate_segments` as
    module globals, so replacing them in this process times exactly those steps.
    """
    original = getattr(module, name)
    into.update(wall_s=0.0, cpu_s=0.0, calls=0)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        cpu, wall = time.process_time(), time.perf_counter()
        out = original(*args, **kwargs)
        into["wall_s"] += time.perf_counter() - wall
        into["cpu_s"] += time.process_time() - cpu
        into["calls"] += 1
        into["peak_rss_mb"] = peak_rss_bytes() / _MB
        return out

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


@dataclass
class RenderCall:
    rows: int
    wall_s: float
    cpu_s: float
    sample: pl.DataFrame


@dataclass
class TimedTemplate(CompiledTemplate):
    """A compiled template that records the time of each `render` and the first rows it rendered."""

    sample_rows: int = SANDBOX_ROWS
    calls: list[RenderCall] = field(default_factory=list)

    def render(self, variables: pl.DataFrame) -> pl.DataFrame:
        cpu, wall = time.process_time(), time.perf_counter()
        out = super().render(variables)
        wall_s, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
        self.calls.append(RenderCall(variables.height, wall_s, cpu_s, variables.head(self.sample_rows)))
        return out


class TimingRenderer(TemplateRenderer):
    """The catalog's renderer whose compiled templates time themselves (`run_day(..., renderer=)`)."""

    def __init__(self, templates_dir: Path, sample_rows: int = SANDBOX_ROWS) -> None:
        super().__init__(templates_dir)
        self.sample_rows = sample_rows
        self.timed: dict[int, TimedTemplate] = {}

    def compiled_file(self, name: str) -> CompiledTemplate:
        return self._timed(super().compiled_file(name))

    def compiled_text(self, source: str) -> CompiledTemplate:
        return self._timed(super().compiled_text(source))

    def _timed(self, template: CompiledTemplate) -> TimedTemplate:
        found = self.timed.get(id(template))
        if found is None:
            t = template
            found = TimedTemplate(t.name, t.sandbox, t.autoescape, t.plan, t.reason, sample_rows=self.sample_rows)
            self.timed[id(template)] = found
        return found

    def reset(self) -> None:
        for template in self.timed.values():
            template.calls.clear()

    def totals(self) -> dict[str, float]:
        calls = [c for t in self.timed.values() for c in t.calls]
        return {
            "wall_s": sum(c.wall_s for c in calls),
            "cpu_s": sum(c.cpu_s for c in calls),
            "rows": sum(c.rows for c in calls),
            "calls": len(calls),
        }


def sandbox_peer(renderer: TimingRenderer) -> dict[str, Any]:
    """Jinja2's sandbox on the sampled rows of every render call, scaled per call to all its rows.

    The compiled form renders the same sample too (not timed), and the two outputs are compared.
    """
    from loyalty_assets.transforms.template_compiler import variables_to_dicts

    sampled = rows = differing = 0
    sample_wall = sample_cpu = est_wall = est_cpu = 0.0
    for template in renderer.timed.values():
        for call in template.calls:
            if call.sample.height == 0:
                continue
            texts: list[tuple[str | None, str | None]] = []
            cpu, wall = time.process_time(), time.perf_counter()
            for context in variables_to_dicts(call.sample):
                try:
                    texts.append((template.sandbox.render(**context), None))
                except Exception as exc:  # a row's failure is that row's error, as in the pipeline
                    texts.append((None, f"{type(exc).__name__}: {exc}"))
            wall_s, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
            scale = call.rows / call.sample.height
            sample_wall, sample_cpu = sample_wall + wall_s, sample_cpu + cpu_s
            est_wall, est_cpu = est_wall + wall_s * scale, est_cpu + cpu_s * scale
            sampled, rows = sampled + call.sample.height, rows + call.rows
            compiled = CompiledTemplate.render(template, call.sample)
            mine = list(zip(compiled.get_column("text").to_list(), compiled.get_column("error").to_list(), strict=True))
            differing += sum(a != b for a, b in zip(mine, texts, strict=True))
    return {
        "rows": rows,
        "sampled_rows": sampled,
        "sample_wall_s": sample_wall,
        "sample_cpu_s": sample_cpu,
        "wall_s": est_wall,
        "cpu_s": est_cpu,
        "extrapolated": sampled < rows,
        "differing_rows": differing,
    }


@contextmanager
def timed_replace(
    wh: Warehouse, per_table: dict[str, dict[str, Any]], captured: dict[str, list[Any]]
) -> Iterator[None]:
    """Time `wh.replace` per table (inside the caller's transaction) and keep each frame with its scope."""
    original = wh.replace

    def replace(table_name: str, frame: pl.DataFrame, scope: Any, *, conn: Any = None) -> int:
        if conn is None:  # `replace` opens its own transaction and calls itself with it: count that call
            return original(table_name, frame, scope)
        cpu, wall = time.process_time(), time.perf_counter()
        n = original(table_name, frame, scope, conn=conn)
        record = per_table.setdefault(table_name, {"rows": 0, "wall_s": 0.0, "cpu_s": 0.0, "calls": 0})
        record["rows"] += frame.height
        record["wall_s"] += time.perf_counter() - wall
        record["cpu_s"] += time.process_time() - cpu
        record["calls"] += 1
        captured.setdefault(table_name, []).append((frame, dict(scope)))
        return n

    wh.replace = replace  # type: ignore[method-assign]
    try:
        yield
    finally:
        wh.replace = original  # type: ignore[method-assign]


# ---------------------------------------------------------------------------------------------------
# The pipeline child
# ---------------------------------------------------------------------------------------------------


def write_day(wh: Warehouse, catalog: Any, day: date, result: Any, storage: Path, clock: Clock) -> dict[str, int]:
    """The daily asset's writes for `day` (segments, campaigns, state), one clock stage per group."""
    from loyalty_assets.warehouse.audiences import export_audiences
    from loyalty_assets.warehouse.campaign_rows import write_campaign_day
    from loyalty_assets.warehouse.history import state_folder, write_folder
    from loyalty_assets.warehouse.membership import write_membership

    written: dict[str, int] = {}
    with clock.stage("write segments (membership + audiences)") as record:
        members = 0
        for sid in sorted(catalog.segments):
            members += write_membership(wh, sid, day, result.members[sid])
            export_audiences(
                wh,
                result.members[sid],
                labels=catalog.segments[sid].audiences,
                segment_id=sid,
                partition_date=day,
                exported_at=datetime.now(UTC),
            )
        record["rows"] = members
    with clock.stage("write campaign rows (all tables, commits included)") as record:
        for campaign in result.campaigns:
            for table, n in (write_campaign_day(wh, day, campaign) or {}).items():
                written[table] = written.get(table, 0) + n
        record["rows"] = sum(written.values())
    with clock.stage("write loyalty_state (Parquet)") as record:
        frames = result.state.to_frames()
        write_folder(state_folder(storage, day), frames)
        record["rows"] = sum(f.height for f in frames.values())
    return written


def pipeline_child(data_dir: Path, url: str, day: date, work: Path, sandbox_rows: int) -> dict[str, Any]:
    """D−1 as the first date, then D stage by stage (see the module docstring); frames kept in `work`."""
    import polars as pl

    from loyalty_assets.config.catalog import DEFAULT_CATALOG, load_catalog
    from loyalty_assets.sources.frames import AsOf
    from loyalty_assets.sources.readers import make_reader
    from loyalty_assets.sources.snapshot import load_snapshot
    from loyalty_assets.transforms import campaign_day
    from loyalty_assets.transforms.day_state import DayState
    from loyalty_assets.warehouse.warehouse import Warehouse

    baseline = peak_rss_bytes() / _MB
    catalog = load_catalog(DEFAULT_CATALOG)
    renderer = TimingRenderer(catalog.templates_dir, sandbox_rows)
    wh = Warehouse(url)
    wh.ensure_schema()
    storage = work / "storage"
    tz = catalog.program.timezone

    first = Clock()
    previous = AsOf(day - timedelta(days=1), tz)
    with first.stage("first date D−1 (read, run_day, writes)") as record:
        empty = DayState.empty()
        snapshot = load_snapshot(
            make_reader(data_dir, None, previous.cutoff), previous, own_accruals=empty.own_accruals(previous)
        )
        earlier = campaign_day.run_day(catalog, snapshot.frames, previous, empty, renderer=renderer)
        record["rows"] = sum(write_day(wh, catalog, previous.date, earlier, storage, Clock()).values())
    state = earlier.state
    del snapshot, earlier
    renderer.reset()

    clock = Clock()
    point = AsOf(day, tz)
    with clock.stage("read+validate") as record:
        snapshot = load_snapshot(
            make_reader(data_dir, None, point.cutoff), point, own_accruals=state.own_accruals(point)
        )
        record["rows"] = sum(r.kept.height for r in snapshot.results.values())
        record["quarantined"] = sum(r.quarantine.height for r in snapshot.results.values())
    features: dict[str, Any] = {}
    segments: dict[str, Any] = {}
    with (
        timed_global(campaign_day, "day_features", features),
        timed_global(campaign_day, "evaluate_segments", segments),
        clock.stage("run_day (features+segments+campaigns)") as record,
    ):
        result = campaign_day.run_day(catalog, snapshot.frames, point, state, renderer=renderer)
        messages = sum(c.messages.outbox.height for c in result.campaigns if c.messages is not None)
        record["rows"] = messages
    run_day_stage = clock.stages[-1]
    render = renderer.totals()
    entrants = sum(c.entered.entrants.height for c in result.campaigns)
    accruals = sum(c.accruals.height for c in result.campaigns if c.accruals is not None)
    inner = [
        {"stage": "features", "rows": result.features.height, **features},
        {"stage": "segments", "rows": sum(m.height for m in result.members.values()), **segments},
        {
            "stage": "campaigns (entrants, journeys, accruals, messages incl. render; derived)",
            "rows": entrants,
            "wall_s": run_day_stage["wall_s"] - features["wall_s"] - segments["wall_s"],
            "cpu_s": run_day_stage["cpu_s"] - features["cpu_s"] - segments["cpu_s"],
            "peak_rss_mb": run_day_stage["peak_rss_mb"],
            "entrants": entrants,
            "accruals": accruals,
            "messages": messages,
        },
        {
            "stage": "render",
            "rows": messages,
            "renders": render["rows"],
            "calls": render["calls"],
            "wall_s": render["wall_s"],
            "cpu_s": render["cpu_s"],
            "peak_rss_mb": None,
        },
    ]

    per_table: dict[str, dict[str, Any]] = {}
    captured: dict[str, list[Any]] = {}
    with timed_replace(wh, per_table, captured):
        written = write_day(wh, catalog, day, result, storage, clock)
    total_compute = list(clock.stages)

    # after the clock: the render peer and the frames for the write peers
    peer = sandbox_peer(renderer)
    frames_dir = work / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    for table, parts in captured.items():
        frame = pl.concat(
            [f.with_columns(*(pl.lit(v).alias(k) for k, v in scope.items())) for f, scope in parts],
            how="diagonal_relaxed",
        )
        if frame.height:
            frame.write_parquet(frames_dir / f"{table}.parquet")
    wh.engine.dispose()
    return {
        "baseline_rss_mb": baseline,
        "first_date": first.stages[0],
        "stages": total_compute,
        "inner": inner,
        "render_peer": peer,
        "tables": per_table,
        "written": written,
        "messages": messages,
        "day_wall_s": sum(s["wall_s"] for s in clock.stages),
        "day_cpu_s": sum(s["cpu_s"] for s in clock.stages),
        "peak_rss_mb": peak_rss_bytes() / _MB,
    }


# ---------------------------------------------------------------------------------------------------
# The write peers: the same frames, by the plain driver, into a fresh database
# ---------------------------------------------------------------------------------------------------


def peer_write_child(warehouse: str, frames_dir: Path, pg_url: str) -> dict[str, Any]:
    """sqlite3 `executemany` / psycopg COPY of every captured table (`bench_io`'s peer writers)."""
    import polars as pl
    import sqlalchemy as sa

    from loyalty_assets.bench_io import _libpq, measured, peer_write_postgres, peer_write_sqlite
    from loyalty_assets.warehouse.warehouse import Warehouse

    results: dict[str, Any] = {}
    with fresh_database("sqlite" if warehouse == "sqlite" else "postgres", pg_url) as url:
        wh = Warehouse(url)
        wh.ensure_schema()
        for path in sorted(frames_dir.glob("*.parquet")):
            table = path.stem
            columns = set(wh.table(table).columns.keys())
            frame = pl.read_parquet(path)
            frame = frame.select([c for c in frame.columns if c in columns])
            record: dict[str, Any] = {"rows": frame.height}
            if warehouse == "sqlite":
                with measured(record):
                    peer_write_sqlite(sa.engine.make_url(url).database or "", table, frame)
            else:
                import psycopg

                with psycopg.connect(_libpq(url)) as conn, measured(record, conn.info.backend_pid):
                    peer_write_postgres(conn, table, frame)
            results[table] = record
        wh.engine.dispose()
    return results


# ---------------------------------------------------------------------------------------------------
# The whole day through Dagster: `loyalty run` in its own process
# ---------------------------------------------------------------------------------------------------


def dated_tables(url: str) -> list[str]:
    """Warehouse tables with a `partition_date` column (the ones a date's rows can be counted in)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        return sorted(
            t for t in inspector.get_table_names() if "partition_date" in {c["name"] for c in inspector.get_columns(t)}
        )
    finally:
        engine.dispose()


def count_rows(url: str, day: date) -> dict[str, int]:
    """Rows per dated table for `day`, by `SELECT COUNT(*)` (independent of what the run reported)."""
    from loyalty_assets.warehouse.warehouse import Warehouse

    wh = Warehouse(url)
    try:
        return {t: wh.count(t, {"partition_date": day}) for t in dated_tables(url)}
    finally:
        wh.engine.dispose()


def run_measured(
    command: Sequence[str], env: dict[str, str], log: Path, samples: list[tuple[float, int]] | None = None
) -> dict[str, Any]:
    """Run `command`; wall, CPU of the process (`os.wait4`) and the peak RSS of its tree (psutil, 50 ms).
    `samples` gets every (epoch seconds, tree RSS bytes) polled, for a caller that splits the peak by step."""
    import psutil

    with log.open("w") as out:
        wall = time.perf_counter()
        child = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            try:
                root = psutil.Process(child.pid)
                while not done.is_set():
                    with suppress(psutil.Error):
                        rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                        peak = max(peak, rss)
                        if samples is not None:
                            samples.append((time.time(), rss))
                    done.wait(0.05)
            except psutil.Error:
                return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        wall_s = time.perf_counter() - wall
        done.set()
        sampler.join()
        child.returncode = os.waitstatus_to_exitcode(status)
    return {
        "exit": child.returncode,
        "wall_s": wall_s,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": peak / _MB,
        "output": log.read_text(errors="replace")[-2000:],
    }


def dagster_steps_child(home: Path) -> dict[str, Any]:
    """Each recorded run's partition → its steps' wall seconds, longest first (from the run storage).

    Why: `loyalty run` materialises the whole daily job, not only `loyalty_day` (the chain measured
    in process): the results, ledger and summary assets and the source steps show here by name.
    """
    return {
        partition: sorted(((key, end - start) for key, start, end in steps), key=lambda x: -x[1])
        for partition, steps in dagster_step_times_child(home).items()
    }


def dagster_step_times_child(home: Path) -> dict[str, Any]:
    """Each recorded run's partition → its steps as (key, start, end) epoch seconds, in start order."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(home)
    out: dict[str, Any] = {}
    with dg.DagsterInstance.get() as instance:
        for run in instance.get_runs():
            stats = instance.get_run_step_stats(run.run_id)
            steps = [(s.step_key, s.start_time or 0.0, s.end_time or s.start_time or 0.0) for s in stats]
            out[run.tags.get("dagster/partition", run.run_id)] = sorted(steps, key=lambda x: x[1])
    return out


def whole_day(data_dir: Path, url: str, days: Sequence[date], work: Path) -> list[dict[str, Any]]:
    """`loyalty run --date d` for each of `days` in order, on fresh storage and Dagster home."""
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "LOYALTY_DATA_DIR": str(data_dir),
        "LOYALTY_DATABASE_URL": url,
        "LOYALTY_STORAGE_DIR": str(work / "storage"),
        "DAGSTER_HOME": str(work / "dagster"),
    }
    runs = []
    for d in days:
        command = [sys.executable, "-m", "loyalty_assets.cli", "run", "--date", d.isoformat()]
        run = run_measured(command, env, work / f"run-{d.isoformat()}.log")
        run["date"] = d.isoformat()
        reported = re.search(rf"^{d.isoformat()}\s+\S+\s+([0-9.]+) s", run["output"], re.MULTILINE)
        run["reported_s"] = float(reported.group(1)) if reported else None
        run["counted"] = count_rows(url, d) if run["exit"] == 0 else {}
        runs.append(run)
        print(f"    whole day {d}: exit {run['exit']}, {run['wall_s']:.1f} s wall", file=sys.stderr, flush=True)
        if run["exit"] != 0:
            break
    add_steps(runs, work / "dagster")
    return runs


def add_steps(runs: list[dict[str, Any]], home: Path) -> None:
    """Put each run's Dagster step seconds into it (read in a child: this process stays without Dagster)."""
    try:
        steps = _child(["--child", "dagster-steps", str(home)])
    except RuntimeError as exc:  # the breakdown is extra: a failure to read it must not lose the run
        print(f"    no step breakdown: {str(exc).splitlines()[0]}", file=sys.stderr)
        return
    for run in runs:
        run["steps"] = steps.get(run["date"], [])


# ---------------------------------------------------------------------------------------------------
# Parent
# ---------------------------------------------------------------------------------------------------


def _child(args: list[str]) -> dict[str, Any]:
    """Run this module's child mode in a fresh interpreter and parse its marked result line."""
    command = [sys.executable, "-m", "loyalty_assets.bench_pipeline", *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, check=False)
    lines = [x for x in done.stdout.splitlines() if x.startswith(MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"child {args[:2]} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return dict(json.loads(lines[-1][len(MARK) :]))


@contextmanager
def warehouse_url(warehouse: str, folder: Path, pg_url: str) -> Iterator[str]:
    """A fresh warehouse: a SQLite file in `folder` (kept, so its rows can be counted) or a PostgreSQL schema."""
    if warehouse == "sqlite":
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "warehouse.db"
        path.unlink(missing_ok=True)
        yield f"sqlite:///{path}"
    else:
        with fresh_database("postgres", pg_url) as url:
            yield url


def run_warehouse(
    data_dir: Path, warehouse: str, day: date, work: Path, pg_url: str, sandbox_rows: int, whole_days: int = 2
) -> dict[str, Any]:
    """The pipeline child, its write peers and the whole-day runs on one warehouse kind: the day before
    (the first run, which builds the source store) and the day itself, or the day only with `whole_days=1`."""
    result: dict[str, Any] = {"warehouse": warehouse}
    with warehouse_url(warehouse, work / "pipeline", pg_url) as url:
        print(f"  {warehouse}: pipeline child …", file=sys.stderr, flush=True)
        child = _child(
            ["--child", "pipeline", str(data_dir), url, day.isoformat(), str(work / "pipeline"), str(sandbox_rows)]
        )
        child["counted"] = count_rows(url, day)
        result["pipeline"] = child
    print(f"  {warehouse}: write peers …", file=sys.stderr, flush=True)
    result["peer_write"] = _child(["--child", "peer-write", warehouse, str(work / "pipeline" / "frames"), pg_url])
    print(f"  {warehouse}: whole day through Dagster …", file=sys.stderr, flush=True)
    with warehouse_url(warehouse, work / "whole", pg_url) as url:
        dates = [day - timedelta(days=i) for i in reversed(range(whole_days))]
        result["whole_day"] = whole_day(data_dir, url, dates, work / "whole")
    return result


def segment_peer(data: Any, day: date) -> dict[str, Any]:
    """`bench`'s features + seed 004 segment: the project's Polars path vs hand-written DuckDB, once each."""
    from loyalty_assets.bench import DUCKDB, POLARS, run_scale

    threads = os.cpu_count() or 1
    scale = run_scale(data, repeat=1, threads=threads, run_date=day, engines=(POLARS, DUCKDB))
    return {
        "threads": threads,
        "mismatches": scale.mismatches,
        "runs": {engine: runs.results[0] for engine, runs in scale.runs.items()},
    }


def run_benchmark(
    scales: Sequence[int],
    *,
    warehouses: Sequence[str],
    day: date = RUN_DATE,
    data_root: Path = DEFAULT_DATA_ROOT,
    data_dir: Path | None = None,
    work_dir: Path,
    pg_url: str = DEFAULT_PG_URL,
    sandbox_rows: int = SANDBOX_ROWS,
    with_segment_peer: bool = True,
    whole_days: int = 2,
) -> list[dict[str, Any]]:
    """Every scale × warehouse; the raw results (the report is `render_markdown` of them)."""
    results = []
    for scale in scales:
        folder = data_dir if data_dir is not None else data_root / str(scale)
        data = ensure_data(scale, folder)
        print(f"scale {scale:,} ({data.customers:,} customers, {data.check_lines:,} check lines)", file=sys.stderr)
        entry: dict[str, Any] = {
            "scale": scale,
            "customers": data.customers,
            "check_lines": data.check_lines,
            "parquet_mb": data.total_bytes / _MB,
            "warehouses": [],
        }
        if with_segment_peer:
            print("  features+segment: polars vs duckdb …", file=sys.stderr, flush=True)
            entry["segment_peer"] = segment_peer(data, day)
        for warehouse in warehouses:
            entry["warehouses"].append(
                run_warehouse(
                    data.path, warehouse, day, work_dir / str(scale) / warehouse, pg_url, sandbox_rows, whole_days
                )
            )
        results.append(entry)
    return results


# ---------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------

COLUMNS = ("scale", "warehouse", "stage", "path", "rows", "wall s", "CPU s", "peak RSS (MB)", "rows/s", "rows/CPU s")


def _rate(rows: float | None, seconds: float | None) -> str:
    if rows is None or not seconds:
        return "—"
    return f"{rows / seconds:,.0f}"


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _row(
    scale: int, warehouse: str, stage: str, path: str, rows: float | None, m: dict[str, Any], cpu: float | None = None
) -> list[str]:
    cpu_s = m.get("cpu_s") if cpu is None else cpu
    return [
        f"{scale:,}",
        warehouse,
        stage,
        path,
        "—" if rows is None else f"{rows:,.0f}",
        _num(m.get("wall_s")),
        _num(cpu_s),
        _num(m.get("peak_rss_mb"), 0),
        _rate(rows, m.get("wall_s")),
        _rate(rows, cpu_s),
    ]


def stage_rows(entry: dict[str, Any], wh: dict[str, Any], *, segment_peer: bool = True) -> list[list[str]]:
    """The table rows of one scale × warehouse, stage by stage, each peer under its stage.

    The seed 004 peer reads no warehouse: it is shown once per scale (`segment_peer`), warehouse `—`.
    """
    scale, name = entry["scale"], wh["warehouse"]
    p = wh["pipeline"]
    out: list[list[str]] = []

    def add(stage: str, path: str, rows: float | None, m: dict[str, Any], cpu: float | None = None) -> None:
        out.append(_row(scale, name, stage, path, rows, m, cpu))

    stages = {s["stage"]: s for s in p["stages"]}
    add("read+validate", "project", stages["read+validate"]["rows"], stages["read+validate"])
    inner = {s["stage"].split(" ")[0]: s for s in p["inner"]}
    add("features", "project", inner["features"]["rows"], inner["features"])
    add("segments", "project", inner["segments"]["rows"], inner["segments"])
    peer = entry.get("segment_peer") if segment_peer else None
    if peer:
        for engine, r in peer["runs"].items():
            label = "project (Polars)" if engine == "polars" else "peer: DuckDB SQL"
            for step in ("read+validate", "features+segment"):
                m = {"wall_s": r["seconds"][step], "peak_rss_mb": r["peak_rss"][step] / _MB}
                members = r["members"] if step != "read+validate" else None
                out.append(_row(scale, "—", f"seed 004 {step}", label, members, m))
            total = {
                "wall_s": r["seconds"]["total"],
                "cpu_s": r["cpu_seconds"],
                "peak_rss_mb": r["peak_rss"]["total"] / _MB,
            }
            out.append(_row(scale, "—", "seed 004 total", label, r["members"], total))
    campaigns = inner["campaigns"]
    add(
        "campaigns (derived, incl. render)",
        f"project: {campaigns['messages']:,} messages",
        campaigns["rows"],
        campaigns,
    )
    add("run_day total", "project", p["messages"], stages["run_day (features+segments+campaigns)"])
    render = inner["render"]
    add("render (messages)", f"project (compiled; {render['renders']:,} template renders)", render["rows"], render)
    rp = p["render_peer"]
    label = (
        f"peer: Jinja2 sandbox, EXTRAPOLATED from {rp['sampled_rows']:,} of {rp['rows']:,} template renders"
        if rp["extrapolated"]
        else f"peer: Jinja2 sandbox, all {rp['rows']:,} template renders"
    )
    add("render (messages)", label, render["rows"], rp)
    for table, m in sorted(p["tables"].items()):
        add(f"write {table}", "project (in transaction)", m["rows"], m)
        peer_m = wh["peer_write"].get(table)
        if peer_m:
            driver = "sqlite3 executemany" if name == "sqlite" else "psycopg COPY"
            server = peer_m.get("server_cpu_s")
            extra = f" (+{server:.2f} server CPU s)" if server else ""
            add(f"write {table}", f"peer: {driver}{extra}", peer_m["rows"], peer_m)
    for s in p["stages"]:
        if s["stage"].startswith("write"):
            add(s["stage"], "project", s.get("rows"), s)
    add("day in process (read → writes)", "project", None, {"wall_s": p["day_wall_s"], "cpu_s": p["day_cpu_s"]})
    add("first date D−1 in process", "project", p["first_date"].get("rows"), p["first_date"])
    for run in wh["whole_day"]:
        rows = sum(run["counted"].values()) if run["counted"] else None
        status = "" if run["exit"] == 0 else f" FAILED (exit {run['exit']})"
        inside = f"; {run['reported_s']:.1f} s inside the job" if run.get("reported_s") is not None else ""
        add(f"whole day {run['date']} (`loyalty run`)", f"Dagster, own process{inside}{status}", rows, run)
        steps = run.get("steps") or []
        shown = steps[:STEPS_SHOWN]
        for step, seconds in shown:
            add(f"  step {step} ({run['date']})", "Dagster step (wall only)", None, {"wall_s": seconds})
        if len(steps) > len(shown):
            rest = {"wall_s": sum(sec for _, sec in steps[STEPS_SHOWN:])}
            add(f"  {len(steps) - len(shown)} other steps ({run['date']})", "Dagster steps, summed", None, rest)
    return out


SUMMARY_COLUMNS = (
    "scale",
    "warehouse",
    "read+validate s",
    "features s",
    "segments s",
    "campaigns s (incl. render)",
    "messages",
    "render msgs/CPU s",
    "Jinja2 msgs/CPU s",
    "campaign rows written",
    "write s",
    "write rows/s",
    "peer rows/s",
    "day in process s (CPU s)",
    "`loyalty run` D−1 s",
    "`loyalty run` D s (CPU s)",
    "`loyalty run` D peak RSS (MB)",
)


def summary_row(entry: dict[str, Any], wh: dict[str, Any]) -> list[str]:
    """One line per scale × warehouse: the stages' wall seconds and the rates the targets are about."""
    p = wh["pipeline"]
    inner = {s["stage"].split(" ")[0]: s for s in p["inner"]}
    stages = {s["stage"]: s for s in p["stages"]}
    render, peer = inner["render"], p["render_peer"]
    writes = next(s for s in p["stages"] if s["stage"].startswith("write campaign rows"))
    peer_tables = [wh["peer_write"][t] for t in p["written"] if t in wh["peer_write"]]
    peer_rows = sum(m["rows"] for m in peer_tables)
    peer_wall = sum(m["wall_s"] for m in peer_tables)
    runs = {r["date"]: r for r in wh["whole_day"]}
    dates = sorted(runs)
    first, last = (runs[dates[0]], runs[dates[-1]]) if len(dates) == 2 else (None, None)
    jinja = _rate(render["rows"], peer["cpu_s"]) + (" (extrapolated)" if peer["extrapolated"] else "")
    return [
        f"{entry['scale']:,}",
        wh["warehouse"],
        _num(stages["read+validate"]["wall_s"]),
        _num(inner["features"]["wall_s"]),
        _num(inner["segments"]["wall_s"]),
        _num(inner["campaigns"]["wall_s"]),
        f"{render['rows']:,}",
        _rate(render["rows"], render["cpu_s"]),
        jinja,
        f"{writes['rows']:,}",
        _num(writes["wall_s"]),
        _rate(writes["rows"], writes["wall_s"]),
        _rate(peer_rows, peer_wall),
        f"{p['day_wall_s']:.2f} ({p['day_cpu_s']:.2f})",
        _num(first["wall_s"], 1) if first else "—",
        f"{last['wall_s']:.1f} ({last['cpu_s']:.1f})" if last and last["exit"] == 0 else "FAILED",
        _num(last["peak_rss_mb"], 0) if last else "—",
    ]


def targets(entry: dict[str, Any], wh: dict[str, Any]) -> list[str]:
    """Issue 9's targets this scale × warehouse can be judged on, met or missed, with the figure."""
    scale, name, p = entry["scale"], wh["warehouse"], wh["pipeline"]
    lines = []
    render = next(s for s in p["inner"] if s["stage"] == "render")
    if render["cpu_s"] and render["rows"]:
        rate = render["rows"] / render["cpu_s"]
        lines.append(
            f"render ≥ {RENDER_TARGET:,} messages/s/core: {'met' if rate >= RENDER_TARGET else 'MISSED'} "
            f"({rate:,.0f} messages per CPU s)"
        )
    for table, m in sorted(p["tables"].items()):
        if m["rows"] < BULK_ROWS or not m["wall_s"]:
            continue  # a small table's rate is its fixed costs (lock, delete, statement), not throughput
        goal = LOAD_BODY_TARGET if table in BODY_TABLES else LOAD_TARGET
        rate = m["rows"] / m["wall_s"]
        lines.append(f"load {table} ≥ {goal:,} rows/s: {'met' if rate >= goal else 'MISSED'} ({rate:,.0f} rows/s)")
    final = wh["whole_day"][-1] if wh["whole_day"] else None
    limit = {1_000_000: HEAVY_DAY_TARGET_S, 5_000: SMALL_DAY_TARGET_S}.get(scale)
    if final is not None and limit is not None:
        ok = final["exit"] == 0 and final["wall_s"] <= limit
        lines.append(
            f"whole day {final['date']} at {scale:,} customers ≤ {limit:.0f} s wall: {'met' if ok else 'MISSED'} "
            f"({final['wall_s']:.1f} s wall, {final['cpu_s']:.1f} CPU s)"
        )
    return [f"- {scale:,} · {name}: {line}" for line in lines]


def render_markdown(results: Sequence[dict[str, Any]], *, day: date, command: str) -> str:
    """The results table, the targets met or missed, and the facts needed to read them."""
    import psutil

    lines = [
        "# Whole daily pipeline benchmark",
        "",
        f"`{command}` — run date {day.isoformat()} (D−1 = {(day - timedelta(days=1)).isoformat()} run first), "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB; Python {platform.python_version()}, Polars "
        f"{version('polars')}, DuckDB {version('duckdb')}, Dagster {version('dagster')}, Jinja2 {version('jinja2')}; "
        f"load average at the end {os.getloadavg()[0]:.1f}.",
        "",
        "## Summary",
        "",
        "| " + " | ".join(SUMMARY_COLUMNS) + " |",
        "|" + "|".join("---" if c == "warehouse" else "---:" for c in SUMMARY_COLUMNS) + "|",
        *("| " + " | ".join(summary_row(e, wh)) + " |" for e in results for wh in e["warehouses"]),
        "",
        "## Stage by stage",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" if c in ("warehouse", "stage", "path") else "---:" for c in COLUMNS) + "|",
    ]
    for entry in results:
        for i, wh in enumerate(entry["warehouses"]):
            lines += ["| " + " | ".join(row) + " |" for row in stage_rows(entry, wh, segment_peer=i == 0)]
    lines += ["", "## Targets (issue 9)", ""]
    for entry in results:
        for wh in entry["warehouses"]:
            lines += targets(entry, wh)
    lines += [
        "",
        "## Reading it",
        "",
        "- CPU s = user + system of the measuring process (all its threads); on PostgreSQL the server's work is "
        "not in it except where a peer row names server CPU s. rows/CPU s is the rate one otherwise idle core "
        "would sustain.",
        "- peak RSS of an in-process stage = the process high-water mark at the stage's end (includes earlier "
        "stages' frames); `—` for render, spread over the campaigns stage. Whole day: largest RSS sum over the "
        "`loyalty run` process tree, polled every 50 ms; its CPU s from `os.wait4`.",
        "- rows: read+validate = source rows kept; features = customers; segments = memberships; campaigns = "
        "entrants; render and run_day = messages in the outbox (messages/s = messages ÷ render seconds; an email "
        "is two template renders, body and subject); writes = rows written; whole day = "
        "`SELECT COUNT(*)` of every dated warehouse table for that date after the run.",
        "- campaigns = run_day − features − segments (derived), render included. Per-table write rows are the time "
        "inside `Warehouse.replace` (lock, delete, bulk insert), commits excluded; the `write … (all tables)` row "
        "includes them.",
        "- seed 004 rows: `bench`'s features + one segment (`women_q1_email_bonus`), the project's Polars path vs "
        "hand-written DuckDB SQL in separate processes; rows = members (both engines must agree).",
    ]
    for entry in results:
        peer = entry.get("segment_peer")
        if peer and peer["mismatches"]:
            lines.append(f"- {entry['scale']:,}: SEGMENT MISMATCH polars vs duckdb: {peer['mismatches']}")
        for wh in entry["warehouses"]:
            rp = wh["pipeline"]["render_peer"]
            lines.append(
                f"- {entry['scale']:,} · {wh['warehouse']}: compiled vs sandbox output on the "
                f"{rp['sampled_rows']:,} sampled renders: {rp['differing_rows']:,} rows differ; "
                f"child baseline RSS {wh['pipeline']['baseline_rss_mb']:,.0f} MB."
            )
    return "\n".join(lines) + "\n"


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loyalty_assets.bench_pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--scales", type=parse_scales, default=list(DEFAULT_SCALES), help="customer counts")
    parser.add_argument("--with-10m", action="store_true", help="add 10,000,000 customers (≈ 11 GB of data)")
    parser.add_argument("--warehouse", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--data-dir", type=Path, default=None, help="an existing data folder for the one scale given")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="data sets in DATA_ROOT/<scale>")
    parser.add_argument("--work-dir", type=Path, default=None, help="warehouses and logs (default: a temp dir)")
    parser.add_argument("--date", type=date.fromisoformat, default=RUN_DATE, help="run date D")
    parser.add_argument("--postgres-url", default=os.environ.get("LOYALTY_TEST_POSTGRES_URL", DEFAULT_PG_URL))
    parser.add_argument("--sandbox-rows", type=int, default=SANDBOX_ROWS, help="rows per render call for Jinja2")
    parser.add_argument("--no-segment-peer", action="store_true", help="skip the Polars vs DuckDB segment runs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.with_10m and TEN_MILLION not in args.scales:
        args.scales.append(TEN_MILLION)
    if args.data_dir is not None and len(args.scales) != 1:
        parser.error("--data-dir names one folder: give exactly one scale with it")
    return args


def _child_main(child: list[str], pg_url: str) -> int:
    kind, *rest = child
    result: dict[str, Any]
    if kind == "pipeline":
        data_dir, url, day, work, sample = rest
        result = pipeline_child(Path(data_dir), url, date.fromisoformat(day), Path(work), int(sample))
    elif kind == "peer-write":
        warehouse, frames, url = rest
        result = peer_write_child(warehouse, Path(frames), url)
    elif kind == "dagster-steps":
        result = dagster_steps_child(Path(rest[0]))
    elif kind == "dagster-step-times":
        result = dagster_step_times_child(Path(rest[0]))
    else:
        raise SystemExit(f"unknown child {kind!r}")
    print(MARK + json.dumps(result, default=str), flush=True)
    return 0


def main(argv: Sequence[str] | None = None, *, runner: Callable[..., list[dict[str, Any]]] = run_benchmark) -> int:
    """The CLI: exit 1 when a whole-day run failed or the segment engines disagree."""
    args = _parse_args(argv)
    if args.child:
        return _child_main(args.child, args.postgres_url)
    warehouses = list(WAREHOUSES) if args.warehouse == "both" else [args.warehouse]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    try:
        results = runner(
            args.scales,
            warehouses=warehouses,
            day=args.date,
            data_root=args.data_root,
            data_dir=args.data_dir,
            work_dir=work,
            pg_url=args.postgres_url,
            sandbox_rows=args.sandbox_rows,
            with_segment_peer=not args.no_segment_peer,
        )
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    command = "python -m loyalty_assets.bench_pipeline " + " ".join(argv if argv is not None else sys.argv[1:])
    text = render_markdown(results, day=args.date, command=command.strip())
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf8")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str), encoding="utf8")
    failed = [r for e in results for w in e["warehouses"] for r in w["whole_day"] if r["exit"] != 0]
    mismatch = [e for e in results if e.get("segment_peer", {}).get("mismatches")]
    return 1 if failed or mismatch else 0


if __name__ == "__main__":
    raise SystemExit(main())
