"""Scenarios 1 and 2 of the contract end to end: CSV sources → Dagster job → warehouse rows.

Expectations are computed by hand from `fixtures/birthdays` (its README lists who is who).
Program zone Europe/Moscow = UTC+3 all year.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import yaml

from loyalty_assets.warehouse.activity import customer_activity
from loyalty_assets.warehouse.membership import members_on
from loyalty_assets.warehouse.warehouse import Warehouse
from tests.conftest import BIRTHDAY_WRITERS, copy_inputs, keep_campaigns, make_settings, run_days

WEEK_EARLY = "birthday_week_early"
OVER_A_YEAR = "birthday_members_over_a_year"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def run(birthday_data: Path, catalog_dir: Path, warehouse_url: str, tmp_path: Path):
    """The daily job on this test's own warehouse, with the campaigns that write rows on the fixture."""
    settings = make_settings(
        birthday_data, keep_campaigns(catalog_dir, *BIRTHDAY_WRITERS), warehouse_url, tmp_path / "storage"
    )

    def _run(*days: date) -> Warehouse:
        run_days(settings, days)
        return Warehouse(warehouse_url)

    return _run


@pytest.fixture(scope="module")
def birthday_days(module_warehouses: Callable[[], str], tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """21 Feb, 22 Feb and 1 Mar 2025 day by day, once per warehouse kind, for the tests that only read
    those dates (a date's rows are final once it has run; 1 Mar starts from 22 Feb's state)."""
    root = tmp_path_factory.mktemp("birthday_days")
    data, catalog = copy_inputs(root, "birthdays")
    url = module_warehouses()
    run_days(
        make_settings(data, keep_campaigns(catalog, *BIRTHDAY_WRITERS), url, root / "storage"),
        [date(2025, 2, 21), date(2025, 2, 22), date(2025, 3, 1)],
    )
    return Warehouse(url)


def test_week_early_birthday_on_22_february_2025(birthday_days: Warehouse) -> None:
    wh = birthday_days
    scope = {"campaign_id": WEEK_EARLY, "partition_date": date(2025, 2, 22)}

    triggered = wh.read("triggered_customers", scope).sort("customer_id")
    # 7 and 13 are born 29 Feb: observed 1 Mar in 2025, so the week-early trigger fires 22 Feb.
    # 12 (28 Feb) fired on 21 Feb; 14 registered after the date and is invisible.
    assert triggered["customer_id"].to_list() == [7, 8, 9, 10, 11, 13, 16]
    assert set(triggered["occasion"]) == {"birthday:2025-03-01"}
    assert not triggered["is_control"].any()
    at = dict(zip(triggered["customer_id"], triggered["triggered_at"], strict=True))
    assert at[7] == utc(2025, 2, 22, 7, 0)  # 10:00 Moscow
    assert at[8] == utc(2025, 2, 22, 0, 0)  # 10:00 Vladivostok (UTC+10)
    assert at[9] == utc(2025, 2, 22, 7, 0)  # no zone: the program's

    accruals = wh.read("bonus_accruals", scope).sort("customer_id")
    assert accruals["customer_id"].to_list() == [7, 8, 9, 10, 11, 13, 16]
    assert set(accruals["amount"]) == {Decimal("500.00")}
    assert set(accruals["legal_entity"]) == {"X"}
    anna = accruals.filter(pl.col("customer_id") == 7).row(0, named=True)
    assert anna["accrual_id"] == "birthday_week_early:birthday_bonus:7:birthday:2025-03-01"
    assert anna["accrued_at"] == utc(2025, 2, 22, 7, 0)
    assert anna["expires_at"] == utc(2025, 3, 24, 7, 0)  # 30 days

    outbox = wh.read("message_outbox", scope).sort("customer_id")
    # 9 has no email, 10 unsubscribed, 11 undeliverable: accrual but no email.
    assert outbox["customer_id"].to_list() == [7, 8, 13, 16]
    mail = outbox.filter(pl.col("customer_id") == 7).row(0, named=True)
    assert mail["channel"] == "email"
    assert mail["recipient"] == "anna@example.com"
    assert mail["subject"] == "Anna, 500.00 bonuses for your birthday"
    assert "Anna, happy birthday in advance!" in mail["body"]
    assert "<strong>500.00</strong> bonuses" in mail["body"]
    assert "valid until 24.03.2025" in mail["body"]
    assert mail["send_at"] == utc(2025, 2, 22, 7, 0)
    assert mail["batch_no"] == 1
    assert mail["template"] == "birthday_invite.html"

    zoya = outbox.filter(pl.col("customer_id") == 16).row(0, named=True)
    assert "&lt;i&gt;Zoya&lt;/i&gt;, happy birthday" in zoya["body"]  # HTML body: escaped
    assert zoya["subject"].startswith("<i>Zoya</i>, 500.00")  # plain-text subject: as written

    log = wh.read("activity_events", scope)
    skipped = log.filter(pl.col("kind") == "message_skipped").sort("customer_id")
    assert skipped["customer_id"].to_list() == [9, 10, 11]
    assert [d.split(": ")[1].split(" ")[0] for d in skipped["details"]] == [
        "no_email",
        "email_unsubscribed",
        "email_invalid",
    ]


def test_activity_log_is_lean_and_the_history_complete(birthday_days: Warehouse) -> None:
    """The log stores only skips, waits and the ends of journeys that waited; entries, accruals, messages
    and the ends of journeys that ended in the run that entered them come from their tables."""
    wh = birthday_days
    scope = {"campaign_id": WEEK_EARLY, "partition_date": date(2025, 2, 22)}
    assert set(wh.read("activity_events", scope)["kind"]) == {"message_skipped"}
    ended = wh.read("triggered_customers", {**scope, "customer_id": 7}).row(0, named=True)
    assert (ended["ended_at"], ended["ended_reason"], ended["ended_step"]) == (utc(2025, 2, 22, 7, 0), "completed", "")

    anna = customer_activity(wh, {**scope, "customer_id": 7})
    assert anna.select("kind", "details", "stage").rows() == [
        ("entered", "birthday:2025-03-01", "triggered"),
        (
            "bonus_accrued",
            "500.00 bonuses, expires 2025-03-24T07:00Z, legal entity X (birthday:2025-03-01)",
            "accruals",
        ),
        ("message_queued", "email invite_email (birthday:2025-03-01)", "messages"),
        ("journey_ended", "completed at end (birthday:2025-03-01)", "journey"),
    ]
    assert anna["event_id"].to_list() == [
        "triggered:birthday_week_early:7:birthday:2025-03-01",
        "accruals:birthday_week_early:birthday_week_early:birthday_bonus:7:birthday:2025-03-01",
        f"messages:birthday_week_early:{wh.read('message_outbox', {**scope, 'customer_id': 7})['message_id'][0]}",
        "journey:birthday_week_early:7:birthday:2025-03-01:end",
    ]
    assert set(anna["ts"]) == {utc(2025, 2, 22, 7, 0)} and set(anna["partition_date"]) == {date(2025, 2, 22)}
    kinds = customer_activity(wh, scope).group_by("kind").len().sort("kind").rows()
    assert kinds == [
        ("bonus_accrued", 7),
        ("entered", 7),
        ("journey_ended", 7),
        ("message_queued", 4),
        ("message_skipped", 3),
    ]
    assert customer_activity(wh, scope, kinds=("message_skipped",))["customer_id"].sort().to_list() == [9, 10, 11]


def test_28_february_birthday_fires_a_day_earlier(birthday_days: Warehouse) -> None:
    wh = birthday_days
    triggered = wh.read("triggered_customers", {"campaign_id": WEEK_EARLY, "partition_date": date(2025, 2, 21)})
    assert triggered["customer_id"].to_list() == [12]
    assert triggered["occasion"].to_list() == ["birthday:2025-02-28"]


def test_29_february_on_28_february_option(run, catalog_dir: Path) -> None:
    path = catalog_dir / "campaigns" / f"{WEEK_EARLY}.yaml"
    definition = yaml.safe_load(path.read_text())
    definition["trigger"]["missing_day"] = "last_day"
    path.write_text(yaml.safe_dump(definition, allow_unicode=True))

    wh = run(date(2025, 2, 21), date(2025, 2, 22))
    on_21 = wh.read("triggered_customers", {"campaign_id": WEEK_EARLY, "partition_date": date(2025, 2, 21)})
    on_22 = wh.read("triggered_customers", {"campaign_id": WEEK_EARLY, "partition_date": date(2025, 2, 22)})
    assert sorted(on_21["customer_id"]) == [7, 12, 13]  # 29 Feb observed on 28 Feb
    assert set(on_21.filter(pl.col("customer_id") == 7)["occasion"]) == {"birthday:2025-02-28"}
    assert sorted(on_22["customer_id"]) == [8, 9, 10, 11, 16]


def test_leap_year_29_february_is_its_own_day(run) -> None:
    wh = run(date(2024, 2, 22))
    triggered = wh.read("triggered_customers", {"campaign_id": WEEK_EARLY, "partition_date": date(2024, 2, 22)})
    # In 2024 the 29th exists: only customer 7 (13 had not registered yet).
    assert triggered["customer_id"].to_list() == [7]
    assert triggered["occasion"].to_list() == ["birthday:2024-02-29"]


def test_birthday_bonus_for_members_over_a_year_on_the_day(birthday_days: Warehouse) -> None:
    wh = birthday_days
    scope = {"campaign_id": OVER_A_YEAR, "partition_date": date(2025, 3, 1)}
    members = members_on(wh, "members_over_a_year", date(2025, 3, 1))
    # Registered at least 365 days before 1 Mar 2025 (16: exactly 365); 13 (90 days) is not.
    assert sorted(members["customer_id"]) == [7, 8, 9, 10, 11, 12, 16]

    accruals = wh.read("bonus_accruals", scope).sort("customer_id")
    # Birthdays observed on 1 Mar: 7 (29 Feb), 8, 9, 10, 11, 13, 16 → minus 13 (member < 1 year).
    assert accruals["customer_id"].to_list() == [7, 8, 9, 10, 11, 16]
    assert set(accruals["amount"]) == {Decimal("300.00")}
    at = dict(zip(accruals["customer_id"], accruals["accrued_at"], strict=True))
    assert at[7] == utc(2025, 3, 1, 6, 0)  # 09:00 Moscow
    assert at[8] == utc(2025, 2, 28, 23, 0)  # 09:00 Vladivostok is still 28 Feb in UTC
    expires = dict(zip(accruals["customer_id"], accruals["expires_at"], strict=True))
    assert expires[7] == utc(2025, 3, 15, 6, 0)  # 14 days
    assert wh.read("message_outbox", scope).is_empty()  # this campaign only accrues

    log = customer_activity(wh, scope, kinds=("bonus_accrued",)).sort("customer_id")
    assert log["customer_id"].to_list() == [7, 8, 9, 10, 11, 16]
    assert log["details"][0].startswith("300.00 bonuses, expires 2025-03-15T06:00Z, legal entity X")
