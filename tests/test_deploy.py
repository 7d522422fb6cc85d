"""The executor examples of loyalty_assets/deploy/ load and validate against the daily job.

A shard is a step of its own, so the same definitions run on Kubernetes jobs (dagster-k8s) or
Celery workers (dagster-celery) by choosing the executor (`LOYALTY_EXECUTOR`); these tests keep the
shipped run configurations valid for the job as the code changes (a key that moves, a step that is
renamed).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest
import yaml

from loyalty_assets.defs.definitions import PRELOADED, STEP_PROCESSES, ExecutorError, build_definitions, run_executor
from loyalty_assets.defs.schedules import DAILY_JOB
from loyalty_assets.settings import Settings
from tests.conftest import set_shards

DEPLOY = Path(__file__).resolve().parents[1] / "loyalty_assets" / "deploy"


def _definitions(catalog_dir: Path, tmp_path: Path, executor: str | None, shards: int) -> dg.Definitions:
    set_shards(catalog_dir, shards)
    settings = replace(
        Settings.from_env(), campaigns_dir=catalog_dir, storage_dir=tmp_path / "storage", executor=executor
    )
    return build_definitions(settings)


def _job(catalog_dir: Path, tmp_path: Path, executor: str | None, shards: int) -> dg.JobDefinition:
    return _definitions(catalog_dir, tmp_path, executor, shards).resolve_job_def(DAILY_JOB)


@pytest.mark.parametrize("executor", ["k8s", "celery"])
def test_the_shipped_run_config_is_valid_for_the_sharded_job(catalog_dir: Path, tmp_path: Path, executor: str) -> None:
    job = _job(catalog_dir, tmp_path, executor, shards=4)
    assert job.executor_def.name == executor
    config = yaml.safe_load((DEPLOY / f"{executor}.yaml").read_text())
    assert executor in dg.validate_run_config(job, config)["execution"]  # resolved to the chosen executor
    day = job.graph.node_named("loyalty_day").definition
    assert isinstance(day, dg.GraphDefinition)
    steps = {node.name for node in day.nodes}
    assert steps == {"plan", "merge", "shard_0", "shard_1", "shard_2", "shard_3"}
    for step in config["execution"]["config"].get("per_step_k8s_config", {}):
        assert step.removeprefix("loyalty_day.") in steps, f"{executor}.yaml names no step {step}"


def test_a_wrong_executor_setting_fails_validation(catalog_dir: Path, tmp_path: Path) -> None:
    job = _job(catalog_dir, tmp_path, "k8s", shards=2)
    config = yaml.safe_load((DEPLOY / "k8s.yaml").read_text())
    config["execution"]["config"]["max_concurrent"] = "many"
    with pytest.raises(dg.DagsterInvalidConfigError, match="max_concurrent"):
        dg.validate_run_config(job, config)


def test_the_default_executor_follows_the_shard_count() -> None:
    assert run_executor(1) is dg.in_process_executor
    assert run_executor(4) is STEP_PROCESSES
    assert run_executor(4, "in_process") is dg.in_process_executor
    assert run_executor(1, "multiprocess") is STEP_PROCESSES


def test_step_processes_fork_from_a_preloading_server(catalog_dir: Path, tmp_path: Path) -> None:
    job = _job(catalog_dir, tmp_path, "multiprocess", shards=2)
    resolved = dg.validate_run_config(job, {"execution": {"config": {"max_concurrent": 2}}})["execution"]
    got = resolved["multiprocess"]  # the executor's own config, after the mapping
    assert got["max_concurrent"] == 2
    assert got["start_method"] == {"forkserver": {"preload_modules": PRELOADED}}
    assert "loyalty_assets.defs.definitions" in PRELOADED


def test_an_unknown_executor_is_one_line_naming_the_variable() -> None:
    with pytest.raises(ExecutorError, match=r"^LOYALTY_EXECUTOR='kubernetes': expected one of in_process, "):
        run_executor(2, "kubernetes")


def test_the_sharded_day_shows_the_assets_of_the_one_step_day(catalog_dir: Path, tmp_path: Path) -> None:
    """Keys, lineage, groups, kinds, tags, owners, descriptions, freshness and checks are what the UI
    shows; they do not depend on the shard count."""

    def shown(shards: int) -> tuple[dict[str, object], set[str]]:
        defs = _definitions(catalog_dir, tmp_path / str(shards), None, shards)
        day = next(
            a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) and a.node_def.name == "loyalty_day"
        )
        specs = {
            spec.key.to_user_string(): (
                sorted(d.asset_key.to_user_string() for d in spec.deps),
                spec.group_name,
                sorted(spec.kinds),
                {k: v for k, v in spec.tags.items() if not k.startswith("dagster/kind/")},
                list(spec.owners),
                spec.description,
                spec.freshness_policy,
            )
            for spec in day.specs
        }
        checks = {f"{c.asset_key.to_user_string()}:{c.name}" for c in day.check_specs}
        return specs, checks

    one, four = shown(1), shown(4)
    assert one == four
    assert len(one[0]) > 10 and len(one[1]) == 9  # every output, every campaign's gate
