"""A durable, validated store of the source tables, partitioned by the day a row first becomes visible.

The source assets (`defs/sources.py`) ingest into it and downstream assets read it as of D
(`defs/resources.py: SourceStoreIOManager`), so a run for D validates only D's rows:

- `ingest_day(table, D, raw)` takes the rows of `raw` that first become visible on D (their
  visibility instant — `loaded_at` when given and later, else the contract's own timestamp — lies in
  [cutoff(D-1), cutoff(D)); customers by `registered_at`), applies the contract rules of
  `sources/validation.py` to those rows only, and writes one Parquet part for D. `history=True`
  takes every row visible at D instead (the first run on an empty store), each row stored with its
  own visible day, so the store answers for every earlier day too. Categories have no history:
  each ingest stores the whole table as read that day.
- `ingest_plan(table, D)`: the ingests that make the store answer for D (first run, catch-up of the
  days since the last stored one, or D again).
- `scan_as_of(table, D)` is a LazyFrame over the parts of days <= D (projection and predicate push-down
  into the Parquet files) with exactly the rows `validate` keeps for D; `quarantine_at(table, D)` the
  rows set aside as of D.

Two rules depend on D and are therefore applied when scanning, not when ingesting:
- *unknown customer*: a row is kept only when its customer is kept as of D (a check ingested before its
  customer registered becomes visible on the registration day, as today);
- *duplicate key*: the first row of a key in (visible day, file order) among rows valid at D wins. Rows
  whose key was seen before are flagged `__repeat` at ingest, so the scan only deduplicates those keys
  (no work at all on a store without repeats). This equals `validate`'s file-order rule for
  append-only sources, whose file order follows visibility.

Check lines have no timestamp: they are ingested on the day their check first enters the store and
are visible at D exactly when their check is kept at D.

Atomicity: a day's data and quarantine are written to new, uniquely named files, then the day's
manifest (`<day>.json`, naming those files and holding the counts) is replaced with `os.replace`, which
is atomic; readers only follow manifests. A crash leaves the previous version of the day intact, and
re-ingesting a day replaces it (idempotent). Orphaned files from a crash are removed by the next
ingest of that day.
"""

from __future__ import annotations

import functools
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl

from loyalty_assets.sources.frames import AsOf
from loyalty_assets.sources.readers import UNPARSABLE_PREFIX, RawTable, coerce, locate, read_file_table
from loyalty_assets.sources.schemas import SCHEMAS, TableSchema
from loyalty_assets.sources.validation import QUARANTINE_SCHEMA, ValidationResult, _row_json, validate

#: Columns the store adds to every stored row (dropped by `scan_as_of`).
VDAY, SEQ, REPEAT, PENDING, KHASH = "__vday", "__seq", "__repeat", "__pending", "__khash"
INTERNAL = (VDAY, SEQ, REPEAT, PENDING, KHASH)
#: The visible-day column of `scan_with_visible_day` (local date of the program's zone).
VISIBLE_DAY = VDAY
#: A unique per-row column that turns off `validate`'s duplicate rule (the store applies it itself);
#: the prefix keeps it out of `validate`'s outputs like the readers' unparsable flags.
_ROW = f"{UNPARSABLE_PREFIX}__row"
#: Ingest order: parents before the tables whose rules read them.
TABLE_ORDER = (
    "customers",
    "categories",
    "checks",
    "check_items",
    "customer_attributes",
    "favourite_categories",
    "bonus_transactions",
    "communications",
    "site_visits",
)


_EMPTY_RESULTS: dict[tuple[object, ...], ValidationResult] = {}
#: Parsed manifests by path, with the (inode, mtime, size) they were read at.
_MANIFESTS: dict[Path, tuple[tuple[int, int, int], dict[str, object]]] = {}


def _validate(
    schema: TableSchema, raw: RawTable, as_of: AsOf, *, now: datetime, carry: tuple[str, ...] = ()
) -> ValidationResult:
    """`validate`, answered from a memo when there is nothing to validate (no rows, no rejected lines).

    A catch-up over a quiet stretch ingests many days without rows; validating zero rows is the same
    every time (empty frames of fixed types, zero counts), and costs a few dozen small plans each.
    """
    if raw.frame.height or raw.rejected.height:
        return validate(schema, raw, as_of, now=now, carry=carry)
    key = (repr(schema), tuple((c, str(t)) for c, t in raw.frame.schema.items()), carry)
    if key not in _EMPTY_RESULTS:
        _EMPTY_RESULTS[key] = validate(schema, raw, as_of, now=now, carry=carry)
    cached = _EMPTY_RESULTS[key]
    return replace(cached, counts=dict(cached.counts))


class StoreError(Exception):
    """The store cannot answer for a date (a day was never ingested): one line naming the day."""


@dataclass(frozen=True)
class IngestResult:
    """What one ingest of a table for a day did, by row: the counts add up to `rows_read`."""

    table: str
    day: date
    counts: dict[str, int]
    history: bool = False


