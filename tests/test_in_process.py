"""`run_date` runs a date like `execute_in_process` but lets go of each step's output.

The test asset returns an object that can be weakly referenced: after `execute_in_process` the
result still holds it (Dagster's output capture); after `run_date` nothing does, while the run
succeeds with the same partition and the output still reaches its IO manager.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any, ClassVar

import dagster as dg
import pytest

from loyalty_assets import in_process
from loyalty_assets.in_process import run_date

PARTITIONS = dg.DailyPartitionsDefinition(start_date="2025-01-01")


class Big:
    """Stands for a day's frame (a plain object: weakly referenceable)."""


class Keep(dg.IOManager):
    """Records what each run handed it (by partition), without keeping the object."""

    seen: ClassVar[dict[str, str]] = {}

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        Keep.seen[context.partition_key] = type(obj).__name__

    def load_input(self, context: dg.InputContext) -> Any:
        raise NotImplementedError


REFS: list[weakref.ref[Big]] = []


@dg.asset(partitions_def=PARTITIONS, io_manager_key="keep")
def day_output() -> Big:
    big = Big()
    REFS.append(weakref.ref(big))
    return big


def _job() -> dg.JobDefinition:
    defs = dg.Definitions(
        assets=[day_output],
        jobs=[dg.define_asset_job("daily", partitions_def=PARTITIONS)],
        resources={"keep": Keep()},
    )
    return defs.resolve_job_def("daily")


def _held_after(run: Any) -> bool:
    REFS.clear()
    with dg.DagsterInstance.ephemeral() as instance:
        result = run(_job(), instance)
        assert result.success
        assert result.dagster_run.tags["dagster/partition"] == "2025-03-01"
        gc.collect()
        return REFS[0]() is not None


def test_execute_in_process_keeps_the_output_and_run_date_does_not() -> None:
    assert _held_after(lambda job, i: job.execute_in_process(partition_key="2025-03-01", instance=i))
    assert not _held_after(lambda job, i: run_date(job, "2025-03-01", i))
    assert Keep.seen["2025-03-01"] == "Big"  # the output still went to its IO manager


def test_a_bad_partition_is_refused_as_by_execute_in_process() -> None:
    with dg.DagsterInstance.ephemeral() as instance, pytest.raises(dg.DagsterUnknownPartitionError):
        run_date(_job(), "1999-01-01", instance)


def test_another_dagster_release_gets_execute_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(in_process, "WRITTEN_FOR", "0.0.0")
    assert _held_after(lambda job, i: run_date(job, "2025-03-01", i))
