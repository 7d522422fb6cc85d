"""Dagster resources: the warehouse, the source reader, the source store and the Parquet store between assets."""

import uuid
from datetime import date
from functools import cached_property, lru_cache
from pathlib import Path

import dagster as dg
import polars as pl
import sqlalchemy as sa

from loyalty_assets.sources.day_view import TableAsOf
from loyalty_assets.sources.readers import RawTable, SourceError, locate, read_file_table, read_sql_table
from loyalty_assets.sources.store import SourceStore, StoreError, read_visible
from loyalty_assets.warehouse.history import STATE_PATH, StoredState, read_folder, write_folder, write_frame
from loyalty_assets.warehouse.warehouse import SQL_DIR, Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The output warehouse at `url` (SQLite file or PostgreSQL)."""

    url: str

    @cached_property
    def warehouse(self) -> Warehouse:
        return shared_warehouse(self.url)


@lru_cache(maxsize=8)
def shared_warehouse(url: str) -> Warehouse:
    """One `Warehouse` (engine, applied DDL, reflected tables) per URL and process.

    Why: Dagster builds resources again for every run, and a fresh `Warehouse` pays for a new engine,
    the DDL and the reflection of every table (≈ 0.1 s), which a `loyalty backfill` of many dates in
    one process paid per date. The engine is safe to share: every write takes its own connection
    and transaction. A code server's runs are separate processes: each has its own.
    """
    warehouse = Warehouse(url)
    warehouse.ensure_schema()
    return warehouse


class SourceResource(dg.ConfigurableResource):
    """Where source tables come from: a folder of files, or a database through `sql/sources/*.sql`."""

    data_dir: str
    database_url: str | None = None

    def read(self, table: str, cutoff: object) -> RawTable:
        """The raw typed table; an unreadable source fails the asset naming table, file and column."""
        try:
            return self._read(table, cutoff)
        except SourceError as exc:
            raise dg.Failure(
                description=str(exc),
                metadata={"table": exc.table, "file": exc.file, "column": exc.column or ""},
            ) from exc

    def read_day(self, table: str, day: date, *, program_tz: str, history: bool) -> RawTable:
        """From files: the rows of `table` that can first become visible on `day` (every row visible
        then when `history`), the filter pushed into the Parquet scan (`store.read_visible`)."""
        try:
            return read_visible(Path(self.data_dir), table, day, program_tz=program_tz, history=history)
        except SourceError as exc:
            raise dg.Failure(
                description=str(exc),
                metadata={"table": exc.table, "file": exc.file, "column": exc.column or ""},
            ) from exc

    def rows_in_files(self, table: str) -> int | None:
        """The row count of a Parquet source from its files' metadata (no rows read); None otherwise."""
        path = None if self.database_url else locate(Path(self.data_dir), table)
        if path is None or path.suffix == ".csv":
            return None
        files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
        try:
            return int(pl.scan_parquet(files).select(pl.len()).collect().item())
        except Exception:  # unreadable: the read itself fails naming table and file
            return None

    def _read(self, table: str, cutoff: object) -> RawTable:
        if self.database_url:
            engine = sa.create_engine(self.database_url)
            try:
                return read_sql_table(engine, SQL_DIR, table, {"cutoff": cutoff})
            finally:
                engine.dispose()
        return read_file_table(Path(self.data_dir), table)


