"""Sources read from a database through `sql/sources/*.sql` give the same frames as files."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from loyalty_assets.sources.frames import AsOf
from loyalty_assets.sources.readers import make_reader
from loyalty_assets.sources.schemas import SCHEMAS
from loyalty_assets.sources.snapshot import load_snapshot

NOW = datetime(2025, 6, 30, tzinfo=UTC)


def csv_folder_to_sqlite(folder: Path, target: Path) -> None:
    """Load every CSV of a fixture into a SQLite file as text columns (as an export would)."""
    with sqlite3.connect(target) as conn:
        for table in SCHEMAS:
            frame = pl.read_csv(folder / f"{table}.csv", infer_schema=False)
            columns = ", ".join(f'"{c}" TEXT' for c in frame.columns)  # identifiers from the contract
            conn.execute(f'CREATE TABLE "{table}" ({columns})')
            marks = ", ".join("?" for _ in frame.columns)
            conn.executemany(f'INSERT INTO "{table}" VALUES ({marks})', frame.rows())


def test_sql_source_equals_file_source(birthday_data: Path, tmp_path: Path) -> None:
    database = tmp_path / "source.db"
    csv_folder_to_sqlite(birthday_data, database)
    point = AsOf(date(2025, 2, 22))
    from_files = load_snapshot(make_reader(birthday_data, None), point, now=NOW)
    from_sql = load_snapshot(make_reader(birthday_data, f"sqlite:///{database}", point.cutoff), point, now=NOW)
    for table in SCHEMAS:
        expected = getattr(from_files.frames, table)
        assert_frame_equal(getattr(from_sql.frames, table).select(expected.columns), expected, check_row_order=False)
    # The checks query pushes the cutoff down: C2 (10 Feb) is in, nothing after 22 Feb could be.
    assert sorted(from_sql.frames.checks["check_id"]) == ["C1", "C2"]
