"""Reusable presentation for the Dagster UI: owners, tags, freshness, and metadata as tables.

Counts per rule, channel or reason arrive in the UI as tables (not JSON blobs), samples are masked
(e.g. `a***@example.com`, `+7*******12`), and every warehouse output carries `dagster/column_schema`
so the UI lists its columns. Wiring modules call these helpers; nothing here computes business data.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import dagster as dg
import polars as pl

from loyalty_assets.config.campaigns import Program
from loyalty_assets.transforms.masking import mask_email, mask_phone

#: Who answers for the pipeline's assets (Dagster owners: a team or an e-mail address).
OWNERS = ["team:loyalty-data"]

#: Columns whose values identify a person; never shown unmasked in metadata.
EMAIL_COLUMNS = frozenset({"email"})
PHONE_COLUMNS = frozenset({"phone"})
HIDDEN_COLUMNS = frozenset({"first_name", "last_name", "push_token", "body", "row"})


def tags(layer: str, **extra: str) -> dict[str, str]:
    """Asset tags: the layer (source, features, segment, campaign, overview) and any extras."""
    return {"layer": layer, **extra}


def daily_freshness(program: Program) -> dg.FreshnessPolicy:
    """A daily output is stale when no run has materialised it since the closing run's time, plus slack.

    The closing run (yesterday's partition, `closing_run_at` program time) is the last one of a day;
    two hours after it, an output that has not been refreshed for 24 h means a day was missed.
    """
    at = program.closing_run_at
    return dg.FreshnessPolicy.cron(
        deadline_cron=f"{at.minute} {(at.hour + 2) % 24} * * *",
        lower_bound_delta=timedelta(hours=24),
        timezone=program.timezone,
    )


def markdown(text: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(text)


def counts_table(counts: Mapping[Any, int], *, key: str = "name", value: str = "count") -> dg.MetadataValue:
    """`{rule: n}` as a two-column table; a missing key (None) reads `(none)` instead of `"None"`."""
    schema = dg.TableSchema(columns=[dg.TableColumn(key, "string"), dg.TableColumn(value, "int")])
    records = [
        dg.TableRecord({key: "(none)" if k is None else str(k), value: int(n)})
        for k, n in sorted(counts.items(), key=lambda kv: (kv[0] is None, str(kv[0])))
    ]
    return dg.MetadataValue.table(records, schema=schema)


_DAGSTER_TYPES = {
    pl.Boolean: "bool",
    pl.Date: "date",
    pl.Datetime: "timestamp",
    pl.String: "string",
    pl.Int8: "int",
    pl.Int16: "int",
    pl.Int32: "int",
    pl.Int64: "int",
    pl.UInt32: "int",
    pl.UInt64: "int",
    pl.Float64: "float",
}


def _type_name(dtype: Any) -> str:
    """Dagster's column type name for a Polars dtype (class or instance)."""
    if isinstance(dtype, pl.Decimal):
        return f"decimal({dtype.precision},{dtype.scale})"
    if isinstance(dtype, pl.List):
        return f"list[{_type_name(dtype.inner)}]"
    return _DAGSTER_TYPES.get(dtype.base_type(), str(dtype))


def table_schema(schema: Mapping[str, pl.DataType]) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, _type_name(dtype)) for name, dtype in schema.items()])


def column_schema(schema: Mapping[str, pl.DataType]) -> dict[str, dg.TableSchema]:
    """`dagster/column_schema` for an output with these columns (the UI's column list)."""
    return {"dagster/column_schema": table_schema(schema)}


def masked(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with personal data masked or dropped, fit for metadata and logs."""
    exprs = []
    for name in frame.columns:
        if name in HIDDEN_COLUMNS:
            continue
        if name in EMAIL_COLUMNS or (name == "recipient" and "channel" not in frame.columns):
            exprs.append(mask_email(pl.col(name)).alias(name))
        elif name in PHONE_COLUMNS:
            exprs.append(mask_phone(pl.col(name)).alias(name))
        elif name == "recipient":
            exprs.append(
                pl.when(pl.col("channel") == "email")
                .then(mask_email(pl.col(name)))
                .when(pl.col("channel") == "sms")
                .then(mask_phone(pl.col(name)))
                .otherwise(pl.lit("***"))
                .alias(name)
            )
        else:
            exprs.append(pl.col(name))
    return frame.select(exprs)


def table_metadata(name: str, frame: pl.DataFrame, *, sample: int | None = None) -> dict[str, dg.MetadataValue]:
    """A (masked) table preview of `frame`, its first `sample` rows when given, as `name`."""
    shown = masked(frame if sample is None else frame.head(sample))
    records = [
        dg.TableRecord({k: v if isinstance(v, int | float | bool) or v is None else str(v) for k, v in row.items()})
        for row in shown.iter_rows(named=True)
    ]
    schema = dg.TableSchema(
        columns=[dg.TableColumn(col, "int" if dtype.is_integer() else "string") for col, dtype in shown.schema.items()]
    )
    return {name: dg.MetadataValue.table(records, schema=schema)}


def output_metadata(frame: pl.DataFrame, *, sample: int = 5) -> dict[str, Any]:
    """For a warehouse output: row count, column schema and a masked sample."""
    return {
        "dagster/row_count": frame.height,
        **column_schema(frame.schema),
        **table_metadata("sample", frame, sample=sample),
    }
