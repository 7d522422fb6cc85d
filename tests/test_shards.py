"""Customer shards: a partition of the customers, and the same day whatever their number.

The day's outputs with one shard and with several are compared frame by frame (values, types and
row order): on generated sample data with the shipped catalog made to exercise what is not per
customer (an adaptive A/B split that decides on these dates, an hourly send limit that spreads the
day's messages over batches, a frequency cap across campaigns, an audience gate that fails on one
of the dates), and end to end through Dagster (carried features, the warehouse and every stored
frame) with `shards: 4` in program.yaml.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from loyalty_assets.config.catalog import load_catalog
from loyalty_assets.defs.day import DayStart
from loyalty_assets.sample_data import generate
from loyalty_assets.sources.frames import AsOf
from loyalty_assets.sources.readers import make_reader
from loyalty_assets.sources.snapshot import load_snapshot
from loyalty_assets.transforms.campaign_day import DayResult, run_day
from loyalty_assets.transforms.day_state import DayState
from loyalty_assets.transforms.shards import (
    Shard,
    _strictly_increasing,
    add_counts,
    all_shards,
    canonical,
    shard_of,
    stack_frames,
)
from loyalty_assets.warehouse.history import StoredState, write_folder
from loyalty_assets.warehouse.warehouse import Warehouse
from tests.conftest import make_settings, run_days, set_shards

ROOT = Path(__file__).resolve().parents[1]
DAYS = [date(2025, 6, 24) + timedelta(days=i) for i in range(4)]  # 26 June: the heavy day


# --- the split ----------------------------------------------------------------------------------


@given(ids=st.lists(st.integers(min_value=-(2**62), max_value=2**62), max_size=200), count=st.integers(1, 9))
def test_every_customer_is_in_exactly_one_shard(ids: list[int], count: int) -> None:
    frame = pl.DataFrame({"customer_id": ids}, schema={"customer_id": pl.Int64()})
    parts = [Shard(i, count).rows(frame) for i in range(count)]
    assert sum(p.height for p in parts) == frame.height
    assert_frame_equal(canonical(pl.concat(parts)), canonical(frame))
    shards = frame.select(shard_of(pl.col("customer_id"), count)).to_series()
    assert shards.is_between(0, count - 1).all()


def test_a_customer_keeps_its_shard() -> None:
    """Pinned: the split must not change between releases (a stored state is read by shard)."""
    got = pl.select(shard_of(pl.lit(pl.Series([1, 2, 3, 4, 5, 6, 7, 8, 1_000_000])), 4)).to_series().to_list()
    assert got == [1, 3, 2, 1, 1, 3, 3, 1, 0]


def test_frames_without_customers_stay_whole() -> None:
    categories = pl.DataFrame({"category_id": ["a", "b"]})
    assert Shard(1, 3).rows(categories).equals(categories)
    with pytest.raises(ValueError, match="does not exist"):
        Shard(3, 3)


@given(
    rows=st.lists(
        st.tuples(st.integers(0, 5), st.sampled_from(["x", "y", None]), st.integers(0, 3)), min_size=0, max_size=40
    ),
    seed=st.integers(0, 1000),
)
def test_canonical_order_does_not_depend_on_the_input_order(rows: list[tuple[int, str | None, int]], seed: int) -> None:
    frame = pl.DataFrame(rows, schema={"customer_id": pl.Int64(), "tag": pl.String(), "n": pl.Int64()}, orient="row")
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed)
    assert canonical(shuffled, first=["tag"]).equals(canonical(frame, first=["tag"]))


def test_counts_add_up_and_flags_are_taken_once() -> None:
    parts = [{"fired": 3, "not_live": 1}, {"fired": 2, "not_live": 1, "variant:b": 1}]
    assert add_counts(parts, flags=("not_live",)) == {"fired": 5, "not_live": 1, "variant:b": 1}


# --- the same day for any shard count -----------------------------------------------------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Sample data (400 customers, 90 days) and the shipped catalog made to exercise the global rules."""
    root = tmp_path_factory.mktemp("shards")
    generate(root / "data", customers=400, days=90, end_date=date(2025, 6, 30), progress=False)
    catalog_dir = root / "catalog"
    shutil.copytree(Path(__file__).parents[1] / "loyalty_assets" / "catalog", catalog_dir)
    program = yaml.safe_load((catalog_dir / "program.yaml").read_text())
    program["frequency_cap"] = {"max_messages": 1, "days": 7}
    (catalog_dir / "program.yaml").write_text(yaml.safe_dump(program))
    ab_path = catalog_dir / "campaigns" / "birthday_ab_channels.yaml"
    ab = yaml.safe_load(ab_path.read_text())
    ab["start_date"] = "2025-06-01"
    ab["settings"]["max_messages_per_hour"] = 2  # the day's messages over several batches
    ab["settings"]["control_group_percent"] = 0
    for step in ab["steps"]:
        if step["type"] == "ab_split":
            step["adaptive"] = {"first_n": 4, "decide_after_days": 0, "metric": "checks"}
    ab_path.write_text(yaml.safe_dump(ab, allow_unicode=True))
    gated_path = catalog_dir / "campaigns" / "bonus_expiry_warning.yaml"
    gated = yaml.safe_load(gated_path.read_text())
    gated.setdefault("settings", {})["gates"] = {"max_audience_jump": "1.01", "min_audience_for_jump": 1}
    gated_path.write_text(yaml.safe_dump(gated, allow_unicode=True))
    return root / "data", catalog_dir


