"""Dagster resources: the warehouse, the source reader and the Parquet store between assets."""

import uuid
from functools import cached_property
from pathlib import Path

import dagster as dg
import polars as pl
import sqlalchemy as sa

from loyalty_assets.sources.readers import RawTable, SourceError, read_file_table, read_sql_table
from loyalty_assets.warehouse.history import STATE_PATH, read_folder, write_folder
from loyalty_assets.warehouse.warehouse import SQL_DIR, Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The output warehouse at `url` (SQLite file or PostgreSQL)."""

    url: str

    @cached_property
    def warehouse(self) -> Warehouse:
        warehouse = Warehouse(self.url)
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
    itself decides whether it may start from empty state (see `defs.day.previous_state`).
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
        obj.write_parquet(tmp)
        tmp.replace(path)

    def load_input(self, context: dg.InputContext) -> pl.DataFrame | dict[str, pl.DataFrame] | None:
        if context.has_asset_partitions and context.asset_key == STATE_KEY:
            keys = context.asset_partition_keys
            return read_folder(self._path(context, keys[0]).with_suffix("")) if keys else None
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


STATE_KEY = dg.AssetKey(list(STATE_PATH))
#: Self-dependent assets whose previous day's frame may be absent (the asset then rebuilds).
PREVIOUS_DAY_FRAMES = frozenset({dg.AssetKey(["bonus_ledger"])})
