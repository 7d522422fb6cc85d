"""The whole-pipeline benchmark at a tiny scale: the report has its stages and its figures add up.

Why: `make bench-pipeline` produces the figures the README quotes against issue 9's targets. These tests
keep the script working and its arithmetic honest — rows reported as written are the rows the warehouse
holds for the date (counted here with plain `SELECT COUNT(*)`, not through the script), messages/s is
messages ÷ render seconds, the peers wrote the same rows. They never assert on timings or memory.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from loyalty_assets import bench_pipeline as bp
from tests.conftest import postgres_base_url

# long: scheduled first, and kept together so one worker builds the module fixture once
pytestmark = pytest.mark.long

TINY = 400
DAY = bp.RUN_DATE
PREVIOUS = "2025-06-25"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny sample, generated once for both warehouses' runs."""
    return tmp_path_factory.mktemp("bench_data")


@pytest.fixture(scope="module")
def run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], Path]:
    root = tmp_path_factory.mktemp("bench_pipeline")
    results = bp.run_benchmark([TINY], warehouses=["sqlite"], data_root=data_root, work_dir=root / "work")
    return results, root / "work" / str(TINY) / "sqlite"


def _count(db: Path, table: str, day: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f'SELECT COUNT(*) FROM "{table}" WHERE partition_date = ?', (day,)).fetchone()[0])


def _table_rows(markdown: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines() if line.startswith("| ")]


def test_report_has_every_stage(run: tuple[list[dict[str, Any]], Path]) -> None:
    results, _ = run
    markdown = bp.render_markdown(results, day=DAY, command="test")
    summary, stage_table = markdown.split("## Stage by stage")
    assert _table_rows(summary)[0] == list(bp.SUMMARY_COLUMNS)
    assert len(_table_rows(summary)) == 2  # the header and one scale × warehouse
    rows = _table_rows(stage_table.split("## Targets")[0])
    assert rows[0] == list(bp.COLUMNS)
    stages = {r[2] for r in rows[1:]}
    for stage in (
        "read+validate",
        "features",
        "segments",
        "campaigns (derived, incl. render)",
        "run_day total",
        "render (messages)",
        "write message_outbox",
        "write triggered_customers",
        "seed 004 total",
        f"whole day {PREVIOUS} (`loyalty run`)",
        f"whole day {DAY.isoformat()} (`loyalty run`)",
    ):
        assert stage in stages, stage
    assert all(len(r) == len(bp.COLUMNS) for r in rows)
    paths = {r[3] for r in rows}
    assert any(p.startswith("peer: Jinja2 sandbox") for p in paths)
    assert any(p.startswith("peer: sqlite3 executemany") for p in paths)
    assert "peer: DuckDB SQL" in paths
    assert "## Targets (issue 9)" in markdown and "## Summary" in markdown


def test_rows_written_are_the_rows_in_the_warehouse(run: tuple[list[dict[str, Any]], Path]) -> None:
    results, folder = run
    pipeline = results[0]["warehouses"][0]["pipeline"]
    assert pipeline["tables"], "nothing written"
    for table, m in pipeline["tables"].items():
        assert m["rows"] == _count(folder / "pipeline" / "warehouse.db", table, DAY.isoformat()), table
    assert pipeline["tables"]["message_outbox"]["rows"] > 0
    # write_campaign_day's own per-table totals agree with the timed replaces
    for table, n in pipeline["written"].items():
        assert pipeline["tables"][table]["rows"] == n


def test_whole_day_rows_are_counted_in_its_warehouse(run: tuple[list[dict[str, Any]], Path]) -> None:
    results, folder = run
    runs = results[0]["warehouses"][0]["whole_day"]
    assert [r["date"] for r in runs] == [PREVIOUS, DAY.isoformat()]
    assert all(r["exit"] == 0 for r in runs), [r["output"] for r in runs]
    for r in runs:
        assert r["counted"]["message_outbox"] == _count(folder / "whole" / "warehouse.db", "message_outbox", r["date"])
        assert sum(r["counted"].values()) > 0
        assert "loyalty_day" in {step for step, _ in r["steps"]}  # the Dagster step breakdown was read
    # the Dagster run and the in-process chain compute the same day
    pipeline = results[0]["warehouses"][0]["pipeline"]
    assert runs[-1]["counted"]["message_outbox"] == pipeline["tables"]["message_outbox"]["rows"]
    assert runs[-1]["counted"]["triggered_customers"] == pipeline["tables"]["triggered_customers"]["rows"]


def test_messages_per_second_is_messages_over_render_seconds(run: tuple[list[dict[str, Any]], Path]) -> None:
    results, _ = run
    entry, wh = results[0], results[0]["warehouses"][0]
    pipeline = wh["pipeline"]
    render = next(s for s in pipeline["inner"] if s["stage"] == "render")
    assert render["rows"] == pipeline["messages"] == pipeline["tables"]["message_outbox"]["rows"]
    assert render["renders"] >= render["rows"]  # a message is a body, and a subject for emails
    row = next(r for r in bp.stage_rows(entry, wh) if r[2] == "render (messages)" and r[3].startswith("project"))
    assert row[4] == f"{render['rows']:,}"
    assert row[8] == f"{render['rows'] / render['wall_s']:,.0f}"
    assert row[9] == f"{render['rows'] / render['cpu_s']:,.0f}"
    peer = pipeline["render_peer"]
    assert peer["rows"] == render["renders"] and not peer["extrapolated"]  # tiny: every render sampled
    assert peer["differing_rows"] == 0


def test_write_peers_wrote_the_same_rows(run: tuple[list[dict[str, Any]], Path]) -> None:
    wh = run[0][0]["warehouses"][0]
    for table, m in wh["peer_write"].items():
        assert m["rows"] == wh["pipeline"]["tables"][table]["rows"], table


@pytest.mark.postgres
def test_postgres_warehouse(postgres_available: None, data_root: Path, tmp_path: Path) -> None:
    """The PostgreSQL paths (COPY writes and their peer, counts before the schema is dropped); the
    whole-day runs only for the day itself (the day before runs the same code on SQLite above)."""
    results = bp.run_benchmark(
        [TINY],
        warehouses=["postgresql"],
        data_root=data_root,
        work_dir=tmp_path / "work",
        pg_url=postgres_base_url(),
        with_segment_peer=False,
        whole_days=1,
    )
    wh = results[0]["warehouses"][0]
    pipeline = wh["pipeline"]
    for table, m in pipeline["tables"].items():
        assert m["rows"] == pipeline["counted"][table], table  # SELECT COUNT before the schema is dropped
    assert [r["date"] for r in wh["whole_day"]] == [DAY.isoformat()]
    assert all(r["exit"] == 0 for r in wh["whole_day"])
    assert wh["whole_day"][-1]["counted"]["message_outbox"] == pipeline["tables"]["message_outbox"]["rows"]
    assert any(r[3].startswith("peer: psycopg COPY") for r in bp.stage_rows(results[0], wh))
