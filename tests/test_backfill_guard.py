"""The daily asset never computes a date on partial state (issue 8, "Declared state").

`loyalty_day` reads its own `loyalty_state` of D−1. Without it, D may start from an empty state only
when nothing earlier ever ran and no earlier run is queued or in progress; otherwise it stops before
computing, with a one-line message naming the date to run first. Fixture: `fixtures/birthdays`
(week-early campaign: 1 entrant on 21 Feb, 7 on 22 Feb).
"""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from loyalty_assets.defs.schedules import DAILY_JOB
from loyalty_assets.warehouse.history import state_partitions
from loyalty_assets.warehouse.warehouse import Warehouse
from tests.conftest import BIRTHDAY_WRITERS, daily_job, keep_campaigns, make_settings, run_days, set_shards

FEB_21, FEB_22, FEB_23 = date(2025, 2, 21), date(2025, 2, 22), date(2025, 2, 23)
TABLES = {
    "triggered_customers": ["campaign_id", "partition_date", "customer_id", "occasion"],
    "bonus_accruals": ["accrual_id"],
    "message_outbox": ["message_id"],
}


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 1, [e.step_key for e in failures]
    data = failures[0].step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message


def snapshot(url: str) -> dict[str, pl.DataFrame]:
    wh = Warehouse(url)
    return {table: wh.read(table).sort(key) for table, key in TABLES.items()}


@pytest.mark.parametrize("shards", [1, 2])
def test_two_dates_started_together_on_an_empty_warehouse(
    birthday_data: Path, catalog_dir: Path, tmp_path: Path, shards: int
) -> None:
    """A job backfill launches 21 and 22 Feb at once: 22 stops, naming 21; then it completes as told."""
    keep_campaigns(catalog_dir, *BIRTHDAY_WRITERS)
    set_shards(catalog_dir, shards)
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    settings = make_settings(birthday_data, catalog_dir, url, tmp_path / "storage")
    job = daily_job(settings)
    with dg.DagsterInstance.ephemeral() as instance:
        # the run for 21 Feb has started (in another process) but not yet written its state
        instance.add_run(
            dg.DagsterRun(
                job_name=DAILY_JOB,
                run_id=str(uuid.uuid4()),
                tags={"dagster/partition": FEB_21.isoformat()},
                status=dg.DagsterRunStatus.STARTED,
            )
        )
        stopped = job.execute_in_process(partition_key=FEB_22.isoformat(), instance=instance, raise_on_error=False)
        assert not stopped.success
        message = failure_message(stopped)
        assert message == "a run for 2025-02-21 is queued or in progress: let it finish, then run 2025-02-22"
        assert "\n" not in message
        # stopped before computing: nothing of 22 Feb anywhere
        assert Warehouse(url).count("triggered_customers", {"partition_date": FEB_22}) == 0
        assert Warehouse(url).count("segment_members") == 0
        assert state_partitions(tmp_path / "storage") == []

        for day in (FEB_21, FEB_22):
            assert job.execute_in_process(partition_key=day.isoformat(), instance=instance).success

    daily_url = f"sqlite:///{tmp_path / 'daily.db'}"
    run_days(make_settings(birthday_data, catalog_dir, daily_url, tmp_path / "daily"), [FEB_21, FEB_22])
    expected, actual = snapshot(daily_url), snapshot(url)
    assert expected["bonus_accruals"].filter(pl.col("campaign_id") == "birthday_week_early").height == 1 + 7
    for table in TABLES:
        assert_frame_equal(expected[table], actual[table])


@pytest.mark.parametrize("shards", [1, 2])
def test_a_date_after_a_gap_names_the_first_missing_date(
    birthday_data: Path, catalog_dir: Path, tmp_path: Path, shards: int
) -> None:
    keep_campaigns(catalog_dir, *BIRTHDAY_WRITERS)
    set_shards(catalog_dir, shards)
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    settings = make_settings(birthday_data, catalog_dir, url, tmp_path / "storage")
    job = daily_job(settings)
    with dg.DagsterInstance.ephemeral() as instance:
        assert job.execute_in_process(partition_key="2025-02-20", instance=instance).success
        stopped = job.execute_in_process(partition_key=FEB_23.isoformat(), instance=instance, raise_on_error=False)
        assert not stopped.success
        assert failure_message(stopped) == (
            "no loyalty state for 2025-02-22: run 2025-02-21 first (dates 2025-02-21..2025-02-22 are missing), "
            "then 2025-02-23; or run 2025-02-23 with carry_state_over_gap: true"
        )
        assert Warehouse(url).count("triggered_customers", {"partition_date": FEB_23}) == 0
        assert state_partitions(tmp_path / "storage") == [date(2025, 2, 20)]
        # a re-run of the same date is fine, and so is a date before anything that ran ...
        assert job.execute_in_process(partition_key="2025-02-20", instance=instance).success
        assert job.execute_in_process(partition_key="2025-02-10", instance=instance).success
        # ... but now 20 Feb itself comes after a gap (11..19 Feb)
        again = job.execute_in_process(partition_key="2025-02-20", instance=instance, raise_on_error=False)
        assert failure_message(again).startswith("no loyalty state for 2025-02-19: run 2025-02-11 first")


def test_a_date_after_a_failed_first_date_waits_for_it(birthday_data: Path, catalog_dir: Path, tmp_path: Path) -> None:
    keep_campaigns(catalog_dir, *BIRTHDAY_WRITERS)
    """A job backfill on a queue of one: 21 Feb failed (no state), then 22 Feb starts: it must not start empty."""
    settings = make_settings(birthday_data, catalog_dir, f"sqlite:///{tmp_path / 'wh.db'}", tmp_path / "storage")
    job = daily_job(settings)
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_run(
            dg.DagsterRun(
                job_name=DAILY_JOB,
                run_id=str(uuid.uuid4()),
                tags={"dagster/partition": FEB_21.isoformat()},
                status=dg.DagsterRunStatus.FAILURE,
            )
        )
        stopped = job.execute_in_process(partition_key=FEB_22.isoformat(), instance=instance, raise_on_error=False)
        assert failure_message(stopped) == (
            "the run for 2025-02-21 failed before storing its state: run 2025-02-21 again, then 2025-02-22"
        )
        assert job.execute_in_process(partition_key=FEB_21.isoformat(), instance=instance).success
        assert job.execute_in_process(partition_key=FEB_22.isoformat(), instance=instance).success
