"""The benchmark script at a tiny scale: the engines agree and the report has its columns.

Why: `make bench` is the project's only independent check of the segment semantics (DuckDB SQL written
apart from the Polars code) and produces the figures the README quotes. These tests keep the script
working and the cross-check honest; they never assert on timings or memory, which depend on the machine.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from loyalty_assets import bench

#: 500 customers is the smallest seeded data set found where seed 004 has members (2 on 2025-06-26),
#: so agreement is not just two engines returning nothing.
TINY = 500


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> bench.DataSet:
    return bench.ensure_data(TINY, tmp_path_factory.mktemp("bench") / str(TINY))


@pytest.fixture(scope="module")
def tiny_result(tiny_data: bench.DataSet) -> bench.ScaleResult:
    return bench.run_scale(tiny_data, repeat=1, threads=1)


def test_data_set_facts(tiny_data: bench.DataSet) -> None:
    assert tiny_data.customers > TINY  # plus the generator's bad-row customers
    assert tiny_data.check_lines > tiny_data.checks > 0
    assert 0 < tiny_data.input_bytes < tiny_data.total_bytes


def test_engines_agree_on_members(tiny_result: bench.ScaleResult) -> None:
    assert tiny_result.mismatches == []
    results = [r for er in tiny_result.runs.values() for r in er.results]
    assert {r["engine"] for r in results} == set(bench.ENGINES)
    assert len({r["members"] for r in results}) == 1
    assert len({r["ids_sha256"] for r in results}) == 1
    assert results[0]["members"] > 0
    assert {r["threads"] for r in results} == {1}
    assert {r["cutoff"] for r in results} == {"2025-06-26T21:00:00+00:00"}
    polars = tiny_result.runs[bench.POLARS].results[0]
    assert polars["tables_read"] == sorted(bench.SQL_TABLES)  # the SQL reads what the specs need


def test_markdown_has_the_expected_columns(tiny_result: bench.ScaleResult) -> None:
    markdown = bench.render_markdown([tiny_result], threads=1, repeat=1, run_date=bench.RUN_DATE)
    lines = markdown.splitlines()
    header = (
        "| scale (customers) | check lines | input Parquet (MB) | engine | step | median s "
        "| peak RSS (MB) | ratio polars/duckdb | members |"
    )
    assert header in lines
    rows = [line for line in lines if line.startswith(f"| {TINY:,} |")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert all(len(c) == len(bench.COLUMNS) for c in cells)
    assert {(c[3], c[4]) for c in cells} == {
        (bench.POLARS, bench.READ),
        (bench.POLARS, bench.FEATURES),
        (bench.POLARS, bench.TOTAL),
        (bench.DUCKDB, bench.READ),
        (bench.DUCKDB, bench.FEATURES),
        (bench.DUCKDB, bench.TOTAL),
        (bench.DUCKDB_ONE_QUERY, bench.TOTAL),
    }
    assert len({c[8] for c in cells}) == 1  # one member count for every engine and step
    assert "Polars" in markdown and "DuckDB" in markdown and "MISMATCH" not in markdown


def test_cli_writes_the_report(tiny_data: bench.DataSet, tmp_path: Path) -> None:
    out = tmp_path / "results" / "latest.md"
    args = ["--scales", str(TINY), "--data-dir", str(tiny_data.path), "--repeat", "1", "--threads", "1"]
    code = bench.main([*args, "--out", str(out)])
    assert code == 0
    assert "| ratio polars/duckdb |" in out.read_text(encoding="utf-8")


def test_a_disagreement_fails_loudly(
    tiny_data: bench.DataSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fake_child(
        engine: str, data_dir: Path, run_date: date, now: datetime, threads: int, catalog: Path, segment: str
    ) -> dict[str, Any]:
        members = 3 if engine == bench.POLARS else 4
        return {
            "engine": engine,
            "threads": threads,
            "seconds": {bench.TOTAL: 1.0},
            "peak_rss": {bench.TOTAL: 1},
            "baseline_rss": 1,
            "members": members,
            "ids_sha256": str(members),
            "cutoff": "2025-06-26T21:00:00+00:00",
            "validated_bytes": 1,
        }

    monkeypatch.setattr(bench, "run_child", fake_child)
    args = ["--scales", str(TINY), "--data-dir", str(tiny_data.path), "--repeat", "1"]
    code = bench.main([*args, "--out", str(tmp_path / "latest.md")])
    assert code == 1
    assert "MISMATCH" in capsys.readouterr().out