def _days(data: Path, catalog_dir: Path, shards: int) -> list[DayResult]:
    catalog = load_catalog(catalog_dir)
    state, out = DayState.empty(), []
    for day in DAYS:
        point = AsOf(day, catalog.program.timezone)
        reader = make_reader(data, None, point.cutoff)
        frames = load_snapshot(reader, point, own_accruals=state.own_accruals(point)).frames
        result = run_day(catalog, frames, point, state, shards=shards)
        out.append(result)
        state = result.state
    return out


def _outputs(result: DayResult) -> dict[str, object]:
    """Every frame and count of a day's result, by a readable name."""
    out: dict[str, object] = {"features": result.features}
    out |= {f"members:{sid}": f for sid, f in result.members.items()}
    out |= {f"yesterday:{sid}": f for sid, f in result.members_yesterday.items()}
    out |= {f"state:{name}": f for name, f in result.state.to_frames().items()}
    for r in result.campaigns:
        cid = r.campaign.id
        out |= {
            f"{cid}:entrants": r.entered.entrants,
            f"{cid}:counts": r.entered.counts,
            f"{cid}:decision": r.entered.decision,
            f"{cid}:gate": (r.gate.passed, r.gate.description, r.gate.metadata),
            f"{cid}:resumed": r.resumed,
        }
        if r.entered.audience is not None:
            out[f"{cid}:audience"] = r.entered.audience.to_frame()
        if r.journey is not None and r.accruals is not None and r.messages is not None:
            out |= {
                f"{cid}:actions": r.journey.actions,
                f"{cid}:pending": r.journey.pending,
                f"{cid}:exits": r.journey.exits,
                f"{cid}:journey_counts": r.journey.counts,
                f"{cid}:accruals": r.accruals,
                f"{cid}:outbox": r.messages.outbox,
                f"{cid}:skipped": r.messages.skipped,
            }
    return out


def _same_frame(one: pl.DataFrame, other: pl.DataFrame, label: str) -> None:
    try:
        assert_frame_equal(one, other, check_exact=True)
    except AssertionError as exc:
        raise AssertionError(f"{label}: {exc}") from None


def _assert_same(one: dict[str, object], other: dict[str, object], label: str) -> None:
    assert list(one) == list(other), label
    for name, value in one.items():
        theirs = other[name]
        if isinstance(value, pl.DataFrame):
            assert isinstance(theirs, pl.DataFrame)
            _same_frame(value, theirs, f"{label} {name}")
        else:
            assert value == theirs, f"{label} {name}"


@pytest.mark.long
@pytest.mark.parametrize("shards", [2, 4])
def test_a_day_is_the_same_for_any_shard_count(sample: tuple[Path, Path], shards: int) -> None:
    data, catalog_dir = sample
    whole = _days(data, catalog_dir, 1)
    split = _days(data, catalog_dir, shards)
    for day, one, other in zip(DAYS, whole, split, strict=True):
        _assert_same(_outputs(one), _outputs(other), f"{day} with {shards} shards:")
    # the global rules were exercised on these dates
    ab = [r for d in whole for r in d.campaigns if r.campaign.id == "birthday_ab_channels"]
    assert any(r.entered.decision is not None and r.entered.decision.winner for r in ab) or any(
        r.entered.decision is not None and "keeps splitting" in r.entered.decision.reason for r in ab
    )
    assert any(r.messages is not None and (r.messages.outbox["batch_no"] > 1).any() for r in ab)
    gated = [r for d in whole for r in d.campaigns if r.campaign.id == "bonus_expiry_warning"]
    assert any(not r.gate.passed for r in gated) and any(r.gate.passed for r in gated)
    capped = [r for d in whole for r in d.campaigns if r.messages is not None]
    assert any((r.messages.skipped["reason"] == "frequency_cap").any() for r in capped if r.messages is not None)


