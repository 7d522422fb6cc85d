"""`loyalty`: the command line for data engineers and marketers.

    loyalty run --date 2025-06-26                 the daily pipeline for one date: one line per date
    loyalty backfill --start A --end B            every date from A to B inclusive, in order, with progress
    loyalty summary --date D                      per campaign, segment and audience: what D produced
    loyalty validate                              check every campaign and segment file
    loyalty segment preview ID --date D           count and masked sample, nothing written
    loyalty campaign dry-run ID --date D          what a campaign would do on D, nothing written
    loyalty dev                                   the Dagster UI (stops on Ctrl-C, even in the background)
    loyalty balance CUSTOMER_ID --date D [--json] the customer's bonus lots and balance on D
    loyalty report ID --from A --to B --out F     campaign results as an offline HTML report
    loyalty explain CUSTOMER --campaign ID --date D   why a customer did or did not enter, and what followed
    loyalty backtest ID --from A --to B           a campaign over past dates in a scratch warehouse

Options before the command: --verbose (Dagster's event log), --debug (tracebacks on errors).
All commands honour LOYALTY_DATA_DIR, LOYALTY_CAMPAIGNS_DIR and LOYALTY_DATABASE_URL; runs are
recorded in DAGSTER_HOME (default: the project's .dagster/, the instance `make dev` shows).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only the standard library at import time: `loyalty --help` must answer at once, and Dagster and
# Polars take seconds to import on a busy machine. Each command imports what it needs.
if TYPE_CHECKING:
    from dagster import DagsterInstance, ExecuteInProcessResult

    from loyalty_assets.config.catalog import Catalog
    from loyalty_assets.settings import Settings


class UserError(Exception):
    """Something the user must fix; printed as one `ERROR …` line, exit status 1."""


# --------------------------------------------------------------------------------------------------
# The subcommand registry: one `@command(...)` per subcommand, e.g.
#
#     @command("campaign stats", "per-variant results", args=lambda p: p.add_argument("campaign_id"))
#     def _stats(args: argparse.Namespace, settings: Settings) -> int: ...
#
# A name with a space is a sub-subcommand of a group ("segment preview").


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    handler: Callable[[argparse.Namespace, Settings], int]
    args: Callable[[argparse.ArgumentParser], Any] = field(default=lambda _parser: None)


COMMANDS: dict[str, Command] = {}


def command(
    name: str, help: str, args: Callable[[argparse.ArgumentParser], Any] | None = None
) -> Callable[[Callable[[argparse.Namespace, Settings], int]], Callable[[argparse.Namespace, Settings], int]]:
    """Register a subcommand (see the registry comment above)."""

    def register(
        handler: Callable[[argparse.Namespace, Settings], int],
    ) -> Callable[[argparse.Namespace, Settings], int]:
        COMMANDS[name] = Command(name, help, handler, args or (lambda _parser: None))
        return handler

    return register


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from exc


def _with_date(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", type=_date, required=True)


# --------------------------------------------------------------------------------------------------
# Checks made before the work starts, so that the user reads one line instead of a traceback.


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, whether or not SQLAlchemy can parse it.

    Done on the text (the credentials end at the last `@`: a host has none), so a password with an
    unescaped `@` or `/` is still hidden whole; masking too much is the safe side.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user, colon, _password = credentials.partition(":")
    return f"{scheme}://{user}:***@{host}" if colon else url


def check_warehouse(url: str) -> None:
    """Fail with one line naming LOYALTY_DATABASE_URL when the warehouse URL is bad or unreachable."""
    import sqlalchemy as sa

    shown = f"LOYALTY_DATABASE_URL={mask_url(url)}"
    try:
        parsed = sa.engine.make_url(url)
    except Exception as exc:
        raise UserError(f"{shown}: not a database URL ({exc}); e.g. sqlite:///.loyalty/warehouse.db") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return
    connect_args = {"connect_timeout": 5} if parsed.get_backend_name() == "postgresql" else {}
    try:
        engine = sa.create_engine(parsed, connect_args=connect_args)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise UserError(f"{shown}: cannot connect: {type(exc).__name__}: {reason}") from exc


def check_sources(settings: Settings) -> None:
    """Fail with one line (and the generator's command) when the source folder holds no data."""
    if settings.source_database_url:
        check_warehouse_like("LOYALTY_SOURCE_DATABASE_URL", settings.source_database_url)
        return
    folder = settings.data_dir
    if any((folder / name).exists() for name in ("customers.parquet", "customers.csv", "customers")):
        return
    state = "does not exist" if not folder.exists() else "has no customers.parquet or customers.csv"
    raise UserError(
        f"LOYALTY_DATA_DIR={folder}: {state}; generate the sample data with "
        f"`python -m loyalty_assets.sample_data --out {folder}` (or `make run`)"
    )


def check_warehouse_like(variable: str, url: str) -> None:
    try:
        check_warehouse(url)
    except UserError as exc:
        raise UserError(str(exc).replace("LOYALTY_DATABASE_URL", variable, 1)) from exc


def load_checked_catalog(settings: Settings) -> Catalog:
    """The catalog; an invalid program.yaml is a one-line error (a broken campaign is not: it is listed)."""
    from loyalty_assets.config.catalog import load_catalog

    return load_catalog(settings.campaigns_dir)


# --------------------------------------------------------------------------------------------------
# Dagster: the instance, quiet runs, and what a run's result says to a person.


def dagster_home(settings: Settings) -> Path:
    """$DAGSTER_HOME, else the project's `.dagster/` (the one `make dev` shows); created with telemetry off."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home)
    os.environ["DAGSTER_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        _write_once(config, "telemetry:\n  enabled: false\n")
    return home


def _write_once(path: Path, text: str) -> None:
    """Create `path` atomically (two first runs at once must not see a half-written file)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text, encoding="utf8")
    temporary.replace(path)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` for the duration (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def open_instance(settings: Settings) -> Iterator[DagsterInstance]:
    """The persistent instance, its storage set up under a file lock.

    Dagster creates and migrates its SQLite storage on first use; two first runs at once on an empty
    DAGSTER_HOME race on that (`alembic … more than one head`). The lock serialises the set-up only:
    the runs themselves then proceed concurrently.
    """
    import dagster as dg

    home = dagster_home(settings)
    with file_lock(home / ".loyalty-instance.lock"):
        instance = dg.DagsterInstance.get()
        # Touch every storage so that their databases exist and are migrated before the lock is released.
        instance.get_runs(limit=1)
        instance.event_log_storage.get_latest_asset_check_execution_by_key([])
        if instance.schedule_storage is not None:
            instance.schedule_storage.all_instigator_state()
    from loyalty_assets.event_log import pool_event_log

    engines = pool_event_log(instance)
    try:
        with instance:
            yield instance
    finally:
        for engine in (engines or {}).values():
            engine.dispose()


@dataclass
class DateResult:
    day: date
    ok: bool
    seconds: float
    written: dict[str, int]
    warnings: list[str]
    errors: list[str]
    gate_failed: set[str]
    interrupted: bool = False

    def line(self) -> str:
        status = "ok" if self.ok else ("INTERRUPTED" if self.interrupted else "FAILED")
        written = ", ".join(f"{name} {n:,}" for name, n in self.written.items() if n) or "nothing written"
        text = f"{self.day.isoformat()}  {status:<6} {self.seconds:5.1f} s  {written}"
        notes = [*self.errors, *self.warnings]
        return text + "".join(
            f"\n    {'ERROR' if i < len(self.errors) else 'warning'}: {n}" for i, n in enumerate(notes)
        )


#: What one date wrote, in the order a person reads it.
WRITTEN = (
    ("triggered", "triggered_customers"),
    ("accruals", "bonus_accruals"),
    ("messages", "message_outbox"),
    ("audience", "target_audiences"),
)


def _quiet_run_config(verbose: bool) -> dict[str, Any]:
    return {} if verbose else {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def describe_result(
    day: date, result: ExecuteInProcessResult, catalog: Catalog, database_url: str, seconds: float
) -> DateResult:
    """One date's outcome for a person: rows written, quarantine, failed gates (with the override), errors.

    A failed step that is not a gate shows its innermost message (e.g. a source file's missing column);
    its traceback is in Dagster's event log (`--verbose`) and the run's page in the UI.
    """
    from loyalty_assets.warehouse.warehouse import Warehouse

    errors: list[str] = []
    gate_failed: set[str] = set()
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.passed:
            continue
        path = evaluation.asset_key.path
        check = f"{'/'.join(path)} · {evaluation.check_name}"
        description = (evaluation.description or "failed").rstrip(".")
        if path[0] == "campaign":
            gate_failed.add(path[1])
            where = f"settings.gates.override_dates in campaigns/{path[1]}.yaml"
        else:
            gate_failed.update(catalog.campaigns)
            where = "gate_override_dates in program.yaml"
        if "override_dates" not in description:  # the gate's own text usually says how already
            description += f". To go ahead after looking, add {day.isoformat()} to {where}"
        elif path[0] == "campaign" and "campaigns/" not in description:
            description += f" in campaigns/{path[1]}.yaml"  # which file to edit
        errors.append(f"gate {check}: {description}")
    interrupted = False
    failures: dict[str, str] = {}  # message → first step: a source failing for several steps says it once
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        if error is None:
            continue
        names = {error.cls_name, *(c.cls_name for c in _causes(error))}
        if names & {"DagsterExecutionInterruptedError", "KeyboardInterrupt"}:
            interrupted = True
            continue
        if "DagsterAssetCheckFailedError" in names or ("blocking" in error.message.lower() and gate_failed):
            continue
        message = (_root_message(error).strip().splitlines() or ["failed"])[0]
        failures.setdefault(message, event.step_key or "run")
    errors += [f"{step}: {message}" for message, step in failures.items()]

    warehouse = Warehouse(database_url)
    scope = {"partition_date": day}
    written = {label: warehouse.count(table, scope) for label, table in WRITTEN}
    # membership is stored as intervals; segment_runs has each segment's member count per date
    runs = warehouse.read("segment_runs", scope)
    written["segment members"] = int(runs.get_column("members").sum() or 0) if runs.height else 0
    warnings = []
    quarantine = warehouse.read("source_quarantine", scope)
    if quarantine.height:
        per = quarantine.group_by("source_table").len().sort("source_table")
        detail = ", ".join(f"{t} {n}" for t, n in per.iter_rows())
        warnings.append(f"quarantine {quarantine.height} rows ({detail}): see table source_quarantine")
    # A failed gate leaves that campaign's outputs for D unwritten while the others go on: the date is
    # not done (later dates would build on it), so it counts as failed until overridden and re-run.
    ok = result.success and not gate_failed
    return DateResult(day, ok, seconds, written, warnings, errors, gate_failed, interrupted=interrupted)


def _causes(error: Any) -> Iterator[Any]:
    while error is not None:
        error = error.cause or getattr(error, "context", None)
        if error is not None:
            yield error


def _root_message(error: Any) -> str:
    """The innermost user-facing message: Dagster wraps an op's exception in its own error."""
    last = error
    for cause in _causes(error):
        last = cause
    text = last.message
    # SerializableErrorInfo messages read "ClassName: text"; keep the text of our own errors.
    return re.sub(r"^[\w.]+(Error|Exception): ", "", text)


@contextmanager
def _instance_for(settings: Settings) -> Iterator[DagsterInstance]:
    """The persistent instance when DAGSTER_HOME is set (the CLI sets its default first), else ephemeral.

    Library callers (tests) without DAGSTER_HOME keep no run history anywhere.
    """
    if not os.environ.get("DAGSTER_HOME"):
        import dagster as dg

        with dg.DagsterInstance.ephemeral() as instance:
            yield instance
        return
    with open_instance(settings) as instance:
        yield instance


@contextmanager
def _frozen() -> Iterator[None]:
    import gc

    try:
        yield
    finally:
        gc.unfreeze()


def run_dates(
    settings: Settings,
    days: Sequence[date],
    *,
    verbose: bool = False,
    report: Callable[[DateResult], None] = lambda r: print(r.line()),
) -> bool:
    """Materialise every asset for each date in order, in this process; stop at the first failure."""
    import gc
    import warnings

    catalog = load_checked_catalog(settings)
    check_warehouse(settings.database_url)
    check_sources(settings)
    if not verbose:
        warnings.filterwarnings("ignore")
        import logging

        logging.getLogger("dagster").setLevel(logging.ERROR)

    from loyalty_assets.defs.definitions import build_definitions
    from loyalty_assets.defs.schedules import DAILY_JOB
    from loyalty_assets.in_process import run_date
    from loyalty_assets.signals import InterruptWatch

    signals = InterruptWatch()
    job = build_definitions(settings).resolve_job_def(DAILY_JOB)
    # the definitions, modules and catalog live as long as the process: out of the cyclic collector's
    # sight (each run allocates thousands of Dagster objects, and every pass re-scanned all of these)
    gc.collect()
    gc.freeze()  # undone when the runs end: a long-lived caller (the tests) keeps its collector
    with _instance_for(settings) as instance, _frozen():
        for day in days:
            started = time.monotonic()
            result = run_date(job, day.isoformat(), instance, run_config=_quiet_run_config(verbose))
            outcome = describe_result(day, result, catalog, settings.database_url, time.monotonic() - started)
            if signals.received():
                outcome.interrupted = True
            report(outcome)
            if outcome.interrupted:
                raise KeyboardInterrupt
            if not outcome.ok:
                return False
    return True


# --------------------------------------------------------------------------------------------------
# The commands.


@command("run", "the daily pipeline for one date (one line: status, time, rows, warnings)", _with_date)
def _run(args: argparse.Namespace, settings: Settings) -> int:
    dagster_home(settings)  # runs are recorded in the project's instance unless DAGSTER_HOME says otherwise
    return 0 if run_dates(settings, [args.date], verbose=args.verbose) else 1


def _range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", type=_date, required=True)
    parser.add_argument("--end", type=_date, required=True)


@command("backfill", "every date from --start to --end inclusive, in order, with a progress bar", _range)
def _backfill(args: argparse.Namespace, settings: Settings) -> int:
    if args.end < args.start:
        raise UserError(f"--end {args.end} is before --start {args.start}")
    days = [args.start + timedelta(days=i) for i in range((args.end - args.start).days + 1)]
    dagster_home(settings)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 200)
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"backfill {args.start}..{args.end}", total=len(days))

        def report(result: DateResult) -> None:
            progress.console.print(result.line(), highlight=False, markup=False, soft_wrap=True)
            progress.advance(task)

        ok = run_dates(settings, days, verbose=args.verbose, report=report)
    return 0 if ok else 1


@command("summary", "per campaign, segment and audience: what a date produced", _with_date)
def _summary(args: argparse.Namespace, settings: Settings) -> int:
    from loyalty_assets.summary import read_summary
    from loyalty_assets.warehouse.warehouse import open_existing

    catalog = load_checked_catalog(settings)
    check_warehouse(settings.database_url)
    warehouse = open_existing(settings.database_url)
    if warehouse is None:
        raise UserError(f"LOYALTY_DATABASE_URL={mask_url(settings.database_url)}: no warehouse yet; run `loyalty run`")
    gate_failed = recorded_gate_failures(settings, catalog, args.date)
    result = read_summary(warehouse, catalog.campaigns, args.date, gate_failed=gate_failed)
    print_summary(result, mask_url(settings.database_url))
    return 0


def recorded_gate_failures(settings: Settings, catalog: Catalog, day: date) -> set[str]:
    """Campaigns whose gate failed for `day` in the recorded runs (none when no instance exists yet)."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home)
    if not (home / "dagster.yaml").exists():
        return set()
    from loyalty_assets.defs.definitions import build_definitions
    from loyalty_assets.defs.summary import failed_gates

    check_keys = build_definitions(settings).resolve_asset_graph().asset_check_keys
    with open_instance(settings) as instance:
        return failed_gates(instance, check_keys, catalog, day)


def print_summary(summary: Any, where: str) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    # Piped output (make, logs) gets a wide fixed width instead of rich's 80-column fallback.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)

    def new_table(title: str) -> Table:
        return Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, show_edge=False)

    table = new_table(f"Campaigns on {summary.day.isoformat()} in {where}")
    numeric = {"triggered", "control", "global_control", "accruals", "amount", "batches"}
    for name in summary.campaigns.columns:
        table.add_column(name.replace("_", " "), justify="right" if name in numeric else "left", overflow="fold")
    for row in summary.campaigns.iter_rows():
        table.add_row(*(str(v) if v not in (None, "") else "–" for v in row))
    console.print(table)
    for title, frame in (("Segments", summary.segments), ("Audiences exported", summary.audiences)):
        sub = new_table(title)
        for name in frame.columns:
            sub.add_column(name, justify="right" if frame[name].dtype.is_integer() else "left")
        for row in frame.iter_rows():
            sub.add_row(*(str(v) for v in row))
        console.print(sub if frame.height else f"{title}: none")
    console.print(f"Global control group this period: {summary.global_control} customers")


@command("validate", "validate the catalog of campaigns and segments")
def _validate(args: argparse.Namespace, settings: Settings) -> int:
    catalog = load_checked_catalog(settings)
    print(f"{len(catalog.campaigns)} campaigns, {len(catalog.segments)} segments valid in {settings.campaigns_dir}")
    for error in catalog.errors:
        print(f"ERROR {error}", file=sys.stderr)
    return 1 if catalog.errors else 0


def _preview_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("segment_id")
    _with_date(parser)
    parser.add_argument("--sample", type=int, default=10)


@command("segment preview", "count a segment and show a masked sample", _preview_args)
def _preview(args: argparse.Namespace, settings: Settings) -> int:
    catalog = load_checked_catalog(settings)
    _known(args.segment_id, catalog.segments, "segment")
    check_sources(settings)
    from loyalty_assets.preview import preview_from_sources

    _polars_display()
    result = preview_from_sources(settings, args.segment_id, args.date, sample=args.sample)
    print(f"segment {result.segment_id} on {args.date.isoformat()}: {result.count} customers")
    print(result.sample)
    return 0


def _dry_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("campaign_id")
    _with_date(parser)
    parser.add_argument("--sample", type=int, default=5)


@command("campaign dry-run", "counts per step, branch and variant and a masked sample", _dry_run_args)
def _dry_run(args: argparse.Namespace, settings: Settings) -> int:
    catalog = load_checked_catalog(settings)
    _known(args.campaign_id, catalog.campaigns, "campaign")
    check_sources(settings)
    from loyalty_assets.dry_run import dry_run

    _polars_display()
    result = dry_run(
        catalog,
        args.campaign_id,
        args.date,
        data_dir=settings.data_dir,
        database_url=settings.database_url,
        source_database_url=settings.source_database_url,
        sample=args.sample,
    )
    print(f"dry run of {result.campaign_id} on {result.day.isoformat()} (nothing written):")
    for name, value in result.counts.items():
        print(f"  {name:<40} {value}")
    print(result.sample)
    return 0


def _dev_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=3000)


@command(
    "dev", "the Dagster UI on 127.0.0.1 (Ctrl-C and SIGTERM stop it, also when started in the background)", _dev_args
)
def _dev(args: argparse.Namespace, settings: Settings) -> int:
    """`dagster dev`, with SIGINT restored first.

    A shell starts a background job with SIGINT ignored; Python keeps it ignored, and `dagster dev`
    maps SIGTERM onto the SIGINT handler — so neither signal stopped it. Restoring the default
    before exec lets Python install its KeyboardInterrupt handler, which `dagster dev` acts on.
    """
    import shutil
    import signal

    dagster_home(settings)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    executable = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    workspace = Path(__file__).resolve().parents[1] / "workspace.yaml"
    argv = [executable, "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(args.port)]
    os.execv(executable, argv)
    return 0  # pragma: no cover - exec does not return


def _known(name: str, known: Any, kind: str) -> None:
    if name not in known:
        raise UserError(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")


def _polars_display() -> None:
    import polars as pl

    pl.Config.set_tbl_rows(200)
    pl.Config.set_tbl_hide_dataframe_shape(True)


def _balance_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("customer_id", type=int)
    _with_date(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")


@command("balance", "a customer's bonus lots and balance on a date (--json for the loyalty module)", _balance_args)
def _balance(args: argparse.Namespace, settings: Settings) -> int:
    from loyalty_assets import balance

    return balance.run_command(args, settings)


def _results_range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("campaign_id")
    parser.add_argument("--from", dest="start", type=_date, required=True)
    parser.add_argument("--to", dest="end", type=_date, required=True)


def _report_args(parser: argparse.ArgumentParser) -> None:
    _results_range(parser)
    parser.add_argument("--out", type=Path, required=True)


def _explain_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("customer_id", type=int)
    parser.add_argument("--campaign", required=True)
    _with_date(parser)


def _backtest_args(parser: argparse.ArgumentParser) -> None:
    _results_range(parser)
    parser.add_argument(
        "--scratch", type=Path, default=None, help="folder for the scratch warehouse (default: new temp)"
    )


def _results(args: argparse.Namespace, settings: Settings) -> int:
    from loyalty_assets.reporting import cli as results_cli

    return results_cli.run(args, settings)


command("report", "a campaign's results as a self-contained HTML file (charts, intervals)", _report_args)(_results)
command("explain", "why a customer did or did not enter a campaign on a date, and what followed", _explain_args)(
    _results
)
command("backtest", "a campaign over past dates in a scratch warehouse (production untouched)", _backtest_args)(
    _results
)


# --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loyalty", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--verbose", action="store_true", help="show Dagster's event log")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for name, spec in COMMANDS.items():
        group, _, sub = name.partition(" ")
        if not sub:
            spec.args(commands.add_parser(name, help=spec.help))
            continue
        if group not in groups:
            holder = commands.add_parser(group, help=f"{group} tools")
            groups[group] = holder.add_subparsers(dest=f"{group}_command", required=True, metavar="COMMAND")
        parser_ = groups[group].add_parser(sub, help=spec.help)
        spec.args(parser_)
        parser_.set_defaults(_command=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    name = getattr(args, "_command", args.command)
    try:
        from loyalty_assets.settings import Settings

        return COMMANDS[name].handler(args, Settings.from_env())
    except KeyboardInterrupt:
        print("ERROR interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        message = user_message(exc)
        if message is None:
            raise
        print(f"ERROR {message}", file=sys.stderr)
        return 1


def user_message(exc: BaseException) -> str | None:
    """The one-line message of an error the user can fix, or None for a bug (shown as a traceback)."""
    from loyalty_assets.config.errors import DefinitionError
    from loyalty_assets.sources.readers import SourceError

    if isinstance(exc, UserError | DefinitionError | SourceError):
        return str(exc)
    if isinstance(exc, KeyError) and exc.args and "known:" in str(exc.args[0]):
        return str(exc.args[0])
    return None


if __name__ == "__main__":
    raise SystemExit(main())
