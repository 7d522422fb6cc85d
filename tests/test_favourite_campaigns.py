"""Scenarios 3 and 4 of the contract (seed 001) end to end: favourite-category reminders on the 26th.

CSV sources (`fixtures/favourites`, whose README lists who is who) → Dagster job → warehouse rows,
on SQLite and PostgreSQL. The catalog copy keeps only the two favourite campaigns so that other
shipped campaigns cannot change what is counted here. Program zone Europe/Moscow = UTC+3 all year.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from loyalty_assets.warehouse.warehouse import Warehouse
from tests.conftest import FIXTURES, keep_campaigns, make_settings, run_days

CHOSEN = "favourite_category_reminder"
NOT_CHOSEN = "favourite_category_not_chosen"
RUN_DATE = date(2025, 6, 26)

Runner = Callable[..., Warehouse]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def favourites_data(tmp_path: Path) -> Path:
    """A private copy of the favourites fixture."""
    target = tmp_path / "data"
    shutil.copytree(FIXTURES / "favourites", target)
    return target


@pytest.fixture
def run(favourites_data: Path, catalog_dir: Path, warehouse_url: str, tmp_path: Path) -> Runner:
    """Run the daily job on the favourites fixture with only the two favourite campaigns."""
    keep_campaigns(catalog_dir, CHOSEN, NOT_CHOSEN)
    settings = make_settings(favourites_data, catalog_dir, warehouse_url, tmp_path / "storage")

    def _run(*days: date) -> Warehouse:
        run_days(settings, days)
        return Warehouse(warehouse_url)

    return _run


def test_case_1_reminds_those_who_chose_june_categories(run: Runner) -> None:
    wh = run(RUN_DATE)
    scope = {"campaign_id": CHOSEN, "partition_date": RUN_DATE}

    triggered = wh.read("triggered_customers", scope).sort("customer_id")
    # Chose June and have a valid, subscribed email: 1, 2 and 5 (5 chose at 23:30 MSK, before the cutoff).
    # 4 chose at 00:30 MSK on 27 June (after the cutoff); 6 unsubscribed; 7 undeliverable.
    assert triggered["customer_id"].to_list() == [1, 2, 5]
    assert set(triggered["occasion"]) == {"favourite_reminder:2025-06-26"}
    assert not triggered["is_control"].any()

    outbox = wh.read("message_outbox", scope).sort("customer_id")
    assert outbox["customer_id"].to_list() == [1, 2, 5]
    assert set(outbox["channel"]) == {"email"}
    assert set(outbox["template"]) == {"favourite_category_reminder.html"}
    send_at = dict(zip(outbox["customer_id"], outbox["send_at"], strict=True))
    assert send_at[1] == utc(2025, 6, 26, 8, 0)  # 11:00 Moscow (UTC+3) = 08:00 UTC
    assert send_at[2] == utc(2025, 6, 26, 1, 0)  # 11:00 Vladivostok (UTC+10) = 01:00 UTC
    assert send_at[5] == utc(2025, 6, 26, 8, 0)

    anna = outbox.filter(pl.col("customer_id") == 1).row(0, named=True)
    assert anna["recipient"] == "anna@example.com"
    assert anna["subject"] == "Anna, your favourite categories earn extra cashback until the month ends"
    # June's choice by name, sorted; May's pet_food choice is another period and is not listed.
    assert "<li>Bakery</li>" in anna["body"]
    assert "<li>Dairy</li>" in anna["body"]
    assert "Корма для животных" not in anna["body"]
    assert anna["body"].index("Bakery") < anna["body"].index("Dairy")
    boris = outbox.filter(pl.col("customer_id") == 2).row(0, named=True)
    assert "<li>Корма для животных</li>" in boris["body"]
    dina = outbox.filter(pl.col("customer_id") == 5).row(0, named=True)
    assert "<li>Dairy</li>" in dina["body"] and "Bakery" not in dina["body"]


def test_case_2_invites_those_who_did_not_choose(run: Runner) -> None:
    wh = run(RUN_DATE)
    scope = {"campaign_id": NOT_CHOSEN, "partition_date": RUN_DATE}

    triggered = wh.read("triggered_customers", scope).sort("customer_id")
    # No June choice visible at the cutoff and a valid, subscribed email:
    # 3 (May only), 4 (chose after the cutoff), 10 (never), 12 (July only).
    # 8 has no email, 9 unsubscribed; 11 registered on 27 June and is invisible.
    assert triggered["customer_id"].to_list() == [3, 4, 10, 12]
    assert set(triggered["occasion"]) == {"favourite_not_chosen:2025-06-26"}

    outbox = wh.read("message_outbox", scope).sort("customer_id")
    assert outbox["customer_id"].to_list() == [3, 4, 10, 12]
    send_at = dict(zip(outbox["customer_id"], outbox["send_at"], strict=True))
    assert send_at[3] == utc(2025, 6, 26, 8, 0)  # no zone: the program's, 11:00 MSK = 08:00 UTC
    assert send_at[10] == utc(2025, 6, 26, 9, 0)  # 11:00 Kaliningrad (UTC+2) = 09:00 UTC
    vera = outbox.filter(pl.col("customer_id") == 3).row(0, named=True)
    assert vera["subject"] == "Vera, you can still choose your favourite categories"
    assert "you have not chosen your favourite categories this month yet" in vera["body"]

    # Nobody gets both emails, and everyone with a usable email gets exactly one.
    chosen = set(wh.read("message_outbox", {"campaign_id": CHOSEN})["customer_id"])
    assert chosen.isdisjoint(outbox["customer_id"])
    assert chosen | set(outbox["customer_id"]) == {1, 2, 3, 4, 5, 10, 12}


def test_nothing_fires_on_the_25th(run: Runner) -> None:
    wh = run(date(2025, 6, 25))
    for campaign in (CHOSEN, NOT_CHOSEN):
        assert wh.read("triggered_customers", {"campaign_id": campaign}).is_empty()
        assert wh.read("message_outbox", {"campaign_id": campaign}).is_empty()


def test_a_choice_counts_from_the_run_whose_cutoff_it_precedes(run: Runner) -> None:
    """Point in time: 4's choice (27 June 00:30 MSK) is invisible on the 26th; re-running the 26th
    after the 27th was run does not let it leak back, and the occasion is not handled twice."""
    wh = run(RUN_DATE, date(2025, 6, 27), RUN_DATE)
    reminded = wh.read("triggered_customers", {"campaign_id": CHOSEN})
    invited = wh.read("triggered_customers", {"campaign_id": NOT_CHOSEN})
    assert sorted(reminded["customer_id"]) == [1, 2, 5]
    assert sorted(invited["customer_id"]) == [3, 4, 10, 12]
    assert set(invited["partition_date"]) == {RUN_DATE}  # nothing fires on the 27th


def test_the_reminder_repeats_monthly_with_that_months_choice(run: Runner, favourites_data: Path) -> None:
    """The trigger recurs on day 26: on 26 July the July period decides (12 chose July early)."""
    wh = run(date(2025, 7, 26))
    reminded = wh.read("triggered_customers", {"campaign_id": CHOSEN, "partition_date": date(2025, 7, 26)})
    invited = wh.read("triggered_customers", {"campaign_id": NOT_CHOSEN, "partition_date": date(2025, 7, 26)})
    # July: only 12 chose (dairy). 11 registered 27 June and is visible now: not chosen → invited.
    assert reminded["customer_id"].to_list() == [12]
    assert sorted(invited["customer_id"]) == [1, 2, 3, 4, 5, 10, 11]
    body = wh.read("message_outbox", {"campaign_id": CHOSEN})["body"][0]
    assert "<li>Dairy</li>" in body
