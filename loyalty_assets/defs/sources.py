"""One asset per source table, one step for all: ingest the day's rows into the validated source store.

For a date D each asset types and validates only the rows that first become visible on D and stores
them as D's part of the store (`sources/store.py`, under `<LOYALTY_STORAGE_DIR>/source_store/`);
downstream assets read the table as of D from the store through `SourceStoreIOManager`. The first
run on an empty store ingests the history once (each row on its own visible day, so an earlier date
run later sees what it saw then); a date after the last stored day first ingests the days in between
(catch-up); a stored date run again replaces its day. Each table's store of D builds on D-1's: a
declared dependency on its own previous partition (`deps`, nothing loaded).

All nine are one step (`build_source_assets`): customers first, then the tables whose rules read
them; checks and their lines together because a line is visible exactly when its check is.
"""

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from loyalty_assets.config.campaigns import Program
from loyalty_assets.defs.checks import checks_arrived, checks_arrived_spec
from loyalty_assets.defs.metadata import OWNERS, column_schema, counts_table, table_metadata, tags
from loyalty_assets.defs.partitions import PREVIOUS_DAY, as_of
from loyalty_assets.defs.resources import SOURCE_IO_MANAGER, SourceResource, WarehouseResource
from loyalty_assets.sources.frames import AsOf
from loyalty_assets.sources.readers import RawTable
from loyalty_assets.sources.snapshot import CUSTOMER_TABLES
from loyalty_assets.sources.store import IngestResult, SourceStore, StoreError
from loyalty_assets.sources.validation import quarantine_summary

GROUP = "sources"


def source_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["source", table])


def _previous_day(table: str) -> dg.AssetDep:
    """D's store of `table` builds on D-1's: a dependency (ordering, lineage, backfills) that loads
    nothing, since the store itself is the state. The customers a table's rules need as of each
    ingested day are a plain dependency too: the store reads them itself."""
    return dg.AssetDep(source_key(table), partition_mapping=PREVIOUS_DAY)


class _Reader:
    """The raw rows of one table for each day an ingest needs: from files, the day's candidate rows
    (filter pushed into the Parquet scan); from SQL, the query as of D's cutoff, read once (the store
    picks each day's rows)."""

    def __init__(self, sources: SourceResource, table: str, point: AsOf) -> None:
        self.sources, self.table, self.point = sources, table, point
        self._cache: dict[tuple[date, bool], RawTable] = {}
        self._counted = sources.rows_in_files(table)
        # read whole (SQL, CSV): one read serves every day of a catch-up
        self._whole = bool(sources.database_url) or self._counted is None

    def __call__(self, day: date, history: bool) -> RawTable:
        key = (self.point.date, False) if self._whole else (day, history)
        if key not in self._cache:
            if self.sources.database_url:
                self._cache[key] = self.sources.read(self.table, self.point.cutoff)
            else:
                self._cache[key] = self.sources.read_day(
                    self.table, day, program_tz=self.point.program_tz, history=history
                )
        return self._cache[key]

    def rows_read(self) -> int:
        """Rows of the whole source table (kept + quarantined + not yet visible add up to it)."""
        if self._counted is not None:
            return self._counted
        raw = self(self.point.date, False)  # CSV and SQL sources are read whole
        return raw.frame.height + raw.rejected.height


def _store_failure(exc: StoreError) -> dg.Failure:
    return dg.Failure(description=str(exc), allow_retries=False)


def _record(
    context: dg.AssetExecutionContext,
    store: SourceStore,
    table: str,
    day: date,
    rows_read: int,
    ingests: list[IngestResult],
) -> tuple[dict[str, dg.MetadataValue], pl.DataFrame]:
    """D's quarantine of `table` (every row set aside as of D) and the metadata describing the
    split as of D and what this run ingested."""
    kept_rows, quarantine = store.split_at(table, day)
    kept = store.scan_as_of(table, day)
    by_rule = quarantine_summary(quarantine)
    if by_rule:
        context.log.warning(f"{table}: {quarantine.height} rows quarantined: {by_rule}")
    counts = {
        "rows_read": rows_read,
        "rows_kept": kept_rows,
        "rows_quarantined": quarantine.height,
        "rows_not_yet_visible": rows_read - kept_rows - quarantine.height,
    }
    metadata: dict[str, dg.MetadataValue] = {
        **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
        "quarantined_by_rule": counts_table(by_rule, key="rule (column)", value="rows"),
        "ingested_days": dg.MetadataValue.text(
            ", ".join(f"{r.day.isoformat()}{' (history)' if r.history else ''}" for r in ingests)
            or "none (held by history)"
        ),
        "rows_ingested": dg.MetadataValue.int(sum(r.counts.get("rows_stored", 0) for r in ingests)),
        "dagster/row_count": dg.MetadataValue.int(kept_rows),
        **column_schema(kept.collect_schema()),  # type: ignore[dict-item]
    }
    if quarantine.height:  # masked: the offending row itself (`row`) is left out
        metadata.update(table_metadata("quarantine_sample", quarantine, sample=5))
    return metadata, quarantine


