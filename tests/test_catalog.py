"""Broken definitions fail with file, field and expectation, and do not stop the other campaigns."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml

from loyalty_assets.config.catalog import load_catalog
from loyalty_assets.defs.definitions import build_definitions
from tests.conftest import make_settings


def write(path: Path, data: object) -> None:
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf8")


def test_shipped_catalog_is_valid() -> None:
    catalog = load_catalog()
    assert catalog.errors == []
    assert {"birthday_week_early", "birthday_members_over_a_year"} <= set(catalog.campaigns)
    assert {"members_over_a_year", "women_q1_email_bonus"} <= set(catalog.segments)


def test_wrong_field_names_file_and_field(catalog_dir: Path) -> None:
    path = catalog_dir / "campaigns" / "birthday_week_early.yaml"
    data = yaml.safe_load(path.read_text())
    data["trigger"]["offset_days"] = "a week"
    write(path, data)
    catalog = load_catalog(catalog_dir)
    assert "birthday_week_early" not in catalog.campaigns
    assert "birthday_members_over_a_year" in catalog.campaigns  # the others still load
    (error,) = catalog.errors
    assert error.file == str(path)
    assert error.field == "trigger.anniversary.offset_days"
    assert "integer" in error.message


def test_unknown_template_and_undefined_variable(catalog_dir: Path) -> None:
    path = catalog_dir / "campaigns" / "birthday_week_early.yaml"
    data = yaml.safe_load(path.read_text())
    data["steps"][1]["template"] = "missing.html"
    write(path, data)
    (error,) = load_catalog(catalog_dir).errors
    assert (error.field, "TemplateNotFound") == ("steps.1.template", error.message.split(": ")[1])

    data["steps"][1]["template"] = "birthday_invite.html"
    data["steps"][1]["subject"] = "{{ customer.nickname }}"
    write(path, data)
    (error,) = load_catalog(catalog_dir).errors
    assert error.field == "steps.1.subject"
    assert "nickname" in error.message


def test_unknown_segment_and_bad_step_in_a_branch(catalog_dir: Path) -> None:
    path = catalog_dir / "campaigns" / "birthday_members_over_a_year.yaml"
    data = yaml.safe_load(path.read_text())
    data["audience"]["segment"] = "vip_only"
    write(path, data)
    (error,) = load_catalog(catalog_dir).errors
    assert error.field == "audience.segment"
    assert "vip_only" in error.message

    data["audience"]["segment"] = "members_over_a_year"
    data["steps"].append(
        {
            "type": "filter",
            "id": "has_email",
            "filter": {"field": "has_email", "op": "eq", "value": True},
            "else": [{"type": "send_sms", "id": "sms", "text": "{{ bonus.amont }}"}],
        }
    )
    write(path, data)
    (error,) = load_catalog(catalog_dir).errors
    assert error.field == "steps.1.else.0.text"


def test_invalid_file_is_a_failing_asset_in_the_code_location(catalog_dir: Path, tmp_path: Path) -> None:
    write(catalog_dir / "campaigns" / "broken.yaml", {"id": "broken", "name": "x", "trigger": {"type": "nope"}})
    settings = make_settings(tmp_path, catalog_dir, f"sqlite:///{tmp_path / 'wh.db'}", tmp_path / "s")
    defs = build_definitions(settings)
    key = dg.AssetKey(["invalid_definition", "campaigns", "broken"])
    asset = defs.resolve_assets_def(key)
    assert "broken.yaml" in (asset.descriptions_by_key[key] or "")
    result = dg.materialize([asset], partition_key="2025-06-26", raise_on_error=False)
    assert not result.success
