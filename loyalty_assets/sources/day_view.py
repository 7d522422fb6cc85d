"""A source table as of D in the validated store, for a step that decides what of it to load.

The source store's IO manager hands the daily asset one `TableAsOf` per table (an input annotated
with this type): nothing is read until the step asks. `load_day_frames` then reads the
per-customer tables whole and the event tables only from the instant D's rules need
(`transforms.day_inputs`), or whole where a rule reads their history; the carried features read
`entered` (the rows that entered the store on D) and, for a rebuild only, `history`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

import polars as pl

from loyalty_assets.sources.frames import AsOf, SourceFrames, utc_literal
from loyalty_assets.sources.store import SourceStore
from loyalty_assets.transforms.day_inputs import EVENT_TIME, WHOLE_TABLES, rows_since


@dataclass(frozen=True)
class TableAsOf:
    """`table` as of `day` in `store`; every read is lazy until collected."""

    store: SourceStore
    table: str
    day: date

    def scan(self) -> pl.LazyFrame:
        """Every row kept as of D (projection and predicates pushed into the Parquet parts)."""
        return self.store.scan_as_of(self.table, self.day)

    def entered(self) -> pl.DataFrame:
        """The rows kept as of D that were not kept as of D−1 (`SourceStore.scan_entered`)."""
        return self.store.scan_entered(self.table, self.day)

    def history(self) -> pl.DataFrame:
        """All rows kept as of D, collected with the streaming engine."""
        return self.scan().collect(engine="streaming")


def load_day_frames(
    tables: Mapping[str, TableAsOf], point: AsOf, *, whole: Iterable[str], own_accruals: pl.DataFrame
) -> tuple[SourceFrames, dict[str, int]]:
    """D's frames for `run_day` with carried features: the per-customer tables whole; each event
    table from `rows_since` unless it is in `whole`; the lines of the loaded checks. Also the rows
    loaded per table (the step's metadata)."""
    whole = set(whole)
    loaded: dict[str, pl.DataFrame] = {t: tables[t].scan().collect() for t in WHOLE_TABLES}
    since = utc_literal(rows_since(point, loaded["favourite_categories"]))
    for table, ts in EVENT_TIME.items():
        scan = tables[table].scan()
        loaded[table] = (scan if table in whole else scan.filter(pl.col(ts) >= since)).collect(engine="streaming")
    items = tables["check_items"].scan()
    if "check_items" not in whole:
        items = items.join(loaded["checks"].select("check_id").lazy(), on="check_id", how="semi")
    loaded["check_items"] = items.collect(engine="streaming")
    counts = {t: f.height for t, f in loaded.items()}
    return SourceFrames.from_tables(loaded | {"own_accruals": own_accruals}), counts