def _ingest(store: SourceStore, table: str, day: date, read: Callable[[date, bool], RawTable]) -> list[IngestResult]:
    """Make the store answer for `day` (first run, catch-up, or `day` replaced; see `ingest_plan`)."""
    now = datetime.now(UTC)
    try:
        return [store.ingest_day(table, d, read(d, h), now=now, history=h) for d, h in store.ingest_plan(table, day)]
    except StoreError as exc:
        raise _store_failure(exc) from exc


def build_source_assets(
    program: Program, partitions: dg.PartitionsDefinition, store_root: Path
) -> list[dg.AssetsDefinition]:
    """The nine source assets of the contract, ingested by one step (`sources`).

    Why one step: each Dagster step costs its own bookkeeping (start, inputs, success events and data
    version lookups), which at nine tables cost more than ingesting a day's rows. The assets stay
    one per table in the UI, each with its own metadata and lineage; materialising any of them
    ingests all nine for the date (a day's tables are judged together: customers first, then the
    tables whose rules read them; a check's lines go with it).
    """
    order = ("customers", "categories", "checks", "check_items", *CUSTOMER_TABLES)
    described = {
        "customers": "Customers registered by the end of D",
        "categories": "The category tree (no history)",
        "checks": "Checks up to the end of D (ingested into the source store day by day)",
        "check_items": "Lines of the visible checks",
        **{t: f"{t} as of the end of D" for t in CUSTOMER_TABLES},
    }
    customers = source_key("customers")
    # D's store of a table builds on D-1's (categories have no history: each ingest stores the table
    # as read); every table but customers and categories is judged against the customers of the day
    internal: dict[str, set[dg.AssetKey]] = {
        "customers": {customers},
        "categories": set(),
        "checks": {customers, source_key("checks"), source_key("check_items")},
        "check_items": {customers, source_key("checks"), source_key("check_items")},
        **{t: {customers, source_key(t)} for t in CUSTOMER_TABLES},
    }

    @dg.multi_asset(
        name="sources",
        outs={
            t: dg.AssetOut(
                key=source_key(t),
                kinds={"polars"},
                description=f"{described[t]}, validated (quarantine: source_quarantine).",
                owners=OWNERS,
                tags=tags("source"),
                io_manager_key=SOURCE_IO_MANAGER,
                dagster_type=Any,
            )
            for t in order
        },
        deps=[_previous_day(t) for t in order if t != "categories"],
        internal_asset_deps=internal,
        check_specs=[checks_arrived_spec(source_key("checks"), partitions)],
        group_name=GROUP,
        partitions_def=partitions,
        can_subset=False,
    )
    def sources(
        context: dg.AssetExecutionContext, sources: SourceResource, warehouse: WarehouseResource
    ) -> Iterator[dg.Output[Any] | dg.AssetCheckResult]:
        point = as_of(context, program)
        store = SourceStore(store_root, program.timezone)
        now = datetime.now(UTC)
        recorded: dict[str, tuple[dict[str, dg.MetadataValue], pl.DataFrame]] = {}

        def record(table: str, read: _Reader, done: list[IngestResult]) -> None:
            recorded[table] = _record(context, store, table, point.date, read.rows_read(), done)

        def ingest(table: str) -> None:
            read = _Reader(sources, table, point)
            record(table, read, _ingest(store, table, point.date, read))

        ingest("customers")
        ingest("categories")
        read_checks, read_items = _Reader(sources, "checks", point), _Reader(sources, "check_items", point)
        done_by: dict[str, list[IngestResult]] = {"checks": [], "check_items": []}
        try:
            # a line goes with its check: each day's checks, then its lines (each table's own plan,
            # so a store where one of them is behind, e.g. after a crash between the two, catches up)
            plans = {t: dict(store.ingest_plan(t, point.date)) for t in ("checks", "check_items")}
            for day in sorted(plans["checks"].keys() | plans["check_items"].keys()):
                for table, read in (("checks", read_checks), ("check_items", read_items)):
                    if day in plans[table]:
                        history = plans[table][day]
                        done_by[table].append(
                            store.ingest_day(table, day, read(day, history), now=now, history=history)
                        )
        except StoreError as exc:
            raise _store_failure(exc) from exc
        record("checks", read_checks, done_by["checks"])
        record("check_items", read_items, done_by["check_items"])
        for table in CUSTOMER_TABLES:
            ingest(table)
        # D's quarantine of every table, each replacing that table's rows for the date, in one transaction
        wh = warehouse.warehouse
        with wh.transaction() as conn:
            for table, (_, quarantine) in recorded.items():
                wh.replace(
                    "source_quarantine", quarantine, {"source_table": table, "partition_date": point.date}, conn=conn
                )
        for table in order:
            yield dg.Output(None, output_name=table, metadata=recorded[table][0])
        # blocking: when it fails, this step fails after its outputs, and nothing downstream runs for D
        yield checks_arrived(source_key("checks"), store.scan_as_of("checks", point.date), point, program)

    return [sources]
