"""`loyalty explain` on the birthday and campaign-settings fixtures (their READMEs say who is who)."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from loyalty_assets.cli import main
from loyalty_assets.config.catalog import load_catalog
from loyalty_assets.reporting.explain import explain
from loyalty_assets.warehouse.warehouse import Warehouse
from tests.conftest import FIXTURES, make_settings, run_days


def lines_for(data: Path, catalog_dir: Path, storage: Path, customer: int, campaign: str, day: date) -> list[str]:
    """Explained from the state the runs stored in `storage` (an empty folder: nothing ran yet)."""
    return explain(load_catalog(catalog_dir), customer, campaign, day, data_dir=data, storage_dir=storage)


def test_names_the_condition_that_kept_a_customer_out(birthday_data: Path, catalog_dir: Path, tmp_path: Path) -> None:
    # 13 registered 2024-12-01: on 2025-03-01 a member for 90 days, the segment wants ≥ 365
    out = lines_for(
        birthday_data,
        catalog_dir,
        tmp_path / "no-runs",
        13,
        "birthday_members_over_a_year",
        date(2025, 3, 1),
    )
    assert "  fired: occasion birthday:2025-03-01 at 2025-03-01 06:00 UTC" in out
    assert "    NO  member of segment members_over_a_year" in out
    assert "      NO  days_since_registration ge 365 — the customer's value: 90" in out
    assert "kept out: not in the campaign's audience on this date" in out
    assert out[-1] == "no steps on this date"


def test_trigger_not_fired_and_message_skipped(birthday_data: Path, catalog_dir: Path, tmp_path: Path) -> None:
    url = tmp_path / "no-runs"
    day = date(2025, 2, 22)
    twelve = lines_for(birthday_data, catalog_dir, url, 12, "birthday_week_early", day)
    assert "  the customer's birth_date: 1990-02-28" in twelve
    assert "  did NOT fire for this customer on 2025-02-22" in twelve  # 28 Feb − 7 days = 21 Feb
    nine = lines_for(birthday_data, catalog_dir, url, 9, "birthday_week_early", day)
    assert "entered (birthday:2025-03-01)" in nine
    assert "bonus accrued: 500.00, expires 2025-03-24 07:00 UTC" in nine
    assert "message invite_email by email SKIPPED: no e-mail address" in nine


def test_explain_matches_what_the_run_wrote(
    birthday_data: Path, catalog_dir: Path, warehouse_url: str, tmp_path: Path
) -> None:
    settings = make_settings(birthday_data, catalog_dir, warehouse_url, tmp_path / "storage")
    run_days(settings, [date(2025, 2, 22)])
    written = Warehouse(warehouse_url).read("message_outbox", {"campaign_id": "birthday_week_early", "customer_id": 8})
    send_at = written.get_column("send_at")[0]
    out = lines_for(birthday_data, catalog_dir, tmp_path / "storage", 8, "birthday_week_early", date(2025, 2, 22))
    # 8 lives in Vladivostok: 10:00 local = 00:00 UTC, as written by the run
    assert f"message invite_email by email at {send_at:%Y-%m-%d %H:%M} UTC, batch 1" in out
    assert f"{send_at:%H:%M}" == "00:00"
    # explained after the run, the date's own rows are not taken for an earlier entry (as a re-run)
    assert "entered (birthday:2025-03-01)" in out
    assert not any(line.startswith("earlier entry") for line in out)


def test_control_group_and_campaign_not_live(
    catalog_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / "campaign_settings", data)
    url = f"sqlite:///{tmp_path / 'none.db'}"
    campaign_file = catalog_dir / "campaigns" / "birthday_ab_channels.yaml"  # as in the fixture's README
    campaign_file.write_text(campaign_file.read_text().replace("start_date: 2025-06-01", "start_date: 2025-07-01"))
    control = lines_for(data, catalog_dir, tmp_path / "no-runs", 129, "birthday_ab_channels", date(2025, 7, 10))
    assert (
        "entered (membership_birthday:2025-07-10) in the campaign's control group (10%): recorded, nothing sent"
        in control
    )
    early = lines_for(data, catalog_dir, tmp_path / "no-runs", 129, "birthday_ab_channels", date(2025, 6, 30))
    assert (
        early[-1] == "the campaign is not live on 2025-06-30: status active, start_date 2025-07-01, end_date 2025-12-31"
    )
    monkeypatch.setenv("LOYALTY_DATA_DIR", str(data))
    monkeypatch.setenv("LOYALTY_CAMPAIGNS_DIR", str(catalog_dir))
    monkeypatch.setenv("LOYALTY_DATABASE_URL", url)
    monkeypatch.setenv("LOYALTY_STORAGE_DIR", str(tmp_path / "no-runs"))
    assert main(["explain", "101", "--campaign", "birthday_ab_channels", "--date", "2025-07-10"]) == 0
    printed = capsys.readouterr().out
    assert "entered (membership_birthday:2025-07-10), variant " in printed
    assert "message membership_" in printed
    assert main(["explain", "101", "--campaign", "nope", "--date", "2025-07-10"]) == 1
    assert capsys.readouterr().err.startswith("ERROR unknown campaign 'nope'")