def _warehouse_tables(url: str) -> dict[str, pl.DataFrame]:
    """Every table, rows in canonical order, without the wall-clock columns a run stamps."""
    wh = Warehouse(url)
    out = {}
    for table in sorted(sa.inspect(wh.engine).get_table_names()):
        frame = wh.read(table, {})
        frame = frame.drop([c for c in frame.columns if c in WALL_CLOCK], strict=False)
        out[table] = canonical(frame)
    return out


WALL_CLOCK = {"exported_at", "created_at", "written_at", "loaded_at_run", "run_id", "materialized_at"}


@pytest.mark.long
def test_the_daily_job_writes_the_same_with_four_shards(sample: tuple[Path, Path], tmp_path: Path) -> None:
    data, catalog_dir = sample
    results = {}
    metadata: dict[int, dict[tuple[str, str], object]] = {}
    for shards in (1, 4):
        mine = _with_shards(catalog_dir, tmp_path / f"n{shards}", shards)
        url = f"sqlite:///{mine / 'wh.db'}"
        with dg.DagsterInstance.ephemeral() as instance:
            run_days(make_settings(data, mine / "catalog", url, mine / "storage"), DAYS, instance)
            metadata[shards] = _day_metadata(instance)
        stored = {
            str(p.relative_to(mine / "storage")): pl.read_parquet(p)
            for p in sorted((mine / "storage").rglob("*.parquet"))
            if "source_store" not in p.parts
        }
        results[shards] = (_warehouse_tables(url), stored)
    (tables_1, stored_1), (tables_4, stored_4) = results[1], results[4]
    assert list(tables_1) == list(tables_4)
    for table in tables_1:
        _same_frame(tables_1[table], tables_4[table], f"warehouse {table}")
    assert list(stored_1) == list(stored_4)
    assert any("loyalty_state" in name for name in stored_1) and any("customer_features" in name for name in stored_1)
    for name in stored_1:
        _same_frame(stored_1[name], stored_4[name], f"stored {name}")
    # what the UI shows is the same too: every output's metadata, every gate's result, per date
    assert metadata[1] == metadata[4]
    gates = [v for (_, key), v in metadata[1].items() if key.startswith("check ")]
    assert gates and any(not passed for passed, _ in gates) and any(passed for passed, _ in gates)


def _day_metadata(instance: dg.DagsterInstance) -> dict[tuple[str, str], object]:
    """Per date and `loyalty_day` output: its materialisation metadata (the text of each value:
    counts, tables, JSON), and per gate its result and metadata."""
    out: dict[tuple[str, str], object] = {}
    for run in instance.get_runs():
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            event = entry.asset_materialization
            assert event is not None
            key = event.asset_key.to_user_string()
            if key.startswith("source/") or key in ("bonus_ledger", "daily_summary") or key.endswith("/results"):
                continue
            out[(str(event.partition), key)] = {k: str(v.value) for k, v in event.metadata.items()}
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            data = entry.dagster_event.event_specific_data  # type: ignore[union-attr]
            check = f"check {data.asset_key.to_user_string()} {data.check_name}"
            out[(str(data.partition), check)] = (data.passed, {k: str(v.value) for k, v in data.metadata.items()})
    return out


def test_all_shards_are_the_count() -> None:
    assert [str(s) for s in all_shards(3)] == ["1/3", "2/3", "3/3"]


@settings(max_examples=25, deadline=None)
@given(count=st.integers(2, 6))
def test_shard_rows_of_a_state_put_back_together(count: int) -> None:
    state = DayState.empty().to_frames()
    members = pl.DataFrame({"segment_id": ["s"] * 50, "customer_id": list(range(50))})
    frames = {**state, "members": members}
    parts = [{name: Shard(i, count).rows(f) for name, f in frames.items()} for i in range(count)]
    merged = stack_frames(parts)
    assert_frame_equal(merged["members"], canonical(members))
    assert merged["meta"].equals(frames["meta"])


@given(
    rows=st.lists(
        st.tuples(st.one_of(st.none(), st.integers(0, 4)), st.one_of(st.none(), st.sampled_from(["a", "b"]))),
        max_size=30,
    )
)
def test_a_frame_in_key_order_is_left_as_it_is_and_only_then(rows: list[tuple[int | None, str | None]]) -> None:
    """`canonical` skips the sort exactly when the rows are already in (nulls-last) key order with
    every key different; otherwise it sorts, and both ways give the same frame."""
    frame = pl.DataFrame(rows, schema={"k": pl.Int64(), "s": pl.String()}, orient="row")
    by_sort = frame.sort(["k", "s"], nulls_last=True, maintain_order=True)
    distinct = frame.height < 2 or frame.select(pl.struct("k", "s").n_unique()).item() == frame.height
    assert _strictly_increasing(frame, ["k", "s"]) == (frame.equals(by_sort) and distinct)
    assert canonical(frame, ["k", "s"]).equals(canonical(by_sort, ["k", "s"]))


