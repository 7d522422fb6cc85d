"""The frequency cap is one arbitration across campaigns inside the day, and reaches across days.

Fixture `fixtures/birthdays`; the shipped catalog plus two copies of the week-early campaign, with
`frequency_cap: {max_messages: 1, days: 7}`. Week-early (priority 100) emails 7, 8, 13 and 16 on
22 Feb (birthdays observed 1 Mar; 9, 10 and 11 have no usable email). A same-day copy with a lower
priority (200) is capped for all four; a copy two days later (24 Feb) with the HIGHEST priority (10)
is capped too, by the 22 Feb emails carried in `loyalty_state`. Customer 12 (28 Feb) gets the later
copy's email on 23 Feb: her week-early email was due on 21 Feb, a date not run here.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import yaml

from loyalty_assets.warehouse.warehouse import Warehouse
from tests.conftest import make_settings, run_days


def copy_campaign(catalog_dir: Path, new_id: str, offset_days: int, priority: int) -> None:
    data = yaml.safe_load((catalog_dir / "campaigns" / "birthday_week_early.yaml").read_text())
    data["id"] = new_id
    data["trigger"]["offset_days"] = offset_days
    data["settings"]["priority"] = priority
    (catalog_dir / "campaigns" / f"{new_id}.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))


def test_cap_across_campaigns_and_days(birthday_data: Path, catalog_dir: Path, tmp_path: Path) -> None:
    program = catalog_dir / "program.yaml"
    settings_yaml = yaml.safe_load(program.read_text())
    settings_yaml["frequency_cap"] = {"max_messages": 1, "days": 7}
    program.write_text(yaml.safe_dump(settings_yaml, allow_unicode=True))
    copy_campaign(catalog_dir, "birthday_same_day", -7, 200)
    copy_campaign(catalog_dir, "birthday_two_days_later", -5, 10)
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    run_days(
        make_settings(birthday_data, catalog_dir, url, tmp_path / "storage"), [date(2025, 2, d) for d in (22, 23, 24)]
    )
    wh = Warehouse(url)

    def sent(campaign: str, day: int) -> list[int]:
        rows = wh.read("message_outbox", {"campaign_id": campaign, "partition_date": date(2025, 2, day)})
        return sorted(rows["customer_id"])

    def capped(campaign: str, day: int) -> list[int]:
        scope = {"campaign_id": campaign, "partition_date": date(2025, 2, day), "kind": "message_skipped"}
        rows = wh.read("activity_events", scope).filter(pl.col("details").str.contains("frequency_cap"))
        return sorted(rows["customer_id"])

    assert sent("birthday_week_early", 22) == [7, 8, 13, 16]
    assert sent("birthday_same_day", 22) == []
    assert capped("birthday_same_day", 22) == [7, 8, 13, 16]
    assert sent("birthday_two_days_later", 23) == [12]
    assert sent("birthday_two_days_later", 24) == []
    assert capped("birthday_two_days_later", 24) == [7, 8, 13, 16]
    # the cap holds back messages, never accruals
    accrued = wh.read("bonus_accruals", {"campaign_id": "birthday_same_day", "partition_date": date(2025, 2, 22)})
    assert sorted(accrued["customer_id"]) == [7, 8, 9, 10, 11, 13, 16]
