"""The incremental benchmark at a tiny scale: it runs, and its features equal the full path's.

Why: the README's "Incremental state" figures come from this script, and it doubles as an end-to-end
check (generated data → source store → states → features, against `load_snapshot` + `compute_features`).
No timing or memory is asserted: they depend on the machine.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from loyalty_assets import bench_incremental


def test_tiny_run_reports_every_step_and_equal_features(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_incremental.main(["--customers", "300", "--days", "20", "--work", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    for step in ("first_run", "incremental", "full"):
        assert f"| 300 | 20 | {step} |" in table
    work = tmp_path / "300x20"
    full, inc = pl.read_parquet(work / "full.parquet"), pl.read_parquet(work / "incremental.parquet")
    assert full.height > 0 and full.equals(inc)
    assert full.get_column("purchase_count").sum() > 0


def test_compare_fails_on_a_differing_column(tmp_path: Path) -> None:
    frame = pl.DataFrame({"customer_id": [1, 2], "purchase_count": [1, 0]})
    frame.write_parquet(tmp_path / "full.parquet")
    frame.with_columns(pl.lit(3).alias("purchase_count")).write_parquet(tmp_path / "incremental.parquet")
    with pytest.raises(SystemExit, match="purchase_count"):
        bench_incremental.compare(tmp_path)
