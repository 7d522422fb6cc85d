"""What the Dagster UI shows: stopped schedules by default, owners and tags, tables instead of JSON,
masked samples and column schemas (helpers of loyalty_assets/defs/metadata.py)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from loyalty_assets.defs.definitions import build_definitions
from loyalty_assets.defs.metadata import OWNERS, column_schema, counts_table, masked, table_metadata
from tests.conftest import make_settings


def definitions(tmp_path: Path, catalog_dir: Path) -> dg.Definitions:
    return build_definitions(make_settings(tmp_path, catalog_dir, f"sqlite:///{tmp_path / 'w.db'}", tmp_path))


@pytest.mark.parametrize(("line", "expected"), [(None, "STOPPED"), ("schedules_running: true", "RUNNING")])
def test_schedules_are_stopped_unless_program_yaml_turns_them_on(
    tmp_path: Path, catalog_dir: Path, line: str | None, expected: str
) -> None:
    program = catalog_dir / "program.yaml"
    if line is not None:
        program.write_text(program.read_text().replace("schedules_running: false", line))
    defs = definitions(tmp_path, catalog_dir)
    for name in ("daily_loyalty_schedule", "daily_loyalty_closing_schedule"):
        assert defs.resolve_schedule_def(name).default_status.value == expected


def test_sources_and_summary_carry_owners_tags_and_freshness(tmp_path: Path, catalog_dir: Path) -> None:
    graph = definitions(tmp_path, catalog_dir).resolve_asset_graph()
    for key, layer in ((dg.AssetKey(["source", "checks"]), "source"), (dg.AssetKey(["daily_summary"]), "overview")):
        node = graph.get(key)
        assert list(node.owners) == OWNERS
        assert node.tags["layer"] == layer
    summary = graph.get(dg.AssetKey(["daily_summary"]))
    assert summary.group_name == "overview"
    assert summary.freshness_policy is not None
    # After every campaign's last step, so its table is complete when it runs.
    assert dg.AssetKey(["campaign", "birthday_week_early", "message_outbox"]) in summary.parent_keys


def test_counts_are_a_table_and_a_missing_key_reads_none() -> None:
    value = counts_table({"null value (customer_id)": 3, None: 10}, key="rule", value="rows")
    assert isinstance(value, dg.TableMetadataValue)
    assert [(r.data["rule"], r.data["rows"]) for r in value.records] == [
        ("null value (customer_id)", 3),
        ("(none)", 10),
    ]


def test_samples_are_masked_and_personal_columns_dropped() -> None:
    frame = pl.DataFrame(
        {
            "customer_id": [1, 2, 3],
            "channel": ["email", "sms", "push"],
            "recipient": ["anna@example.com", "+79991234512", "token-abc"],
            "first_name": ["Anna", "Boris", "Vera"],
            "row": ['{"email": "anna@example.com"}', "{}", "{}"],
        }
    )
    shown = masked(frame)
    assert shown.columns == ["customer_id", "channel", "recipient"]
    assert shown["recipient"].to_list() == ["a***@example.com", "+7*******12", "***"]
    ((name, value),) = table_metadata("sample", frame, sample=2).items()
    assert name == "sample" and len(value.records) == 2
    assert "anna@example.com" not in str(value.records)


def test_column_schema_names_every_column_with_its_type() -> None:
    schema = {
        "customer_id": pl.Int64(),
        "amount": pl.Decimal(14, 2),
        "labels": pl.List(pl.String()),
        "ts": pl.Datetime(),
    }
    columns = column_schema(schema)["dagster/column_schema"].columns
    assert [(c.name, c.type) for c in columns] == [
        ("customer_id", "int"),
        ("amount", "decimal(14,2)"),
        ("labels", "list[string]"),
        ("ts", "timestamp"),
    ]
