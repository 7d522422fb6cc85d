"""Broken definitions fail with file, field and expectation, and do not stop the other campaigns."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from loyalty_assets.config.catalog import load_catalog, load_program
from loyalty_assets.config.errors import DefinitionError
from loyalty_assets.defs.definitions import build_definitions
from tests.conftest import keep_campaigns, make_settings


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


# --- issue 7: definitions and catalog loading (items 6-10) ---------------------------------------


def purchase_campaign(accrual: dict, template: str) -> dict:
    """A purchase campaign: one accrual, then an email with the given template file."""
    return {
        "id": "thanks",
        "name": "Thanks for the purchase",
        "trigger": {"type": "event", "event": "purchase"},
        "steps": [
            {"type": "accrue_bonuses", "id": "cashback", "legal_entity": "X", **accrual},
            {"type": "send_email", "id": "thanks_email", "subject": "Thank you", "template": template},
        ],
    }


def test_a_template_needing_a_bonus_fails_validation_when_the_accrual_can_be_missing(catalog_dir: Path) -> None:
    # A percent-of-check accrual that rounds to 0.00 is not written: the occasion then has no bonus.
    (catalog_dir / "templates" / "thanks.html").write_text("<p>Thank you!</p>\n<p>{{ bonus.amount }} bonuses</p>\n")
    path = catalog_dir / "campaigns" / "thanks.yaml"
    write(path, purchase_campaign({"percent_of_check": "1"}, "thanks.html"))
    (error,) = load_catalog(catalog_dir).errors
    assert (error.file, error.field) == (str(path), "steps.1.template")
    assert error.message.startswith("template 'thanks.html' line 2, when bonus is absent")
    assert "UndefinedError" in error.message and "amount" in error.message

    # A fixed amount before the step makes the bonus certain: the same template is fine.
    write(path, purchase_campaign({"amount": "100.00"}, "thanks.html"))
    catalog = load_catalog(catalog_dir)
    assert catalog.errors == [] and "thanks" in catalog.campaigns

    # Guarded, it is fine with a percent too.
    (catalog_dir / "templates" / "thanks.html").write_text("{% if bonus %}{{ bonus.amount }}{% endif %}")
    write(path, purchase_campaign({"percent_of_check": "1"}, "thanks.html"))
    assert load_catalog(catalog_dir).errors == []


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("{{ favourite_categories[0] }}", "favourite_categories is empty"),
        ("{{ check.total * 2 }}", "check is absent"),
        ("{{ event.amount + 1 }}", "event.amount is absent"),
    ],
)
def test_every_variable_shape_is_rendered(catalog_dir: Path, text: str, shape: str) -> None:
    path = catalog_dir / "campaigns" / "birthday_week_early.yaml"
    data = yaml.safe_load(path.read_text())
    data["steps"][1]["subject"] = text
    write(path, data)
    (error,) = load_catalog(catalog_dir).errors
    assert error.field == "steps.1.subject"
    assert error.message.startswith("template line 1, ") and shape in error.message


def test_template_syntax_error_names_the_template_and_line(catalog_dir: Path) -> None:
    (catalog_dir / "templates" / "broken.html").write_text("<p>Hello</p>\n<p>{{ customer.first_name }</p>\n")
    path = catalog_dir / "campaigns" / "birthday_week_early.yaml"
    data = yaml.safe_load(path.read_text())
    data["steps"][1]["template"] = "broken.html"
    write(path, data)
    (error,) = load_catalog(catalog_dir).errors
    assert error.field == "steps.1.template"
    assert error.message.startswith("template 'broken.html' line 2: TemplateSyntaxError")
    # In an included template, the error names that template and its own line.
    (catalog_dir / "templates" / "outer.html").write_text("<p>Hi</p>\n{% include 'broken.html' %}\n")
    data["steps"][1]["template"] = "outer.html"
    write(path, data)
    (error,) = load_catalog(catalog_dir).errors
    assert error.message.startswith("template 'broken.html' line 2: TemplateSyntaxError")
    # An inline text (a subject) names its line too.
    data["steps"][1]["template"] = "birthday_invite.html"
    data["steps"][1]["subject"] = "Hi {% if %}"
    write(path, data)
    (error,) = load_catalog(catalog_dir).errors
    assert (error.field, error.message.split(": ")[0]) == ("steps.1.subject", "template line 1")


def test_one_id_in_two_files_is_an_error_naming_both(catalog_dir: Path, tmp_path: Path) -> None:
    campaigns = catalog_dir / "campaigns"
    source = campaigns / "birthday_week_early.yaml"
    (campaigns / "birthday_week_early.yml").write_text(source.read_text())
    segments = catalog_dir / "segments"
    (segments / "members_over_a_year.yml").write_text((segments / "members_over_a_year.yaml").read_text())
    catalog = load_catalog(catalog_dir)
    assert "birthday_week_early" not in catalog.campaigns  # neither file wins
    assert "members_over_a_year" not in catalog.segments
    by_file = {Path(e.file).name: e for e in catalog.errors}
    assert sorted(by_file) == [
        "birthday_members_over_a_year.yaml",  # uses the duplicated segment: says why it cannot run
        "birthday_week_early.yaml",
        "members_over_a_year.yaml",
    ]
    assert by_file["birthday_week_early.yaml"].field == "id"
    assert (
        "more than one file (birthday_week_early.yaml, birthday_week_early.yml)"
        in by_file["birthday_week_early.yaml"].message
    )
    assert "(members_over_a_year.yaml, members_over_a_year.yml)" in by_file["members_over_a_year.yaml"].message
    assert "members_over_a_year" in by_file["birthday_members_over_a_year.yaml"].message
    # The code location still loads and shows the broken id as one failing asset.
    defs = build_definitions(make_settings(tmp_path, catalog_dir, f"sqlite:///{tmp_path / 'wh.db'}", tmp_path / "s"))
    key = dg.AssetKey(["invalid_definition", "campaigns", "birthday_week_early"])
    assert "birthday_week_early.yml" in (defs.resolve_assets_def(key).descriptions_by_key[key] or "")


def test_segment_files_ending_in_yml_are_read(catalog_dir: Path) -> None:
    segments = catalog_dir / "segments"
    (segments / "members_over_a_year.yaml").rename(segments / "members_over_a_year.yml")
    catalog = load_catalog(catalog_dir)
    assert catalog.errors == []
    assert "members_over_a_year" in catalog.segments


@pytest.mark.parametrize(
    ("content", "field", "message"),
    [
        (b"timezone: Mars/Base\n", "timezone", "unknown IANA time zone 'Mars/Base'"),
        (b"- timezone\n", "<root>", "expected a mapping"),
        (b"timezone: [\n", "line 2", "not valid YAML"),
        (b"frequency_cap: {max_messages: 0}\n", "frequency_cap.max_messages", "greater than or equal to 1"),
        (b"timezone: Europe/Moscow\ncity: \xff\n", "<file>", "not UTF-8"),
        # YAML 1.1 would read 25:00 as the number 1500 and the time as 00:25, silently.
        (b"daily_run_at: 25:00\n", "daily_run_at", "time"),
    ],
)
def test_a_bad_program_file_is_one_definition_error(
    catalog_dir: Path, content: bytes, field: str, message: str
) -> None:
    path = catalog_dir / "program.yaml"
    path.write_bytes(content)
    with pytest.raises(DefinitionError) as error:
        load_program(catalog_dir)
    assert (error.value.file, error.value.field) == (str(path), field)
    assert message in error.value.message
    assert "\n" not in str(error.value)  # one line: `file: field 'x': message`


def test_unquoted_times_mean_the_time_written(catalog_dir: Path) -> None:
    (catalog_dir / "program.yaml").write_text("daily_run_at: 06:30\n")
    assert str(load_program(catalog_dir).daily_run_at) == "06:30:00"
    path = catalog_dir / "campaigns" / "birthday_week_early.yaml"
    path.write_text(path.read_text().replace('at: "10:00"', "at: 10:00"))
    assert str(load_catalog(catalog_dir).campaigns["birthday_week_early"].trigger.at) == "10:00:00"


def test_a_saved_segment_can_use_a_manual_segment_kept_by_a_campaign(catalog_dir: Path) -> None:
    # `fish_owners` is kept by the add_to_segment step of aquarium_fish_chain.
    write(
        catalog_dir / "segments" / "fish_owners_subscribed.yaml",
        {
            "name": "Fish owners with a subscribed e-mail",
            "filter": {
                "all": [
                    {"field": "segment", "op": "eq", "value": "fish_owners"},
                    {"field": "email_subscribed", "op": "eq", "value": True},
                ]
            },
        },
    )
    catalog = load_catalog(catalog_dir)
    assert catalog.errors == []
    assert "fish_owners_subscribed" in catalog.segments
    assert "fish_owners" in catalog.manual_segments
    # A name nobody keeps is still unknown, and the message lists the manual segments.
    write(
        catalog_dir / "segments" / "typo.yaml",
        {"name": "Typo", "filter": {"field": "segment", "op": "eq", "value": "fish_ownres"}},
    )
    (error,) = load_catalog(catalog_dir).errors
    assert "unknown segment 'fish_ownres'" in error.message and "fish_owners" in error.message


def test_a_saved_segment_reading_a_manual_segment_gets_its_members(
    catalog_dir: Path, warehouse_url: str, tmp_path: Path
) -> None:
    """Fish chain fixture: customers 1 and 2 buy fish on 10 June and join `fish_owners` (3 does not).

    Membership on D is as of the start of D, so the saved segment is empty on 10 June and holds 1
    and 2 on 11 June.
    """
    import shutil
    from datetime import date

    from loyalty_assets.warehouse.warehouse import Warehouse
    from tests.conftest import FIXTURES, run_days

    data = tmp_path / "fish"
    shutil.copytree(FIXTURES / "fish_chain", data)
    keep_campaigns(catalog_dir, "aquarium_fish_chain")
    write(
        catalog_dir / "segments" / "fish_owners_subscribed.yaml",
        {
            "name": "Fish owners with a subscribed e-mail",
            "filter": {
                "all": [
                    {"field": "segment", "op": "eq", "value": "fish_owners"},
                    {"field": "email_subscribed", "op": "eq", "value": True},
                ]
            },
        },
    )
    run_days(make_settings(data, catalog_dir, warehouse_url, tmp_path / "s"), [date(2025, 6, 10), date(2025, 6, 11)])
    from loyalty_assets.warehouse.membership import members_on

    wh = Warehouse(warehouse_url)
    by_day = {
        d: sorted(members_on(wh, "fish_owners_subscribed", d)["customer_id"])
        for d in (date(2025, 6, 10), date(2025, 6, 11))
    }
    assert by_day == {date(2025, 6, 10): [], date(2025, 6, 11): [1, 2]}
