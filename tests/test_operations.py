"""What operators rely on: the Dagster CLI with the three variables, dry run = real run, gates hold back."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from loyalty_assets.config.catalog import load_catalog
from loyalty_assets.dry_run import dry_run
from loyalty_assets.warehouse.warehouse import Warehouse
from tests.conftest import BIRTHDAY_WRITERS, daily_job, keep_campaigns, make_settings, run_days

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("triggered_customers", "bonus_accruals", "message_outbox", "segment_members", "activity_events")


def dump(url: str) -> dict[str, pl.DataFrame]:
    wh = Warehouse(url)
    return {t: wh.read(t).sort(wh.read(t).columns[:3]) for t in TABLES}


@pytest.mark.long
def test_dagster_cli_with_the_three_variables_twice_leaves_the_same_rows(
    birthday_data: Path, catalog_dir: Path, tmp_path: Path
) -> None:
    keep_campaigns(catalog_dir, *BIRTHDAY_WRITERS)
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    env = {
        **os.environ,
        "LOYALTY_DATA_DIR": str(birthday_data),
        "LOYALTY_CAMPAIGNS_DIR": str(catalog_dir),
        "LOYALTY_DATABASE_URL": url,
        "LOYALTY_STORAGE_DIR": str(tmp_path / "storage"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    (tmp_path / "dagster_home").mkdir()
    dagster = Path(sys.executable).parent / "dagster"
    command = [str(dagster), "asset", "materialize", "-f", "definitions.py", "--select", "*"]
    command += ["--partition", "2025-02-22"]
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    once = dump(url)
    assert once["bonus_accruals"].filter(pl.col("campaign_id") == "birthday_week_early").height == 7
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    twice = dump(url)
    for table in TABLES:
        assert once[table].equals(twice[table]), table


def test_dry_run_counts_equal_the_real_run(birthday_data: Path, catalog_dir: Path, tmp_path: Path) -> None:
    keep_campaigns(catalog_dir, *BIRTHDAY_WRITERS)
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    settings = make_settings(birthday_data, catalog_dir, url, tmp_path / "s")
    run_days(settings, [date(2025, 2, 21)])
    catalog = load_catalog(catalog_dir)
    planned = dry_run(
        catalog, "birthday_week_early", date(2025, 2, 22), data_dir=birthday_data, storage_dir=tmp_path / "s"
    )
    assert Warehouse(url).count("triggered_customers", {"partition_date": date(2025, 2, 22)}) == 0  # nothing written

    run_days(settings, [date(2025, 2, 22)])
    wh = Warehouse(url)
    scope = {"campaign_id": "birthday_week_early", "partition_date": date(2025, 2, 22)}
    skipped = wh.read("activity_events", {**scope, "kind": "message_skipped"}).height
    assert planned.counts["entry:entered"] == wh.count("triggered_customers", scope) == 7
    assert planned.counts["accruals"] == wh.count("bonus_accruals", scope) == 7
    assert planned.counts["messages"] == wh.count("message_outbox", scope) == 4
    assert sum(v for k, v in planned.counts.items() if k.startswith("skipped:")) == skipped == 3
    assert "anna@example.com" not in planned.sample["recipient"].to_list()  # masked: a***@example.com
    assert all(r.startswith(("a***", "b***", "f***", "z***")) for r in planned.sample["recipient"])


def test_audience_jump_holds_the_outputs_back_until_overridden(
    birthday_data: Path, catalog_dir: Path, tmp_path: Path
) -> None:
    keep_campaigns(catalog_dir, *BIRTHDAY_WRITERS)
    path = catalog_dir / "campaigns" / "birthday_week_early.yaml"
    data = yaml.safe_load(path.read_text())
    data["settings"]["gates"] = {"max_audience_jump": 2, "min_audience_for_jump": 1}
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    settings = make_settings(birthday_data, catalog_dir, url, tmp_path / "s")
    run_days(settings, [date(2025, 2, 21)])  # 1 entrant (customer 12)

    job = daily_job(settings)
    result = job.execute_in_process(
        partition_key="2025-02-22", instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    checks = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.asset_check_key.asset_key.path[1] == "birthday_week_early"
    ]
    assert [c.passed for c in checks] == [False]
    assert "more than 2× yesterday's 1" in checks[0].description
    scope = {"campaign_id": "birthday_week_early", "partition_date": date(2025, 2, 22)}
    wh = Warehouse(url)
    assert wh.count("triggered_customers", scope) == 0  # 7 > 2 × 1: nothing written
    assert wh.count("bonus_accruals", scope) == 0

    data["settings"]["gates"]["override_dates"] = ["2025-02-22"]
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    run_days(settings, [date(2025, 2, 22)])
    assert Warehouse(url).count("bonus_accruals", scope) == 7


@pytest.mark.long
def _rows_so_far(db: Path, table: str) -> int:
    """Rows of `table` in a SQLite file another process is writing: a plain read-only query (a
    `Warehouse` would apply the DDL and take the write lock on every poll)."""
    if not db.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
            return int(conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])  # a fixed name
    except sqlite3.OperationalError:  # the schema is not there yet, or the writer holds the lock
        return 0


def test_a_run_killed_mid_way_then_repeated_equals_one_clean_run(
    birthday_data: Path, catalog_dir: Path, tmp_path: Path
) -> None:
    """SIGKILL the CLI run part-way (wherever it is), run again: the rows equal a clean run's."""
    keep_campaigns(catalog_dir, *BIRTHDAY_WRITERS)
    import signal
    import time

    clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
    run_days(make_settings(birthday_data, catalog_dir, clean_url, tmp_path / "clean"), [date(2025, 2, 22)])

    url = f"sqlite:///{tmp_path / 'killed.db'}"
    env = {
        **os.environ,
        "LOYALTY_DATA_DIR": str(birthday_data),
        "LOYALTY_CAMPAIGNS_DIR": str(catalog_dir),
        "LOYALTY_DATABASE_URL": url,
        "LOYALTY_STORAGE_DIR": str(tmp_path / "storage"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),  # not the project's .dagster (the CLI's default)
    }
    loyalty = [str(Path(sys.executable).parent / "loyalty"), "run", "--date", "2025-02-22"]
    victim = subprocess.Popen(loyalty, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # Kill as soon as the first campaign rows are being written, so the run is certainly half done.
    while time.monotonic() < deadline and victim.poll() is None:
        if _rows_so_far(tmp_path / "killed.db", "triggered_customers") > 0:
            break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    again = subprocess.run(loyalty, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    expected, actual = dump(clean_url), dump(url)
    for table in TABLES:
        assert expected[table].equals(actual[table]), table
