"""The code location as a reviewable snapshot: asset keys, checks, jobs and schedules.

A change to a factory or a catalog file shows up here as a diff. Regenerate after an intended
change with `UPDATE_SNAPSHOTS=1 make test`.
"""

from __future__ import annotations

import os
from pathlib import Path

from loyalty_assets.config.catalog import DEFAULT_CATALOG
from loyalty_assets.defs.definitions import build_definitions
from tests.conftest import make_settings

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.txt"


def describe(tmp_path: Path) -> str:
    defs = build_definitions(make_settings(tmp_path, DEFAULT_CATALOG, f"sqlite:///{tmp_path / 'w.db'}", tmp_path))
    graph = defs.resolve_asset_graph()
    lines = [f"asset {key.to_user_string()}" for key in sorted(graph.get_all_asset_keys(), key=str)]
    lines += [
        f"check {key.asset_key.to_user_string()}:{key.name}"
        for key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name))
    ]
    lines += [f"job {job.name}" for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name)]
    schedules = [defs.resolve_schedule_def(s.name) for s in defs.schedules or []]
    lines += [f"schedule {s.name} {s.cron_schedule}" for s in sorted(schedules, key=lambda s: s.name)]
    return "\n".join(lines) + "\n"


def test_code_location_matches_snapshot(tmp_path: Path) -> None:
    current = describe(tmp_path)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1" or not SNAPSHOT.exists():
        SNAPSHOT.write_text(current)
    assert current == SNAPSHOT.read_text(), "code location changed: review, then UPDATE_SNAPSHOTS=1 make test"


def test_every_campaign_has_its_assets_and_gate(tmp_path: Path) -> None:
    text = describe(tmp_path)
    for name in ("triggered_customers", "bonus_accruals", "message_outbox"):
        assert f"asset campaign/birthday_week_early/{name}\n" in text
    assert "asset campaign/birthday_week_early/entrants\n" not in text  # one step per day, not five per campaign
    assert "asset loyalty_state\n" in text
    assert "check campaign/birthday_week_early/triggered_customers:audience_within_expected_range\n" in text
    assert "check source/checks:yesterdays_checks_arrived\n" in text
    assert "schedule daily_loyalty_schedule 0 6 * * *\n" in text


def test_the_day_is_one_step_that_reads_its_own_previous_state(tmp_path: Path) -> None:
    import dagster as dg

    defs = build_definitions(make_settings(tmp_path, DEFAULT_CATALOG, f"sqlite:///{tmp_path / 'w.db'}", tmp_path))
    graph = defs.resolve_asset_graph()
    state = dg.AssetKey("loyalty_state")
    assert state in graph.get(state).parent_keys
    mapping = graph.get_partition_mapping(state, state)
    assert isinstance(mapping, dg.TimeWindowPartitionMapping)
    assert (mapping.start_offset, mapping.end_offset) == (-1, -1)
    # lineage left to right inside the day: features → segment → triggered → accruals → outbox
    outbox = dg.AssetKey(["campaign", "birthday_members_over_a_year", "message_outbox"])
    accruals = dg.AssetKey(["campaign", "birthday_members_over_a_year", "bonus_accruals"])
    triggered = dg.AssetKey(["campaign", "birthday_members_over_a_year", "triggered_customers"])
    assert graph.get(outbox).parent_keys == {accruals}
    assert graph.get(accruals).parent_keys == {triggered}
    assert dg.AssetKey(["segment", "members_over_a_year", "members"]) in graph.get(triggered).parent_keys
    # sources (8 steps: checks and lines are one), the global control group, the whole day, the bonus
    # ledger, every campaign's results and the daily summary
    ops = {node.name for node in defs.resolve_job_def("daily_loyalty").graph.node_defs}
    assert "loyalty_day" in ops
    assert len(ops) <= 13, sorted(ops)