class ParquetIOManager(dg.ConfigurableIOManager):
    """Frames between assets as `<base_dir>/<asset key>/<partition>.parquet` (written atomically).

    A dict of frames (the `loyalty_state`) is a folder `<partition>/` of `<name>.parquet`, swapped
    in whole. A missing previous partition of a self-dependent input loads as None, so the asset
    itself decides whether it may start from empty state (see `defs.day.previous_folder`).
    Written by hand rather than with dagster-polars, which does not work with Polars 2.x.
    """

    base_dir: str

    def _path(self, context: dg.OutputContext | dg.InputContext, partition: str | None = None) -> Path:
        key = context.asset_key.path
        if partition is None:
            partition = context.asset_partition_key if context.has_asset_partitions else "all"
        return Path(self.base_dir).joinpath(*key) / f"{partition}.parquet"

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | dict[str, pl.DataFrame] | None) -> None:
        if obj is None:
            return
        path = self._path(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(obj, dict):
            write_folder(path.with_suffix(""), obj)
            return
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        write_frame(obj, tmp)
        tmp.replace(path)

    def load_input(self, context: dg.InputContext) -> pl.DataFrame | dict[str, pl.DataFrame] | StoredState | None:
        if context.has_asset_partitions and context.asset_key == STATE_KEY:
            keys = context.asset_partition_keys
            if (context.definition_metadata or {}).get(STATE_FOLDER):  # the step reads what it needs
                return StoredState.at(self._path(context, keys[0]).with_suffix("")) if keys else None
            names = (context.definition_metadata or {}).get(STATE_FRAMES)  # e.g. the ledger: accruals only
            return read_folder(self._path(context, keys[0]).with_suffix(""), names) if keys else None
        if context.has_asset_partitions and context.asset_key in PREVIOUS_DAY_FRAMES:
            # a self-dependent frame: the day before the first date (or a date never run) is None
            keys = context.asset_partition_keys
            previous = self._path(context, keys[0]) if keys else None
            return pl.read_parquet(previous) if previous is not None and previous.exists() else None
        path = self._path(context)
        if not path.exists():
            raise FileNotFoundError(
                f"{'/'.join(context.asset_key.path)} has no stored frame for this partition ({path}); "
                "materialise it first"
            )
        return pl.read_parquet(path)


class SourceStoreIOManager(dg.ConfigurableIOManager):
    """The source assets' IO manager: their rows live in the validated source store under `base_dir`.

    A source asset ingests the day's rows into the store itself (`defs.sources`), so `handle_output`
    writes nothing: no copy of a table per date. `load_input` answers a downstream partition D with
    the table as of D (`SourceStore.scan_as_of`): a LazyFrame when the input is annotated
    `pl.LazyFrame` (the consumer then reads only the columns and rows it asks for), a `TableAsOf`
    handle when typed so (the daily asset: the scan, and the rows that entered on D), else collected.
    An input whose `AssetIn` metadata sets `WITH_VISIBLE_DAY` also gets each row's visible day
    (`SourceStore.scan_with_visible_day`).
    An input mapped to another partition than the run's loads as None (the source assets declare
    their own previous day as a `deps` entry, which loads nothing: the store itself is the state).
    """

    base_dir: str
    program_tz: str = "Europe/Moscow"

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if obj is not None:
            raise TypeError(f"{'/'.join(context.asset_key.path)}: a source asset stores its rows in the source store")

    def load_input(self, context: dg.InputContext) -> pl.DataFrame | pl.LazyFrame | TableAsOf | None:
        keys = context.asset_partition_keys if context.has_asset_partitions else []
        if len(keys) != 1 or (context.has_partition_key and keys[0] != context.partition_key):
            return None
        table = context.asset_key.path[-1]
        store, day = SourceStore(Path(self.base_dir), self.program_tz), date.fromisoformat(keys[0])
        try:
            if (context.definition_metadata or {}).get(WITH_VISIBLE_DAY):
                scan = store.scan_with_visible_day(table, day)
            else:
                scan = store.scan_as_of(table, day)
        except StoreError as exc:
            raise dg.Failure(description=f"{exc}: materialise source/{table} for {keys[0]} first") from exc
        if context.dagster_type.typing_type is TableAsOf:  # the scan above checked the store holds D
            return TableAsOf(store, table, day)
        if context.dagster_type.typing_type is pl.LazyFrame:
            return scan
        return scan.collect()


#: `AssetIn` metadata of a `loyalty_state` input: the names of the frames to load (default: all).
STATE_FRAMES = "loyalty/state_frames"
#: `AssetIn`/`In` metadata of a `loyalty_state` input: load a `history.StoredState` handle (None
#: when that date never ran), not the frames; the daily step reads through it what it needs.
STATE_FOLDER = "loyalty/state_folder"
#: `AssetIn` metadata: load a source with each row's visible day (column `store.VISIBLE_DAY`).
WITH_VISIBLE_DAY = "loyalty/with_visible_day"
#: The source store's folder under the storage dir (one folder per table).
SOURCE_STORE_DIR = "source_store"
SOURCE_IO_MANAGER = "source_io_manager"
STATE_KEY = dg.AssetKey(list(STATE_PATH))
#: Self-dependent assets whose previous day's frame may be absent (the asset then rebuilds).
PREVIOUS_DAY_FRAMES = frozenset({dg.AssetKey(["bonus_ledger"])})
