"""The pooled SQLite event log: the same events recorded, one engine per run database, not per event."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from loyalty_assets import event_log


@dg.asset
def tiny() -> int:
    return 1


def _instance(home: Path) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(str(home))


def test_a_pooled_event_log_records_every_event_with_one_engine_per_run(tmp_path: Path) -> None:
    with _instance(tmp_path / "home") as instance:
        engines = event_log.pool_event_log(instance)
        assert engines == {}  # the shipped dagster: pooled, nothing connected yet
        result = dg.materialize([tiny], instance=instance)
        assert result.success
        run_id = result.run_id
        assert run_id in engines and len(engines) <= 2  # the run's database (and the index shard)
        for engine in engines.values():
            engine.dispose()
    with _instance(tmp_path / "home") as fresh:  # another reader sees everything the run wrote
        kinds = {e.dagster_event_type for e in fresh.all_logs(run_id) if e.dagster_event_type}
        assert {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.ASSET_MATERIALIZATION} <= kinds
        assert fresh.get_latest_materialization_event(dg.AssetKey("tiny")) is not None


def test_another_dagster_release_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_log, "WRITTEN_FOR", "0.0.0")
    with _instance(tmp_path / "home") as instance:
        before = instance.event_log_storage._connect
        assert event_log.pool_event_log(instance) is None
        assert instance.event_log_storage._connect == before


def test_open_files_do_not_grow_with_the_number_of_runs(tmp_path: Path) -> None:
    """A backfill runs every date on one instance, each date a run database of its own: only the last
    few engines are kept (found by the review: 5 open files more per run before)."""
    import os

    with _instance(tmp_path / "home") as instance:
        engines = event_log.pool_event_log(instance)
        assert engines is not None
        opened = []
        for _ in range(3):  # `loyalty backfill` over 30 dates, the files counted every 10
            for _ in range(10):
                assert dg.materialize([tiny], instance=instance).success
            opened.append(len(os.listdir("/proc/self/fd")))
        assert len(engines) <= event_log.KEPT_ENGINES
        for engine in engines.values():
            engine.dispose()
    assert max(opened) - min(opened) < 5, f"open files after 10, 20, 30 runs: {opened}"