class SourceStore:
    """The validated store under `root` (one folder per table, one manifest + parts per day)."""

    def __init__(self, root: Path, program_tz: str = "Europe/Moscow") -> None:
        self.root = Path(root)
        self.program_tz = program_tz
        # One instance is one consistent view (a step's catch-up, one load): the days and manifests
        # are listed once and then kept up to date by this instance's own commits. Re-listing them
        # for every ingested day made a catch-up of N days cost N² file checks.
        self._day_lists: dict[str, list[date]] = {}
        self._manifests: dict[tuple[str, date], dict[str, object]] = {}

    # ---------------------------------------------------------------- ingest

    def ingest_day(self, table: str, day: date, raw: RawTable, *, now: datetime, history: bool = False) -> IngestResult:
        """Validate the rows of `raw` first visible on `day` (every row visible then when `history`)
        and store them as the part of `day`, replacing an earlier ingest of that day."""
        schema = SCHEMAS[table]
        as_of = AsOf(day, self.program_tz)
        frame = raw.frame
        if table == "categories":
            result = validate(schema, raw, as_of, now=now)
            return self._commit(
                table, day, result.kept, result.quarantine, history=True, counts=result.counts, origin=raw.origin
            )
        if not history:
            self._manifests_up_to(table, day - timedelta(days=1))  # the day before must be stored: no gaps
            held = [d for d in self.history_days(table) if d >= day]
            if held:
                raise StoreError(
                    f"source store: {table} holds {day.isoformat()} in its history ingest of {held[0].isoformat()}"
                )
        if table == "check_items":
            return self._ingest_items(day, raw, as_of, now=now)

        at = _visibility(schema, frame.columns)
        start = AsOf(day - timedelta(days=1), self.program_tz).cutoff_literal
        in_day = at < as_of.cutoff_literal if history else (at >= start) & (at < as_of.cutoff_literal)
        undated = frame.filter(at.is_null())
        day_rows = frame.filter(in_day.fill_null(False))
        carry: tuple[str, ...] = ()
        if history:  # each row keeps its own visibility day: a scan as of an earlier day sees it then
            day_rows = day_rows.with_columns(_local_day(at, self.program_tz).alias(VDAY))
            carry = (VDAY,)
        numbered = _numbered(day_rows, raw.origin)
        result = _validate(_without_duplicate_rule(schema), numbered, as_of, now=now, carry=carry)
        # rows without a visibility instant (and lines of a CSV that never became rows) are never
        # visible; every read holds them again, so each ingest records them apart and a scan counts
        # only the latest ingest's
        dated = _validate(schema, RawTable(undated, raw.origin, raw.rejected), as_of, now=now)
        stored = self._flag(table, day, result.kept, history=history)
        quarantine = result.quarantine if history else result.quarantine.with_columns(pl.lit(day).alias(VDAY))
        counts = {
            "rows_read": frame.height,
            "rows_stored": stored.height,
            "rows_quarantined": result.quarantine.height,
            "rows_undated_quarantined": dated.quarantine.height,
            "rows_undated_not_visible": dated.not_yet_visible.height,
            "rows_other_days": frame.height - day_rows.height - undated.height,
        }
        return self._commit(
            table,
            day,
            stored,
            quarantine,
            history=history,
            counts=counts,
            undated=dated.quarantine,
            origin=raw.origin,
        )

    def _ingest_items(self, day: date, raw: RawTable, as_of: AsOf, *, now: datetime) -> IngestResult:
        """Lines of the checks that entered the store on `day` (their key is per check, so all lines
        of a key arrive together and the duplicate rule is `validate`'s own)."""
        schema = SCHEMAS["check_items"]
        history = bool(self.manifest("checks", day)["history"])
        carry: tuple[str, ...] = ()
        if history:
            # every line of a stored check, on the visibility day of its check's first stored row
            first = self._part("checks", day, columns=["check_id", VDAY]).group_by("check_id").agg(pl.col(VDAY).min())
            rows = raw.frame.join(first.collect(), on="check_id", how="inner", maintain_order="left")
            carry = (VDAY,)
        else:
            new_ids = self._part("checks", day, columns=["check_id"]).unique().collect()
            seen = self._seen_before("checks", day, new_ids)
            new_ids = new_ids.join(seen, on="check_id", how="anti", nulls_equal=True)
            rows = raw.frame.join(new_ids, on="check_id", how="semi", nulls_equal=True, maintain_order="left")
        result = _validate(schema, RawTable(rows, raw.origin), as_of, now=now, carry=carry)
        orphans = self._orphan_lines(day, raw, as_of, now=now, history=history)
        kept = result.kept if history else result.kept.with_columns(pl.lit(day).alias(VDAY))
        kept = kept.with_columns(
            pl.int_range(pl.len(), dtype=pl.Int64).alias(SEQ),
            pl.lit(False).alias(REPEAT),
            pl.lit(False).alias(PENDING),
            _key_hash(list(schema.key)).alias(KHASH),
        )
        if history:
            kept = kept.sort(VDAY, SEQ)
        quarantine = result.quarantine if history else result.quarantine.with_columns(pl.lit(day).alias(VDAY))
        rejected = _validate(schema, RawTable(raw.frame.clear(), raw.origin, raw.rejected), as_of, now=now)
        counts = {
            "rows_read": raw.frame.height,
            "rows_stored": kept.height,
            "rows_quarantined": result.quarantine.height,
            "rows_other_days": raw.frame.height - rows.height,
            "rows_of_quarantined_checks": orphans.height,
        }
        return self._commit(
            "check_items",
            day,
            kept,
            quarantine,
            history=history,
            counts=counts,
            undated=rejected.quarantine,
            origin=raw.origin,
            orphans=orphans,
        )

    def _orphan_lines(self, day: date, raw: RawTable, as_of: AsOf, *, now: datetime, history: bool) -> pl.DataFrame:
        """The lines of checks set aside when ingested on `day`, as quarantine rows with their
        `check_id` and visible day: `validate` reports them (`check missing or quarantined`, unless a
        rule of the line itself comes first), and without them they would count as not yet visible.

        A check id counts once, on the first day one of its rows was set aside, and not when a row of it
        was stored that day or earlier (its lines are stored with it). `quarantine_at` drops the lines
        of a check kept as of the day asked for (a valid row of it arrived later)."""
        schema = SCHEMAS["check_items"]
        checks = self.manifest("checks", day)
        no_orphans = _orphan_frame(pl.DataFrame(schema={**QUARANTINE_SCHEMA, VDAY: pl.Date()}))
        if checks.get("quarantine") is None or raw.frame.is_empty():
            return no_orphans
        bad = (
            pl.scan_parquet(self.root / "checks" / str(checks["quarantine"]))
            .select(_quarantined_check_id(), pl.col(VDAY))
            .filter(pl.col("check_id").is_not_null())
            .group_by("check_id")
            .agg(pl.col(VDAY).min())
            .collect()
        )
        if bad.is_empty():
            return no_orphans
        # the day's part (a history part holds every earlier day too) and, after it, the earlier parts
        part = self._part("checks", day, columns=["check_id", VDAY]).group_by("check_id").agg(pl.col(VDAY).min())
        bad = bad.join(part.collect().rename({VDAY: "__stored"}), on="check_id", how="left")
        bad = bad.filter(pl.col("__stored").is_null() | (pl.col("__stored") > pl.col(VDAY))).drop("__stored")
        if not history:
            bad = bad.join(self._seen_before("checks", day, bad.select("check_id")), on="check_id", how="anti")
            earlier = self._manifests_up_to("check_items", day - timedelta(days=1)) if self._days("check_items") else []
            if any(m.get("orphans") is not None for m in earlier):
                before = self._scan_manifests("check_items", earlier, day - timedelta(days=1), "orphans")
                bad = bad.join(before.select("check_id").unique().collect(), on="check_id", how="anti")
        lines = raw.frame.join(bad, on="check_id", how="inner", maintain_order="left")
        no_checks = pl.DataFrame(schema={"check_id": pl.String()})
        result = validate(schema, RawTable(lines, raw.origin), as_of, now=now, parent_keys=no_checks, carry=(VDAY,))
        return _orphan_frame(result.quarantine)

    def _flag(self, table: str, day: date, kept: pl.DataFrame, *, history: bool) -> pl.DataFrame:
        """Add the store's columns: visible day, file order, whether the key was seen before
        (`__repeat`: earlier day or earlier in this day) and whether the customer was unknown at
        `day` (`__pending`: the row may become visible on a later registration day)."""
        schema = SCHEMAS[table]
        key = list(schema.key)
        repeat = pl.struct(key).is_first_distinct().not_()
        if history:
            # rows carry their own visible day: a customer is known from the first day one of her
            # rows is stored (`validate` keeps exactly those ids as of each day)
            pending = pl.lit(False)
            if schema.customer_column is not None and kept.height:
                first = (
                    self.stored("customers", day)
                    .group_by("customer_id")
                    .agg(pl.col(VDAY).min().alias("__first"))
                    .rename({"customer_id": schema.customer_column})
                    .collect()
                )
                kept = kept.join(first, on=schema.customer_column, how="left", maintain_order="left")
                pending = pl.col("__first").is_null() | (pl.col("__first") > pl.col(VDAY))
            flagged = kept.with_columns(
                pl.int_range(pl.len(), dtype=pl.Int64).alias(SEQ),
                repeat.alias(REPEAT),
                pending.fill_null(True).alias(PENDING),
                _key_hash(key).alias(KHASH),
            ).drop("__first", strict=False)
            return flagged.sort(VDAY, SEQ)  # by day, so a scan as of an earlier day skips row groups
        if kept.height:
            seen = self._seen_before(table, day, kept.select(key).unique()).with_columns(pl.lit(True).alias("__seen"))
            kept = kept.join(seen, on=key, how="left", nulls_equal=True, maintain_order="left")
            repeat = repeat | pl.col("__seen").fill_null(False)
        pending = pl.lit(False)
        if schema.customer_column is not None and kept.height:
            known = self.scan_as_of("customers", day).select(pl.col("customer_id").alias("__known_id"))
            known_ids = known.collect().get_column("__known_id")
            pending = pl.col(schema.customer_column).is_in(known_ids.implode()).not_()
        return kept.with_columns(
            pl.lit(day).alias(VDAY),
            pl.int_range(pl.len(), dtype=pl.Int64).alias(SEQ),
            repeat.alias(REPEAT),
            pending.fill_null(True).alias(PENDING),
            _key_hash(key).alias(KHASH),
        ).drop("__seen", strict=False)

    def _seen_before(self, table: str, day: date, keys: pl.DataFrame) -> pl.DataFrame:
        """The `keys` (distinct key rows) already stored on an earlier day."""
        return self._stored_keys(table, day - timedelta(days=1), keys)

    def _stored_keys(self, table: str, day: date, keys: pl.DataFrame) -> pl.DataFrame:
        """The `keys` (distinct key rows) stored on `day` or before.

        Every stored row carries a 64-bit hash of its key (`__khash`), so only that column of the
        parts is read in full; the key columns are decoded just for the rows whose hash matches (a
        collision costs a comparison, never a wrong answer). When a part's hashes came from another
        Polars version (the manifest's probe differs), the keys are compared directly.
        """
        key = keys.columns
        if keys.is_empty():  # a quiet day of a catch-up: nothing to look up in the parts
            return keys
        try:
            manifests = self._manifests_up_to(table, day)
        except StoreError:
            return keys.clear()
        found = _of_keys(self._scan_manifests(table, manifests, day), keys, key, manifests)
        return keys.join(found.select(key).unique().collect(), on=key, how="semi", nulls_equal=True)

    def _commit(
        self,
        table: str,
        day: date,
        data: pl.DataFrame,
        quarantine: pl.DataFrame,
        *,
        history: bool,
        counts: dict[str, int],
        undated: pl.DataFrame | None = None,
        origin: str = "",
        orphans: pl.DataFrame | None = None,
    ) -> IngestResult:
        """Write the day's files under fresh names, then switch the manifest to them atomically."""
        folder = self.root / table
        folder.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex[:12]
        data_file = f"{day.isoformat()}.{token}.parquet"
        data.write_parquet(folder / data_file)
        # most days set nothing aside: an empty quarantine part is not written (the manifest says None)
        quarantine_file = undated_file = None
        if not quarantine.is_empty():
            quarantine_file = f"{day.isoformat()}.{token}.quarantine.parquet"
            quarantine.cast(QUARANTINE_SCHEMA).write_parquet(folder / quarantine_file)  # type: ignore[arg-type]
        if undated is not None and not undated.is_empty():
            undated_file = f"{day.isoformat()}.{token}.undated.parquet"
            undated.cast(QUARANTINE_SCHEMA).write_parquet(folder / undated_file)  # type: ignore[arg-type]
        orphans_file = None
        if orphans is not None and not orphans.is_empty():
            orphans_file = f"{day.isoformat()}.{token}.orphans.parquet"
            orphans.write_parquet(folder / orphans_file)
        manifest = {
            "day": day.isoformat(),
            "history": history,
            "data": data_file,
            "quarantine": quarantine_file,
            "undated": undated_file,
            "orphans": orphans_file,
            "hash_probe": _hash_probe(),
            "repeats": int(data.get_column(REPEAT).sum()) if REPEAT in data.columns else 0,
            "pending": int(data.get_column(PENDING).sum()) if PENDING in data.columns else 0,
            "counts": counts,
            "origin": origin,
        }
        tmp = folder / f".{day.isoformat()}.{token}.json"
        tmp.write_text(json.dumps(manifest, sort_keys=True), encoding="utf8")
        os.replace(tmp, folder / f"{day.isoformat()}.json")
        self._manifests[(table, day)] = manifest
        if table in self._day_lists and day not in self._day_lists[table]:
            self._day_lists[table] = sorted([*self._day_lists[table], day])
        prefix = f"{day.isoformat()}."
        for name in os.listdir(folder):  # not Path.glob: a catch-up commits hundreds of days in a row
            if name.startswith(prefix) and name.endswith(".parquet") and token not in name:
                (folder / name).unlink()
        return IngestResult(table=table, day=day, counts=counts, history=history)

    # ---------------------------------------------------------------- scans

    def manifest(self, table: str, day: date) -> dict[str, object]:
        """The day's manifest; parsed once per version of the file (a re-ingest replaces the file)."""
        known = self._manifests.get((table, day))
        if known is not None:
            return dict(known)
        path = self.root / table / f"{day.isoformat()}.json"
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise StoreError(
                f"source store: {table} was not ingested for {day.isoformat()}; ingest that day first"
            ) from None
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        cached = _MANIFESTS.get(path)
        if cached is None or cached[0] != version:
            cached = (version, json.loads(path.read_text(encoding="utf8")))
            _MANIFESTS[path] = cached
        self._manifests[(table, day)] = cached[1]
        return dict(cached[1])

    def _days(self, table: str) -> list[date]:
        if table not in self._day_lists:
            folder = self.root / table
            found = folder.glob("*.json") if folder.is_dir() else ()
            self._day_lists[table] = sorted(date.fromisoformat(p.name.removesuffix(".json")) for p in found)
        return list(self._day_lists[table])

    def _manifests_up_to(self, table: str, day: date) -> list[dict[str, object]]:
        """The manifests a scan as of `day` reads: from the last history ingest up to `day`, no gaps."""
        all_days = self._days(table)
        days = [d for d in all_days if d <= day]
        manifests = [self.manifest(table, d) for d in days]
        starts = [i for i, m in enumerate(manifests) if m["history"]]
        if not starts and table != "categories":
            # a history ingest holds every row visible on its day, each with its own visible day:
            # the first one after `day` answers for `day` too (its scans keep the rows of days <= day)
            for later in (d for d in all_days if d > day):
                manifest = self.manifest(table, later)
                if manifest["history"]:
                    return [manifest]
        if not days:
            raise StoreError(f"source store: {table} has no ingested day on or before {day.isoformat()}")
        if not starts:
            raise StoreError(f"source store: {table} has no first (history) ingest on or before {day.isoformat()}")
        manifests = manifests[starts[-1] :]
        if table == "categories":
            return manifests[-1:]
        first = date.fromisoformat(str(manifests[0]["day"]))
        expected = [first + timedelta(days=i) for i in range((day - first).days + 1)]
        have = {date.fromisoformat(str(m["day"])) for m in manifests}
        missing = [d for d in expected if d not in have]
        if missing:
            raise StoreError(
                f"source store: {table} was not ingested for {missing[0].isoformat()}; ingest that day first"
            )
        return manifests

    def history_days(self, table: str) -> list[date]:
        """The days of the table's history ingests (the first run on an empty store writes one)."""
        return [d for d in self._days(table) if self.manifest(table, d)["history"]]

    def ingest_plan(self, table: str, day: date) -> list[tuple[date, bool]]:
        """The ingests, `(day, history)` in order, after which the store answers for `day` as day-by-day
        ingests would: on an empty store every row visible on the day before as history (each row on
        its own visible day) and then `day` itself; after the last stored day the days in between
        (catch-up) and `day`; a stored day again (replaced); nothing for a day a history ingest holds.
        Categories have no history: the table as read, for `day`."""
        if table == "categories":
            return [(day, True)]
        days = self._days(table)
        if not days:
            return [(day - timedelta(days=1), True), (day, False)]
        if any(h >= day for h in self.history_days(table)):
            return []
        last = days[-1]
        if day <= last:
            return [(day, False)]
        return [(last + timedelta(days=i), False) for i in range(1, (day - last).days + 1)]

    def _scan_manifests(
        self, table: str, manifests: list[dict[str, object]], day: date, kind: str = "data"
    ) -> pl.LazyFrame:
        """The `kind` files of `manifests` as of `day`: a history part of a later day only with the
        rows of days <= `day` (its rows are sorted by day: the filter skips whole row groups). Days
        whose quarantine part is empty have none (None in the manifest)."""
        if kind != "data":
            manifests = [m for m in manifests if m.get(kind) is not None]
            if not manifests:
                return pl.LazyFrame(schema=QUARANTINE_SCHEMA)
        whole = [self.root / table / str(m[kind]) for m in manifests if date.fromisoformat(str(m["day"])) <= day]
        scans = [pl.scan_parquet(whole)] if whole else []
        for m in manifests:
            if date.fromisoformat(str(m["day"])) > day:
                scans.append(pl.scan_parquet(self.root / table / str(m[kind])).filter(pl.col(VDAY) <= day))
        return scans[0] if len(scans) == 1 else pl.concat(scans, how="vertical")

    def _part(self, table: str, day: date, columns: list[str]) -> pl.LazyFrame:
        return pl.scan_parquet(self.root / table / str(self.manifest(table, day)["data"])).select(columns)

    def stored(self, table: str, day: date) -> pl.LazyFrame:
        """Every stored row up to `day`, with the store's columns, before the rules that depend on D."""
        return self._scan_manifests(table, self._manifests_up_to(table, day), day)

    def scan_as_of(self, table: str, day: date) -> pl.LazyFrame:
        """The rows `validate` keeps for `day`, lazily (the store's own columns dropped)."""
        return self._kept(table, day).drop(INTERNAL, strict=False)

    def scan_with_visible_day(self, table: str, day: date) -> pl.LazyFrame:
        """`scan_as_of` with each row's visible day (`VISIBLE_DAY`): the day a row entered the store,
        so a step can pick the rows that arrived late on `day` without reading the earlier ones."""
        return self._kept(table, day).drop([c for c in INTERNAL if c != VDAY], strict=False)

    def _kept(self, table: str, day: date) -> pl.LazyFrame:
        """`scan_as_of` with the store's columns (visible day, order, flags) still on."""
        schema = SCHEMAS[table]
        manifests = self._manifests_up_to(table, day)
        if table == "check_items":
            kept_checks = self.scan_as_of("checks", day).select("check_id")
            rows = self._scan_manifests(table, manifests, day)
            return rows.join(kept_checks, on="check_id", how="semi", nulls_equal=True)
        rows, files, _ = self._known(table, day, manifests)
        if any(int(m["repeats"]) for m in manifests):  # type: ignore[call-overload]
            key = list(schema.key)
            contested, first, _ = self._contested(files, rows, key, manifests)
            # `rows` appears once in the plan, so a consumer's filter reaches the Parquet scan
            rows = pl.concat([rows.join(contested.lazy(), on=key, how="anti", nulls_equal=True), first.lazy()])
        return rows

    def _known(
        self, table: str, day: date, manifests: list[dict[str, object]]
    ) -> tuple[pl.LazyFrame, tuple[object, ...], pl.LazyFrame | None]:
        """The stored rows as of `day` whose customer is known at `day`, the files they are read from
        (with the table and day: `_contested`'s cache key), and the rows the unknown-customer rule
        drops (None when no row ever waited for its customer). Every stored row is judged, not only
        those stored while their customer was unknown: a re-ingest of an earlier day of `customers`
        can move a registration later."""
        column = SCHEMAS[table].customer_column
        rows = self._scan_manifests(table, manifests, day)
        files: tuple[object, ...] = (table, day, *(str(m["data"]) for m in manifests))
        if column is None or not any(int(m["pending"]) for m in manifests):  # type: ignore[call-overload]
            return rows, files, None
        known = self.scan_as_of("customers", day).select(pl.col("customer_id").alias(column))
        files += tuple(str(m["data"]) for m in self._manifests_up_to("customers", day))
        unknown = rows.join(known, on=column, how="anti", nulls_equal=True)
        return rows.join(known, on=column, how="semi", nulls_equal=True), files, unknown

    def _contested(
        self, files: tuple[object, ...], rows: pl.LazyFrame, key: list[str], manifests: list[dict[str, object]]
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """The keys with a repeated row as of `day`, the first row of each in (visible day, file
        order) — `validate`'s duplicate rule keeps it — and the others, which it drops. Only keys with
        a `__repeat` row can hold a duplicate. Collected once per process for the same stored files.

        Why eager: in one lazy plan the deduplicated rows and the others share the scan, and Polars
        caches a shared scan whole, so no consumer's filter (the rows since D, one customer) reached
        the Parquet files: every read of a table paid for its whole history. Collected, the contested
        rows are a few thousand, and the plan reads the rest only where it is asked to. The files of
        a day are never rewritten (a re-ingest writes new names), so their names (`files`: the table,
        the day and the files the rows are read from) key the cache."""
        cached = _CONTESTED.get((self.root, files))
        if cached is None:
            contested = rows.filter(pl.col(REPEAT)).select(key).unique().collect()
            theirs = _of_keys(rows, contested, key, manifests).sort(VDAY, SEQ).collect()
            first = pl.struct(key).is_first_distinct()
            cached = _CONTESTED[(self.root, files)] = (contested, theirs.filter(first), theirs.filter(~first))
            while len(_CONTESTED) > _CONTESTED_KEPT:
                _CONTESTED.pop(next(iter(_CONTESTED)))
        return cached

    def scan_entered(self, table: str, day: date) -> pl.DataFrame:
        """The rows kept as of `day` that were not kept the day before: the day's own rows, and earlier
        rows of customers who registered on `day` (what incremental features add on `day`).

        Reads the day's part, plus earlier parts only for what the day's rows can change: earlier rows
        of a repeated key, earlier rows of the day's new customers (`__pending`, pruned by the Parquet
        statistics). Rows that stop being kept (a duplicate displaced by an earlier row whose customer
        registered only now) are not reported: incremental state must then be rebuilt.
        """
        schema = SCHEMAS[table]
        key = list(schema.key)
        manifest = self.manifest(table, day)
        part = pl.scan_parquet(self.root / table / str(manifest["data"]))
        if table == "check_items":
            checks = self.scan_entered("checks", day)
            own = part.join(checks.lazy().select("check_id"), on="check_id", how="semi").collect()
            # lines are stored with the first stored row of their check id: entering checks whose id
            # was stored before today (customer registered today, or an earlier row of the id lost
            # its customer) have their lines in earlier parts
            late_ids = self._seen_before("checks", day, checks.select("check_id").unique())
            if late_ids.height:
                older = self.stored(table, day).filter(pl.col(VDAY) < day)
                late = older.join(late_ids.lazy(), on="check_id", how="semi").collect()
                own = pl.concat([own, late], how="vertical")
            return own.drop(INTERNAL, strict=False)
        if schema.customer_column is None:
            candidates = part
        else:
            column = schema.customer_column
            known = self.scan_as_of("customers", day).select(pl.col("customer_id").alias(column))
            candidates = part.join(known, on=column, how="semi")
            new_customers = self.scan_entered("customers", day).select(pl.col("customer_id").alias(column))
            if new_customers.height:
                earlier = self.stored(table, day).filter(pl.col(PENDING) & (pl.col(VDAY) < day))
                registered_now = earlier.join(new_customers.lazy(), on=column, how="semi")
                candidates = pl.concat([candidates, registered_now], how="vertical")
        rows = candidates.collect()
        if rows.height and bool(rows.get_column(REPEAT).any()):
            # the exact rule for the few contested keys: keep the rows that are first of their key at D
            contested = rows.filter(pl.col(REPEAT)).select(key).unique()
            hashes = contested.select(_key_hash(key).alias(KHASH)).get_column(KHASH)
            same_key = (
                self.stored(table, day)
                .filter(pl.col(KHASH).is_in(hashes.implode()))
                .join(contested.lazy(), on=key, how="semi", nulls_equal=True)
            )
            if schema.customer_column is not None:
                known = self.scan_as_of("customers", day).select(pl.col("customer_id").alias(schema.customer_column))
                same_key = same_key.join(known, on=schema.customer_column, how="semi", nulls_equal=True)
            winners = same_key.sort(VDAY, SEQ).filter(pl.struct(key).is_first_distinct()).select(VDAY, SEQ).collect()
            rows = pl.concat(
                [
                    rows.join(contested, on=key, how="anti", nulls_equal=True),
                    rows.join(winners, on=[VDAY, SEQ], how="semi"),
                ],
                how="vertical",
            )
        return rows.drop(INTERNAL, strict=False)

    def quarantine_as_of(self, table: str, day: date) -> pl.LazyFrame:
        """Rows set aside when ingested (the rules that do not depend on D), up to `day`; rows with no
        visibility timestamp once, from the latest ingest."""
        manifests = self._manifests_up_to(table, day)
        at_ingest = self._scan_manifests(table, manifests, day, "quarantine").drop(VDAY, strict=False)
        latest = manifests[-1].get("undated")
        if latest is None:
            return at_ingest
        undated = pl.scan_parquet(self.root / table / str(latest))
        return pl.concat([at_ingest, undated], how="vertical")

    def _orphans_at(self, day: date) -> pl.DataFrame:
        """The lines of checks set aside at ingest (`_orphan_lines`) that no later row of their check
        took over by `day`: once a row of the check is stored, its lines are ingested with it and
        reported (kept, or quarantined by their own rule or `check missing or quarantined`) from there."""
        manifests = self._manifests_up_to("check_items", day)
        if all(m.get("orphans") is None for m in manifests):
            return pl.DataFrame(schema=QUARANTINE_SCHEMA)
        orphans = self._scan_manifests("check_items", manifests, day, "orphans").collect()
        # a stored row of the check took its lines over (they were ingested with it): found by the
        # checks' key hashes, so the lines of history are not read
        taken = self._stored_keys("checks", day, orphans.select("check_id").unique())
        lines = orphans.join(taken, on="check_id", how="anti", nulls_equal=True).sort(VDAY, "__line")
        return lines.select(list(QUARANTINE_SCHEMA))

    def quarantine_at(self, table: str, day: date) -> pl.DataFrame:
        """Every row set aside as of `day`, in `QUARANTINE_SCHEMA`, as `validate` reports it for `day`:
        the rows quarantined at ingest up to `day` and the stored rows the rules that depend on D drop
        (`unknown customer`, `duplicate key`; for check lines `check missing or quarantined` when their
        check is not kept at D). Check lines are read with their check, so lines of a check that never
        entered the store (absent from the source, or itself quarantined) are not reported, and a bad
        line is reported from its check's visible day on."""
        return self.split_at(table, day)[1]

    def split_at(self, table: str, day: date) -> tuple[int, pl.DataFrame]:
        """The number of rows kept as of `day` and `quarantine_at(table, day)`, together: the kept rows
        are the stored ones less those the rules that depend on D drop, so nobody counts the whole
        history again. The duplicate rule's rows come from `_contested` (cached, shared with the
        scans); a check line's from `_stored_checks_not_kept`."""
        at_ingest = self.quarantine_as_of(table, day).collect()
        if table == "categories":
            return int(self.scan_as_of(table, day).select(pl.len()).collect().item()), at_ingest
        schema = SCHEMAS[table]
        manifests = self._manifests_up_to(table, day)
        origin = str(manifests[-1].get("origin", ""))
        stored = int(self._scan_manifests(table, manifests, day).select(pl.len()).collect().item())
        dropped: list[tuple[str, str, pl.LazyFrame]] = []
        if table == "check_items":
            rows = self._scan_manifests(table, manifests, day)
            parents = self._manifests_up_to("checks", day)
            if any(int(m["pending"]) or int(m["repeats"]) for m in parents):  # type: ignore[call-overload]
                orphans = rows.filter(pl.col("check_id").is_in(self._stored_checks_not_kept(day, parents).implode()))
                dropped.append(("check missing or quarantined", "check_id", orphans))
        else:
            rows, files, unknown = self._known(table, day, manifests)
            if unknown is not None:
                dropped.append(("unknown customer", str(schema.customer_column), unknown))
            if any(int(m["repeats"]) for m in manifests):  # type: ignore[call-overload]
                key = list(schema.key)
                _, _, losers = self._contested(files, rows, key, manifests)
                dropped.append(("duplicate key", ",".join(key), losers.lazy()))
        frames = [at_ingest]
        if table == "check_items":
            frames.append(self._orphans_at(day))
        for rule, column_name, lazy in dropped:
            frame = lazy.collect().sort(VDAY, SEQ)
            if frame.height:
                data = [c for c in frame.columns if c not in INTERNAL]
                frames.append(
                    frame.select(
                        pl.lit(table).alias("source_table"),
                        pl.lit(origin).alias("source_file"),
                        pl.lit(rule).alias("rule"),
                        pl.lit(column_name).alias("column_name"),
                        _row_json(frame, data).alias("row_data"),
                    ).cast(QUARANTINE_SCHEMA)  # type: ignore[arg-type]
                )
            stored -= frame.height
        return stored, pl.concat(frames, how="vertical")

    def _stored_checks_not_kept(self, day: date, manifests: list[dict[str, object]]) -> pl.Series:
        """The ids of stored checks none of whose rows is kept as of `day`: their lines are orphans.

        Why not every line against every kept check: lines are stored with the first stored row of
        their check id, so a line's check id is always a stored one; the duplicate rule keeps one row
        of every id among the rows of known customers, so only ids all of whose rows wait for their
        customer lack a kept row. Those are few; the lines of history (40M at 1M × 800 days) are then
        filtered, not joined."""
        _, _, unknown = self._known("checks", day, manifests)
        if unknown is None:
            return pl.Series("check_id", [], dtype=pl.String())
        ids = unknown.select("check_id").unique().collect().get_column("check_id")
        kept = self.scan_as_of("checks", day).filter(pl.col("check_id").is_in(ids.implode())).select("check_id")
        return ids.to_frame().join(kept.collect(), on="check_id", how="anti", nulls_equal=True).get_column("check_id")

    def counts_as_of(self, table: str, day: date, rows_read: int) -> dict[str, int]:
        """How the `rows_read` rows of the source divide as of `day`: kept, quarantined (at ingest,
        or by the unknown-customer / duplicate / missing-check rules at `day`) and not yet visible."""
        kept, quarantine = self.split_at(table, day)
        quarantined = quarantine.height
        return {
            "rows_read": rows_read,
            "rows_kept": kept,
            "rows_quarantined": quarantined,
            "rows_not_yet_visible": rows_read - kept - quarantined,
        }


def _quarantined_check_id() -> pl.Expr:
    """`check_id` read back from a quarantine row of a check or a check line (`row_data`)."""
    return pl.col("row_data").str.json_path_match("$.check_id").alias("check_id")


def _orphan_frame(quarantine: pl.DataFrame) -> pl.DataFrame:
    """Quarantine rows of check lines with the `check_id` a scan filters on and their order in the part."""
    return quarantine.select(
        *QUARANTINE_SCHEMA,
        _quarantined_check_id(),
        pl.col(VDAY).cast(pl.Date()),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("__line"),
    ).cast(QUARANTINE_SCHEMA)  # type: ignore[arg-type]


def read_visible(data_dir: Path, table: str, day: date, *, program_tz: str, history: bool = False) -> RawTable:
    """A table from Parquet files, read only for the rows that can first become visible on `day`
    (every row visible then when `history`), plus rows without a timestamp; typed like `readers`.

    The day's filter runs inside the Parquet scan (predicate push-down), so the other days' rows are
    never materialised; `ingest_day` applies the exact rule again. Check lines are read for the
    checks of the day (`check_id` among them); categories whole. Other formats read everything.
    """
    schema = SCHEMAS[table]
    path = locate(data_dir, table)
    if path is None or path.suffix == ".csv" or schema.name == "categories":
        return read_file_table(data_dir, table)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    scan = pl.scan_parquet(files)
    columns = scan.collect_schema()
    if table == "check_items":
        checks = read_visible(data_dir, "checks", day, program_tz=program_tz, history=history).frame
        ids = checks.select("check_id").unique()
        frame = scan.join(ids.lazy(), on="check_id", how="semi", maintain_order="left").collect()
        return RawTable(coerce(schema, frame, origin=str(path)), str(path))
    if schema.visible_at is None:
        return read_file_table(data_dir, table)
    stamps = [schema.visible_at, *(["loaded_at"] if "loaded_at" in columns else [])]
    if not all(isinstance(columns.get(c), pl.Datetime) for c in stamps):
        return read_file_table(data_dir, table)
    upper = AsOf(day, program_tz).cutoff
    lower = AsOf(day - timedelta(days=1), program_tz).cutoff

    def literal(column: str, instant: datetime) -> pl.Expr:
        zone = getattr(columns[column], "time_zone", None)
        return pl.lit(instant.replace(tzinfo=None) if zone is None else instant).cast(columns[column])

    own = pl.col(schema.visible_at)
    visible = own < literal(schema.visible_at, upper)
    arrived = own >= literal(schema.visible_at, lower)
    if "loaded_at" in columns:
        loaded = pl.col("loaded_at")
        visible = visible & (loaded.is_null() | (loaded < literal("loaded_at", upper)))
        arrived = arrived | (loaded >= literal("loaded_at", lower)).fill_null(False)
    wanted = own.is_null() | (visible if history else visible & arrived)
    frame = scan.filter(wanted).collect()
    return RawTable(coerce(schema, frame, origin=str(path)), str(path))


def _key_hash(key: list[str]) -> pl.Expr:
    """A 64-bit hash of a row's key, stored with the row to find repeated keys cheaply."""
    return pl.struct(key).hash(11)


@functools.cache
def _hash_probe() -> int:
    """The hash of a fixed key: equal across runs exactly when `_key_hash` is the same function
    (computed once per process: the Polars in the process does not change)."""
    probe = pl.DataFrame({"k": ["probe"], "n": [1]}).select(_key_hash(["k", "n"]).alias("h"))
    return int(probe.item())


def _local_day(at: pl.Expr, program_tz: str) -> pl.Expr:
    """The program-local date of a UTC instant: the day D with cutoff(D-1) <= instant < cutoff(D)."""
    return at.dt.convert_time_zone(program_tz).dt.date()


def _visibility(schema: TableSchema, columns: list[str]) -> pl.Expr:
    """The instant a row becomes visible: its timestamp, or `loaded_at` when that is later.

    A run for D sees the row exactly when this is before D's cutoff (`validation._visible`); null
    when the row's own timestamp is missing (such a row is never visible).
    """
    assert schema.visible_at is not None
    own = pl.col(schema.visible_at)
    if "loaded_at" not in columns:
        return own
    return pl.when(own.is_null()).then(None).otherwise(pl.max_horizontal(own, pl.col("loaded_at")))


def _without_duplicate_rule(schema: TableSchema) -> TableSchema:
    """The same contract with a unique key, so `validate` applies every rule but the duplicate one."""
    return replace(schema, key=(*schema.key, _ROW))


def _numbered(frame: pl.DataFrame, origin: str) -> RawTable:
    return RawTable(frame.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(_ROW)), origin)