@pytest.mark.long
def test_shards_run_as_parallel_steps_of_the_dagster_cli(sample: tuple[Path, Path], tmp_path: Path) -> None:
    """`shards: 3`: `dagster asset materialize` runs each shard as a step in a process of its own
    (the multiprocess executor), two at a time, and writes what one step writes."""
    data, catalog_dir = sample
    days = DAYS[:2]
    results = {}
    for shards in (1, 3):
        mine = _with_shards(catalog_dir, tmp_path / f"n{shards}", shards)
        url = f"sqlite:///{mine / 'wh.db'}"
        if shards == 1:
            run_days(make_settings(data, mine / "catalog", url, mine / "storage"), days)
        else:
            home = mine / "dagster_home"
            home.mkdir()
            env = {
                **os.environ,
                "LOYALTY_DATA_DIR": str(data),
                "LOYALTY_CAMPAIGNS_DIR": str(mine / "catalog"),
                "LOYALTY_DATABASE_URL": url,
                "LOYALTY_STORAGE_DIR": str(mine / "storage"),
                "DAGSTER_HOME": str(home),
            }
            dagster = Path(sys.executable).parent / "dagster"
            for day in days:
                command = [str(dagster), "asset", "materialize", "-f", "definitions.py", "--select", "*"]
                command += ["--partition", day.isoformat(), "-c", str(_max_concurrent(mine, 2))]
                done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
                assert done.returncode == 0, done.stderr[-3000:]
            with dg.DagsterInstance.from_config(str(home)) as instance:
                runs = instance.get_runs()
                assert len(runs) == 2
                starts = instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.STEP_START)
                pids = {e.step_key: e.dagster_event.pid for e in starts if e.dagster_event is not None}
            shard_steps = sorted(k for k in pids if k is not None and ".shard_" in k)
            assert shard_steps == ["loyalty_day.shard_0", "loyalty_day.shard_1", "loyalty_day.shard_2"]
            assert len({pids[k] for k in shard_steps}) == 3  # a process per step
            assert not {pids[k] for k in shard_steps} & {e.dagster_event.pid for e in starts if e.step_key == "sources"}
            assert not any((mine / "storage" / "loyalty_day_steps").glob("*/*"))  # the merge let go of them
        results[shards] = _warehouse_tables(url)
    assert list(results[1]) == list(results[3])
    for table in results[1]:
        _same_frame(results[1][table], results[3][table], f"warehouse {table}")


def _with_shards(catalog_dir: Path, root: Path, shards: int) -> Path:
    """`root` with a copy of the catalog (`root/catalog`) whose program.yaml sets `shards`."""
    shutil.copytree(catalog_dir, root / "catalog")
    set_shards(root / "catalog", shards)
    return root


def _max_concurrent(root: Path, n: int) -> Path:
    config = root / "run_config.yaml"
    config.write_text(yaml.safe_dump({"execution": {"config": {"max_concurrent": n}}}))
    return config


def test_a_shard_step_stops_when_the_state_it_was_planned_on_changed(tmp_path: Path) -> None:
    """The plan records which version of D−1's state it saw; a shard step (or the merge's rerun)
    that finds another — D−1 ran again meanwhile, or is being swapped in — stops instead of starting
    from a different state than the other shards."""
    folder = tmp_path / "loyalty_state" / "2025-06-24"
    frames = DayState.empty().to_frames() | {
        "members": pl.DataFrame({"segment_id": ["s"] * 6, "customer_id": list(range(6))})
    }
    write_folder(folder, frames)
    start = DayStart(StoredState.at(folder), {})
    whole = start.state(Shard()).members
    parts = [start.state(Shard(i, 3)).members for i in range(3)]
    assert sorted(c for p in parts for c in p["customer_id"]) == sorted(whole["customer_id"])
    assert all(p.height < whole.height for p in parts)
    write_folder(folder, frames)  # the same date written again: a new version
    with pytest.raises(dg.Failure, match="changed while this date ran"):
        start.state(Shard(0, 3))
    shutil.rmtree(folder)
    with pytest.raises(dg.Failure, match="changed while this date ran"):
        DayStart(start.previous, {}).state(Shard(0, 3))
    assert DayStart(None, {}).state(Shard(0, 3)).members.is_empty()  # the first date: empty state
