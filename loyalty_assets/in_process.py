"""A date's run in this process without Dagster keeping every step's output in memory.

Why: `JobDefinition.execute_in_process` captures each step's output value for the result's
`output_for_node` (`output_capturing_enabled=True`), so the day's features, the state handed to the
next date, every campaign's rows and the ledger's lots (650 MB at 1M customers) stayed in memory
until the run ended: ~1.2 GB at 1M, on top of which every later step made its own peak. Nothing here
asks the result for outputs (they are in the warehouse and the IO managers' storage), so `run_date`
executes the same ephemeral job as `execute_in_process` with the capture off. It reproduces that
method's few lines for the dagster release it was written against (pinned in pyproject.toml); with
another release it calls `execute_in_process` itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import version
from typing import Any

import dagster as dg

#: The dagster release whose `JobDefinition.execute_in_process` is reproduced below.
WRITTEN_FOR = "1.13.27"


def run_date(
    job: dg.JobDefinition,
    partition_key: str,
    instance: dg.DagsterInstance,
    *,
    run_config: Mapping[str, Any] | None = None,
    raise_on_error: bool = False,
) -> dg.ExecuteInProcessResult:
    """`job.execute_in_process(partition_key=..., instance=..., run_config=..., raise_on_error=...)`,
    keeping no output values (the result's events, success and step failures are all there)."""
    if version("dagster") != WRITTEN_FOR:
        return job.execute_in_process(
            partition_key=partition_key, instance=instance, run_config=run_config, raise_on_error=raise_on_error
        )
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.definitions.partitions.context import partition_loading_context
    from dagster._core.execution.execute_in_process import (
        core_execute_in_process,
        merge_run_tags,
        type_check_and_normalize_args,
    )

    # below: `JobDefinition.execute_in_process` of WRITTEN_FOR, with `output_capturing_enabled=False`
    config, _, selection, resource_defs, key, input_values = type_check_and_normalize_args(
        run_config=dict(run_config) if run_config else None,
        partition_key=partition_key,
        op_selection=None,
        asset_selection=None,
        input_values=None,
        resources=None,
    )
    ephemeral = job.as_ephemeral_job(resource_defs=resource_defs, input_values=input_values, asset_selection=selection)
    if key and ephemeral.partitions_def:
        with partition_loading_context(dynamic_partitions_store=instance) as ctx:
            ephemeral.validate_partition_key(partition_key=key, selected_asset_keys=set(selection), context=ctx)
    if not config and ephemeral.partitioned_config and key:
        config = ephemeral.partitioned_config.get_run_config_for_partition_key(key)
    return core_execute_in_process(
        job=InMemoryJob(job_def=ephemeral),
        run_config=config,
        instance=instance,
        output_capturing_enabled=False,
        raise_on_error=raise_on_error,
        run_tags=merge_run_tags(
            job_def=job,
            partition_key=key,
            tags=None,
            asset_selection=selection,
            instance=instance,
            run_config=config,
        ),
        run_id=None,
        asset_selection=frozenset(selection),
    )