#: `SourceStore._contested` per (store root, stored files): a few thousand rows per table and day.
_CONTESTED: dict[tuple[Path, tuple[object, ...]], tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]] = {}
_CONTESTED_KEPT = 64


def _of_keys(
    rows: pl.LazyFrame, keys: pl.DataFrame, key: list[str], manifests: list[dict[str, object]]
) -> pl.LazyFrame:
    """The `rows` whose key is one of `keys`' (distinct key rows). The stored key hash is filtered
    first (pushed into the Parquet scan, so only those rows are decoded), then the key itself (hashes
    can collide). When a part's hashes came from another Polars version (its manifest's probe
    differs), only the key join decides."""
    if all(m.get("hash_probe") == _hash_probe() for m in manifests):
        hashes = keys.select(_key_hash(key)).to_series()
        rows = rows.filter(pl.col(KHASH).is_in(hashes.implode()))
    return rows.join(keys.lazy(), on=key, how="semi", nulls_equal=True)


def ingest_all(
    store: SourceStore, read: Callable[[str], RawTable], day: date, *, now: datetime, history: bool = False
) -> dict[str, IngestResult]:
    """Ingest every table for `day` in dependency order; `read(table)` returns a `RawTable`."""
    return {t: store.ingest_day(t, day, read(t), now=now, history=history) for t in TABLE_ORDER}
