"""Shared fixtures: warehouses on SQLite and PostgreSQL, and running the pipeline in process.

PostgreSQL tests use a fresh schema per test on `LOYALTY_TEST_POSTGRES_URL` (default: the local
server). Without a server they are skipped with a reason, unless `LOYALTY_REQUIRE_POSTGRES=1`
(set by `.ci/run`), where a missing server fails them instead: CI can never skip them silently.
"""

from __future__ import annotations

import os

# One Polars thread per test process: `make test` runs one xdist worker per core, so Polars' own
# pool only adds contention, and on the fixtures' few-row frames its per-operation hand-off between
# threads costs more than the work (≈ 10 % of a daily run's CPU). Set before Polars is imported.
os.environ.setdefault("POLARS_MAX_THREADS", "1")

import contextlib
import hashlib
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from hypothesis import settings as hypothesis_settings

from loyalty_assets.config.catalog import DEFAULT_CATALOG
from loyalty_assets.settings import Settings

if TYPE_CHECKING:
    from dagster import DagsterInstance, JobDefinition

# Property tests draw the same examples on every run (a CI failure can be replayed; no flaky runs);
# HYPOTHESIS_PROFILE=explore draws fresh ones locally.
hypothesis_settings.register_profile("repeatable", derandomize=True, deadline=None)
hypothesis_settings.register_profile("explore", deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

FIXTURES = Path(__file__).parent / "fixtures"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_base_url() -> str:
    return os.environ.get("LOYALTY_TEST_POSTGRES_URL", DEFAULT_PG_URL)


def _postgres_unavailable() -> str | None:
    try:
        engine = sa.create_engine(postgres_base_url(), connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any reason: no driver, no server, no database
        return f"PostgreSQL not reachable at {postgres_base_url()}: {type(exc).__name__}"
    return None


@pytest.fixture(autouse=True)
def ephemeral_dagster(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never write runs into a developer's (or the Makefile's) DAGSTER_HOME."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


def _held_connection_instance(
    tempdir: str | None = None, preload: Any = None, settings: dict[str, Any] | None = None
) -> Any:
    """`DagsterInstance.ephemeral()` whose in-memory event log keeps one connection.

    Why: Dagster's in-memory event log opens a connection and runs two PRAGMAs for every query
    (~930 per daily job), ~15 % of an in-process run's CPU; the suite runs ~300 of them. Its queries
    already run one at a time under the storage's lock, so one held connection serves them all. This
    is only the test harness's throwaway instance: the CLI's runs use the persistent instance in
    DAGSTER_HOME (SQLite files), which this does not touch.
    """
    from dagster._core.instance import DagsterInstance, InstanceType
    from dagster._core.launcher.sync_in_memory_run_launcher import SyncInMemoryRunLauncher
    from dagster._core.run_coordinator import DefaultRunCoordinator
    from dagster._core.storage.event_log import InMemoryEventLogStorage
    from dagster._core.storage.noop_compute_log_manager import NoOpComputeLogManager
    from dagster._core.storage.root import LocalArtifactStorage, TemporaryLocalArtifactStorage
    from dagster._core.storage.runs import InMemoryRunStorage

    class HeldConnectionEventLogStorage(InMemoryEventLogStorage):
        @contextlib.contextmanager
        def _connect(self) -> Iterator[Any]:
            with self._db_lock, self._held_conn.begin():
                yield self._held_conn

    # the components of dagster._core.instance.factory.create_ephemeral_instance, but the event log
    return DagsterInstance(
        instance_type=InstanceType.EPHEMERAL,
        local_artifact_storage=LocalArtifactStorage(tempdir) if tempdir else TemporaryLocalArtifactStorage(),
        run_storage=InMemoryRunStorage(preload=preload),
        event_storage=HeldConnectionEventLogStorage(preload=preload),
        compute_log_manager=NoOpComputeLogManager(),
        run_coordinator=DefaultRunCoordinator(),
        run_launcher=SyncInMemoryRunLauncher(),
        settings=settings,
    )


@pytest.fixture(autouse=True, scope="session")
def quick_ephemeral_instances() -> Iterator[None]:
    """Every `DagsterInstance.ephemeral()` of the tests (run_days, `loyalty backfill`'s library path,
    the backtest) is `_held_connection_instance`."""
    import dagster as dg

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dg.DagsterInstance, "ephemeral", staticmethod(_held_connection_instance))
        yield


@pytest.fixture(scope="session")
def postgres_available() -> None:
    reason = _postgres_unavailable()
    if reason is None:
        return
    if os.environ.get("LOYALTY_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"LOYALTY_REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def postgres_url(postgres_available: None) -> Iterator[str]:
    """A URL whose connections use a fresh, empty schema (dropped afterwards)."""
    yield from fresh_schema()


def fresh_schema() -> Iterator[str]:
    """A URL on a new PostgreSQL schema, dropped when the generator is closed."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_base_url())
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))  # identifier, generated above: not a value
    url = sa.engine.make_url(postgres_base_url()).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on the embedded SQLite warehouse and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def module_warehouses(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], str]]:
    """New empty warehouses of one kind for runs shared by a module's tests that only read their rows.

    Why: most of a scenario test's cost is the daily jobs it runs; tests that read the same dates
    share one run per warehouse kind (pytest groups a module's tests by this parameter, so each
    kind's runs happen once). Each call gives a fresh warehouse: a SQLite file, or a PostgreSQL schema
    dropped when the module is done.
    """
    with contextlib.ExitStack() as stack:

        def new() -> str:
            if request.param == "sqlite":
                return f"sqlite:///{tmp_path_factory.mktemp('warehouse') / 'warehouse.db'}"
            request.getfixturevalue("postgres_available")
            return stack.enter_context(contextlib.contextmanager(fresh_schema)())

        yield new


@pytest.fixture
def birthday_data(tmp_path: Path) -> Path:
    """A private copy of the birthday fixture (tests may break it on purpose)."""
    target = tmp_path / "data"
    shutil.copytree(FIXTURES / "birthdays", target)
    return target


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped catalog (tests may edit it)."""
    target = tmp_path / "catalog"
    shutil.copytree(DEFAULT_CATALOG, target)
    return target


def copy_inputs(root: Path, fixture: str) -> tuple[Path, Path]:
    """Private copies of a fixture's data and of the shipped catalog under `root` (data, catalog):
    for module-scoped runs shared by several tests, which the function-scoped fixtures above can't serve."""
    shutil.copytree(FIXTURES / fixture, root / "data")
    shutil.copytree(DEFAULT_CATALOG, root / "catalog")
    return root / "data", root / "catalog"


# The campaigns that write rows on the birthday fixture in February–March 2025 (the others write none).
BIRTHDAY_WRITERS = ("birthday_members_over_a_year", "birthday_week_early", "favourite_category_not_chosen")


def set_shards(catalog_dir: Path, shards: int) -> None:
    """`shards` in a copied catalog's program.yaml (more than one: `loyalty_day` is a graph of steps)."""
    import yaml

    path = catalog_dir / "program.yaml"
    program = yaml.safe_load(path.read_text())
    program["shards"] = shards
    path.write_text(yaml.safe_dump(program))


def keep_campaigns(catalog_dir: Path, *campaign_ids: str) -> Path:
    """Narrow a copied catalog to the campaigns a test is about (segments and templates stay).

    Why: a daily job's cost is mostly Dagster's bookkeeping per output (three per campaign), so a
    test that drives many dates with campaigns whose rows it never sees pays for nothing. Tests
    keep every campaign that writes a row on their fixture, so what they compare is unchanged.
    """
    campaigns = catalog_dir / "campaigns"
    unknown = set(campaign_ids) - {f.stem for f in campaigns.glob("*.yaml")}
    assert not unknown, f"not in the catalog: {sorted(unknown)}"
    for definition in campaigns.glob("*.yaml"):
        if definition.stem not in campaign_ids:
            definition.unlink()
    return catalog_dir


def make_settings(data_dir: Path, catalog_dir: Path, database_url: str, storage: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        campaigns_dir=catalog_dir,
        database_url=database_url,
        storage_dir=storage,
        source_database_url=None,
    )


_JOBS: dict[tuple[Settings, str], JobDefinition] = {}


def daily_job(settings: Settings) -> JobDefinition:
    """The daily job for `settings`, built once per catalog content (tests edit their catalog copy
    between runs, so the key is a digest of every file in it, not its path)."""
    from loyalty_assets.defs.definitions import build_definitions
    from loyalty_assets.defs.schedules import DAILY_JOB

    digest = hashlib.sha256()
    for path in sorted(p for p in settings.campaigns_dir.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(settings.campaigns_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    key = (settings, digest.hexdigest())
    if key not in _JOBS:
        if len(_JOBS) >= 4:  # a test's own runs share a job; older tests' jobs are let go
            del _JOBS[next(iter(_JOBS))]
        _JOBS[key] = build_definitions(settings).resolve_job_def(DAILY_JOB)
    return _JOBS[key]


def run_days(settings: Settings, days: Sequence[date], instance: DagsterInstance | None = None) -> None:
    """Run the daily job for each date in order, in process (in `instance` when given, to read its
    events afterwards; else an ephemeral one); fail the test on any failed step.

    The daily asset carries its state from D−1 and by default refuses a date after a gap (see
    `defs.day.previous_folder`). Tests name only the dates their hand-computed expectations are
    about, so a date after a gap runs with `carry_state_over_gap`: it starts from the latest
    earlier state, as if the dates in between had nothing to do.
    """
    import dagster as dg

    from loyalty_assets.warehouse.history import state_partitions

    job = daily_job(settings)
    with contextlib.nullcontext(instance) if instance is not None else dg.DagsterInstance.ephemeral() as instance:
        for day in days:
            over_gap = bool(gap_days(state_partitions(settings.storage_dir), day))
            config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
            if over_gap:
                config["ops"] = {"loyalty_day": {"config": {"carry_state_over_gap": True}}}
            result = job.execute_in_process(
                partition_key=day.isoformat(), instance=instance, raise_on_error=True, run_config=config
            )
            assert result.success, day


# Ctrl-C / SIGTERM stop the whole suite. Inside a Dagster in-process run the signal only fails the
# current test (Dagster turns it into a failed step) and pytest would go on with the next one; the
# watch notices the signal anyway (see loyalty_assets/signals.py) and ends the session after the test.
_INTERRUPTS: list[object] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The `long` tests first (a stable sort: the rest keep their order). With `--dist worksteal` the
    workers then start on them and share the short ones at the end, instead of one worker picking
    up a 30-second test while the other has nothing left to do."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def pytest_sessionstart(session: pytest.Session) -> None:
    from loyalty_assets.signals import InterruptWatch

    _INTERRUPTS.append(InterruptWatch())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield
    watch = _INTERRUPTS[0] if _INTERRUPTS else None
    if watch is not None and watch.received():  # type: ignore[attr-defined]
        pytest.exit("interrupted (SIGINT/SIGTERM)", returncode=130)


def gap_days(stored: Sequence[date], day: date) -> list[date]:
    """Dates between the latest stored state before `day` and `day` (none when D−1 is stored or nothing earlier ran)."""
    earlier = [d for d in stored if d < day]
    if not earlier:
        return []
    latest = max(earlier)
    return [latest + timedelta(days=i) for i in range(1, (day - latest).days)]
