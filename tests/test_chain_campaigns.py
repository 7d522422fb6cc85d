"""Scenarios 6 and 7 of the contract (seed 003) end to end: a message chain after a purchase, and
bonus-expiry warnings and notices.

Sources are CSV fixtures (`fixtures/fish_chain`, `fixtures/bonus_expiry`; their READMEs list who is
who), run through the Dagster job on SQLite and PostgreSQL. Each test's catalog copy keeps only the
campaigns it is about, so other shipped campaigns cannot change what is counted.
Program zone Europe/Moscow = UTC+3 all year; Asia/Vladivostok = UTC+10.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from loyalty_assets.warehouse.warehouse import Warehouse
from tests.conftest import FIXTURES, copy_inputs, keep_campaigns, make_settings, run_days

FISH = "aquarium_fish_chain"
WARNING = "bonus_expiry_warning"
NOTICE = "bonus_expired_notice"
JUNE_10 = date(2025, 6, 10)
JUNE_11 = date(2025, 6, 11)
FISH_DAYS = [date(2025, 6, 9), JUNE_10, JUNE_11, date(2025, 6, 12), date(2025, 6, 13), date(2025, 6, 21)]
BACKFILL_WEEK = [date(2025, 6, 8) + timedelta(days=i) for i in range(7)]

Runner = Callable[..., Warehouse]

#: Output tables and the keys that order them for comparisons.
OUTPUT_TABLES: dict[str, list[str]] = {
    "triggered_customers": ["campaign_id", "customer_id", "occasion"],
    "bonus_accruals": ["accrual_id"],
    "message_outbox": ["message_id"],
    "journey_pending": ["campaign_id", "partition_date", "customer_id", "occasion", "node"],
    "manual_segment_events": ["event_id"],
    "segment_members": ["segment_id", "customer_id", "entered_on"],
    "activity_events": ["event_id"],
}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def snapshot(url: str) -> dict[str, pl.DataFrame]:
    wh = Warehouse(url)
    return {table: wh.read(table).sort(key) for table, key in OUTPUT_TABLES.items()}


def copy_fixture(name: str, tmp_path: Path) -> Path:
    target = tmp_path / f"data_{name}"
    shutil.copytree(FIXTURES / name, target)
    return target


@pytest.fixture
def fish_data(tmp_path: Path) -> Path:
    return copy_fixture("fish_chain", tmp_path)


@pytest.fixture
def run_fish(fish_data: Path, catalog_dir: Path, warehouse_url: str, tmp_path: Path) -> Runner:
    """The daily job on the fish fixture with the fish chain only (campaigns may be added back)."""
    settings = make_settings(fish_data, keep_campaigns(catalog_dir, FISH), warehouse_url, tmp_path / "storage")

    def _run(*run_dates: date) -> Warehouse:
        run_days(settings, run_dates)
        return Warehouse(warehouse_url)

    return _run


def _fish_owner_campaign(catalog_dir: Path, audience: str, campaign_id: str = "fish_owner_check") -> None:
    """A one-off campaign on 12 June whose audience reads the manual segment `fish_owners`."""
    (catalog_dir / "campaigns" / f"{campaign_id}.yaml").write_text(
        f"id: {campaign_id}\n"
        "name: Fish owners\n"
        "trigger: {type: fixed_date, on_date: 2025-06-12, at: '12:00'}\n"
        f"audience: {audience}\n"
        "steps:\n"
        "  - {type: accrue_bonuses, id: b, amount: '1.00', legal_entity: X}\n",
        encoding="utf8",
    )


def _fish_owner_welcome(catalog_dir: Path) -> None:
    """A campaign triggered by entering the manual segment `fish_owners`."""
    (catalog_dir / "campaigns" / "fish_owner_welcome.yaml").write_text(
        "id: fish_owner_welcome\n"
        "name: Welcome to fish owners\n"
        "trigger: {type: event, event: segment_entered, segment: fish_owners}\n"
        "steps:\n"
        "  - {type: accrue_bonuses, id: b, amount: '1.00', legal_entity: X}\n",
        encoding="utf8",
    )


@pytest.fixture(scope="module")
def fish_days(module_warehouses: Callable[[], str], tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """9–13 and 21 June on the fish fixture, run once per warehouse kind and read by the tests below
    that only look at those dates (each date's rows are final once it has run). The catalog: the fish
    chain, the campaigns that read its manual segment `fish_owners` (by `segment:`, by a filter, on
    entering it) and the expiry warning; each test reads its own campaign's rows."""
    root = tmp_path_factory.mktemp("fish_days")
    data, catalog = copy_inputs(root, "fish_chain")
    keep_campaigns(catalog, FISH, WARNING)
    _fish_owner_campaign(catalog, "{segment: fish_owners}")
    _fish_owner_campaign(catalog, "{filter: {field: segment, op: eq, value: fish_owners}}", "fish_owner_filter")
    _fish_owner_welcome(catalog)
    url = module_warehouses()
    run_days(make_settings(data, catalog, url, root / "storage"), FISH_DAYS)
    return Warehouse(url)


# --- scenario 6: the aquarium-fish chain ------------------------------------------------------


def test_purchase_day_sends_congratulation_and_tips_and_keeps_the_fact_pending(fish_days: Warehouse) -> None:
    wh = fish_days
    scope = {"campaign_id": FISH, "partition_date": JUNE_10}

    triggered = wh.read("triggered_customers", scope).sort("customer_id")
    # 1 bought guppies (under aquarium_fish), 2 aquarium_fish; 3 only pet food: no chain.
    assert triggered["customer_id"].to_list() == [1, 2]
    assert triggered["occasion"].to_list() == ["purchase:F1", "purchase:F2"]
    assert triggered["triggered_at"].to_list() == [utc(2025, 6, 10, 12, 0)] * 2  # at the purchase

    outbox = wh.read("message_outbox", scope).sort("customer_id", "send_at")
    assert outbox.select("customer_id", "step_id", "send_at").rows() == [
        (1, "fish_congratulation", utc(2025, 6, 10, 12, 0)),  # at once
        (1, "fish_care_tips", utc(2025, 6, 10, 15, 0)),  # 12:00 + 3 h
        (2, "fish_congratulation", utc(2025, 6, 10, 12, 0)),
        # 15:00 UTC is 01:00 on 11 June in Vladivostok but still before the 10 June cutoff (21:00 UTC).
        (2, "fish_care_tips", utc(2025, 6, 10, 15, 0)),
    ]
    congratulation = outbox.filter((pl.col("customer_id") == 1) & (pl.col("step_id") == "fish_congratulation"))
    body = congratulation["body"][0]
    assert congratulation["subject"][0] == "Anna, congratulations on your new fish!"
    assert "<strong>100.00</strong> bonuses" in body
    assert "valid until 24.06.2025" in body  # 10 Jun 12:00 UTC + 14 days = 24 Jun 15:00 MSK
    tips = outbox.filter((pl.col("customer_id") == 1) & (pl.col("step_id") == "fish_care_tips"))["body"][0]
    assert "https://shop.example.com/catalog/aquarium?utm_source=email&amp;utm_campaign=aquarium_fish_chain" in tips

    pending = wh.read("journey_pending", scope).sort("customer_id")
    # The fact waits for the next 10:00 local after the tips (18:00 MSK; 01:00 in Vladivostok).
    assert pending.select("customer_id", "occasion", "due_at").rows() == [
        (1, "purchase:F1", utc(2025, 6, 11, 7, 0)),  # 11 Jun 10:00 MSK
        (2, "purchase:F2", utc(2025, 6, 11, 0, 0)),  # 11 Jun 10:00 Vladivostok
    ]

    accruals = wh.read("bonus_accruals", scope).sort("customer_id")
    assert accruals.select("customer_id", "amount", "accrued_at", "expires_at", "legal_entity").rows() == [
        (1, Decimal("100.00"), utc(2025, 6, 10, 12, 0), utc(2025, 6, 24, 12, 0), "X"),  # + 14 days
        (2, Decimal("100.00"), utc(2025, 6, 10, 12, 0), utc(2025, 6, 24, 12, 0), "X"),
    ]
    assert accruals["accrual_id"][0] == "aquarium_fish_chain:fish_welcome_bonus:1:purchase:F1"

    events = wh.read("manual_segment_events").sort("customer_id")
    assert events.select("segment_id", "customer_id", "action", "ts").rows() == [
        ("fish_owners", 1, "add", utc(2025, 6, 10, 12, 0)),
        ("fish_owners", 2, "add", utc(2025, 6, 10, 12, 0)),
    ]


def test_the_fact_arrives_next_day_at_10_local(fish_days: Warehouse) -> None:
    wh = fish_days
    outbox = wh.read("message_outbox", {"campaign_id": FISH, "partition_date": JUNE_11}).sort("customer_id")
    assert outbox.select("customer_id", "step_id", "send_at").rows() == [
        (1, "fish_fun_fact", utc(2025, 6, 11, 7, 0)),  # 10:00 MSK
        (2, "fish_fun_fact", utc(2025, 6, 11, 0, 0)),  # 10:00 Vladivostok
    ]
    assert "valid until 24.06.2025" in outbox["body"][0]  # the occasion's accrual, made the day before
    assert wh.read("journey_pending", {"campaign_id": FISH, "partition_date": JUNE_11}).is_empty()
    assert wh.read("bonus_accruals", {"campaign_id": FISH, "partition_date": JUNE_11}).is_empty()
    # Three messages per customer in all (nothing more on 12 and 13 June), each once.
    everything = wh.read("message_outbox", {"campaign_id": FISH})
    assert everything.group_by("customer_id").len().sort("customer_id").rows() == [(1, 3), (2, 3)]


def test_second_fish_purchase_does_not_restart_the_chain(fish_days: Warehouse) -> None:
    wh = fish_days
    triggered = wh.read("triggered_customers", {"campaign_id": FISH})
    # F3 (1's second fish purchase, 12 June) fires the trigger but 1 already entered: once per customer.
    assert sorted(triggered.select("customer_id", "occasion").rows()) == [(1, "purchase:F1"), (2, "purchase:F2")]
    assert wh.read("message_outbox", {"campaign_id": FISH, "partition_date": date(2025, 6, 12)}).is_empty()
    assert wh.read("bonus_accruals", {"campaign_id": FISH}).height == 2
    assert 3 not in set(wh.read("message_outbox")["customer_id"])  # pet food only


def test_fish_owners_segment_is_readable_by_another_campaign(fish_days: Warehouse) -> None:
    """The manual segment feeds audiences: a campaign on 12 June picks its members (1 and 2, not 3).

    Members added on 10 June count from 11 June (membership on D is as of the start of D).
    """
    triggered = fish_days.read("triggered_customers", {"campaign_id": "fish_owner_check"})
    assert sorted(triggered["customer_id"]) == [1, 2]


def test_empty_manual_segment_in_an_audience_is_empty_not_an_error(run_fish: Runner, catalog_dir: Path) -> None:
    """On 10 June, before anyone has entered `fish_owners` (members count from the next day)."""
    (catalog_dir / "campaigns" / "fish_owner_check.yaml").write_text(
        "id: fish_owner_check\n"
        "name: Fish owners\n"
        "trigger: {type: fixed_date, on_date: 2025-06-10, at: '12:00'}\n"
        "audience: {segment: fish_owners}\n"
        "steps:\n"
        "  - {type: accrue_bonuses, id: b, amount: '1.00', legal_entity: X}\n",
        encoding="utf8",
    )
    wh = run_fish(JUNE_10)
    assert wh.read("triggered_customers", {"campaign_id": FISH}).height == 2  # the segment fills today
    assert wh.read("triggered_customers", {"campaign_id": "fish_owner_check"}).is_empty()


def test_fish_owners_segment_in_an_audience_filter(fish_days: Warehouse) -> None:
    """A manual segment also works inside an audience filter (`field: segment`), not only as `segment:`."""
    triggered = fish_days.read("triggered_customers", {"campaign_id": "fish_owner_filter"})
    assert sorted(triggered["customer_id"]) == [1, 2]


def test_entering_the_manual_segment_triggers_once(fish_days: Warehouse) -> None:
    # 1 and 2 were added on 10 June: each enters once (on 10 or 11 June), never again (9–13 and 21 June).
    triggered = fish_days.read("triggered_customers", {"campaign_id": "fish_owner_welcome"})
    assert sorted(triggered["customer_id"]) == [1, 2]
    assert set(triggered["partition_date"]) <= {JUNE_10, JUNE_11}


def test_rerunning_days_leaves_the_same_rows(run_fish: Runner, warehouse_url: str) -> None:
    run_fish(JUNE_10, JUNE_11)
    first = snapshot(warehouse_url)
    # 1 congratulation + 1 tips each on 10 June, 1 fact each on 11 June.
    assert first["message_outbox"].height == 6
    run_fish(JUNE_11, JUNE_10)  # each date again, the later one first
    again = snapshot(warehouse_url)
    for table in OUTPUT_TABLES:
        assert_frame_equal(first[table], again[table], check_row_order=True)


@pytest.fixture(scope="module")
def fish_week_by_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, pl.DataFrame]]:
    """The reference for the backfill: a week run day by day on SQLite, shared by both warehouses."""
    root = tmp_path_factory.mktemp("fish_week_by_day")
    data, catalog = copy_inputs(root, "fish_chain")
    keep_campaigns(catalog, FISH)
    url = f"sqlite:///{root / 'daily.db'}"
    daily = make_settings(data, catalog, url, root / "daily-storage")
    for day in BACKFILL_WEEK:
        run_days(daily, [day])
    return data, catalog, snapshot(url)


@pytest.mark.long
def test_backfill_equals_day_by_day_runs(
    fish_week_by_day: tuple[Path, Path, dict[str, pl.DataFrame]], warehouse_url: str, tmp_path: Path
) -> None:
    from loyalty_assets.cli import run_dates

    data, catalog, expected = fish_week_by_day
    backfill = make_settings(data, catalog, warehouse_url, tmp_path / "backfill-storage")
    assert run_dates(backfill, BACKFILL_WEEK)

    actual = snapshot(warehouse_url)
    assert expected["message_outbox"].height == 6  # 2 customers × 3 messages
    for table in OUTPUT_TABLES:
        assert_frame_equal(expected[table], actual[table])


def test_two_fish_purchases_on_one_day_start_one_chain(run_fish: Runner, fish_data: Path) -> None:
    """Once per customer holds within a day too: F1 (12:00 UTC) and F4 (16:00 UTC) are both on 10 June."""
    with (fish_data / "checks.csv").open("a", encoding="utf8") as checks:
        checks.write("F4,1,2025-06-10 16:00:00,S01,300.00,0.00,0.00\n")
    with (fish_data / "check_items.csv").open("a", encoding="utf8") as items:
        items.write("F4,1,SCALAR,aquarium_fish,1.000,300.00\n")
    wh = run_fish(JUNE_10)
    triggered = wh.read("triggered_customers", {"campaign_id": FISH, "customer_id": 1})
    assert triggered["occasion"].to_list() == ["purchase:F1"]  # the first check of the day starts the chain
    assert wh.read("bonus_accruals", {"campaign_id": FISH, "customer_id": 1}).height == 1


# --- scenario 7: bonus expiry -----------------------------------------------------------------


@pytest.fixture(scope="module")
def expiry_week(module_warehouses: Callable[[], str], tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """30 June – 5 July on the expiry fixture with both expiry campaigns, once per warehouse kind."""
    root = tmp_path_factory.mktemp("expiry_week")
    data, catalog = copy_inputs(root, "bonus_expiry")
    url = module_warehouses()
    run_days(
        make_settings(data, keep_campaigns(catalog, WARNING, NOTICE), url, root / "s"),
        days(date(2025, 6, 30), date(2025, 7, 5)),
    )
    return Warehouse(url)


def test_warning_three_days_before_with_the_amount_summed(expiry_week: Warehouse) -> None:
    wh = expiry_week
    triggered = wh.read("triggered_customers", {"campaign_id": WARNING}).sort("partition_date", "customer_id")
    assert triggered.select("partition_date", "customer_id", "occasion", "event_amount").rows() == [
        # Expiring on local 4 July = 1 July + 3: Anna 100.00 + 50.50 (23:00 MSK is still 4 July) = 150.50;
        # Boris 200.00 (3 Jul 20:00 UTC is 4 Jul 06:00 in Vladivostok); Vera 80.00.
        (date(2025, 7, 1), 1, "bonus_expiring:2025-07-04", Decimal("150.50")),
        (date(2025, 7, 1), 2, "bonus_expiring:2025-07-04", Decimal("200.00")),
        (date(2025, 7, 1), 3, "bonus_expiring:2025-07-04", Decimal("80.00")),
        # Anna's 30.00 expiring 4 Jul 21:30 UTC = 5 Jul 00:30 MSK: its own warning on 2 July.
        (date(2025, 7, 2), 1, "bonus_expiring:2025-07-05", Decimal("30.00")),
    ]
    outbox = wh.read("message_outbox", {"campaign_id": WARNING}).sort("partition_date", "customer_id")
    # Vera has no phone: warned in triggered_customers, SMS skipped.
    assert outbox.select("partition_date", "customer_id", "channel", "recipient", "send_at").rows() == [
        (date(2025, 7, 1), 1, "sms", "+79990000001", utc(2025, 7, 1, 9, 0)),  # 12:00 MSK
        (date(2025, 7, 1), 2, "sms", "+79990000002", utc(2025, 7, 1, 2, 0)),  # 12:00 Vladivostok
        (date(2025, 7, 2), 1, "sms", "+79990000001", utc(2025, 7, 2, 9, 0)),
    ]
    assert outbox["body"][0] == (
        "Anna, 150.50 bonuses on your card expire on 04.07.2025. Spend them before they are gone!"
    )
    skipped = wh.read("activity_events", {"campaign_id": WARNING, "kind": "message_skipped"})
    assert skipped["customer_id"].to_list() == [3]


def test_notice_at_or_after_the_moment_of_expiry(expiry_week: Warehouse) -> None:
    """Each run day (Moscow) notices the lots that expired during it, at the moment of expiry; the
    shipped campaign's quiet hours (SMS, 21:00-09:00 local) move night-time notices to 09:00."""
    wh = expiry_week
    triggered = wh.read("triggered_customers", {"campaign_id": NOTICE}).sort("partition_date", "customer_id")
    assert triggered.select("partition_date", "customer_id", "event_date", "event_amount", "triggered_at").rows() == [
        # Boris: T4 expired 3 Jul 20:00 UTC = 23:00 MSK on 3 July (4 Jul 06:00 for him)
        (date(2025, 7, 3), 2, date(2025, 7, 4), Decimal("200.00"), utc(2025, 7, 3, 20, 0)),
        # Anna: T1 (12:00 MSK) and T2 (23:00 MSK): one notice at the later moment, never before it
        (date(2025, 7, 4), 1, date(2025, 7, 4), Decimal("150.50"), utc(2025, 7, 4, 20, 0)),
        (date(2025, 7, 4), 3, date(2025, 7, 4), Decimal("80.00"), utc(2025, 7, 4, 10, 0)),  # Vera: 13:00 MSK
        # Anna's T3: 4 Jul 21:30 UTC = 5 Jul 00:30 MSK, a run day of its own
        (date(2025, 7, 5), 1, date(2025, 7, 5), Decimal("30.00"), utc(2025, 7, 4, 21, 30)),
    ]
    outbox = wh.read("message_outbox", {"campaign_id": NOTICE}).sort("partition_date", "customer_id")
    assert outbox.select("partition_date", "customer_id", "send_at").rows() == [
        (date(2025, 7, 3), 2, utc(2025, 7, 3, 23, 0)),  # 06:00 in Vladivostok is quiet: 09:00 there
        (date(2025, 7, 4), 1, utc(2025, 7, 5, 6, 0)),  # 23:00 MSK is quiet: 09:00 MSK the next morning
        (date(2025, 7, 5), 1, utc(2025, 7, 5, 6, 0)),  # 00:30 MSK: 09:00 MSK
    ]
    assert (
        outbox["body"][0] == "Boris, 200.00 bonuses on your card expired on 04.07.2025. New purchases earn new bonuses."
    )


def test_warning_covers_the_chains_own_accrual(fish_days: Warehouse) -> None:
    """The fish chain's 100 bonuses expire 24 Jun 12:00 UTC (15:00 MSK, 22:00 Vladivostok): both
    customers are warned on 21 June (= 24 − 3) from this project's own accruals, not the ledger."""
    warned = fish_days.read("triggered_customers", {"campaign_id": WARNING}).sort("customer_id")
    assert warned.select("partition_date", "customer_id", "event_amount").rows() == [
        (date(2025, 6, 21), 1, Decimal("100.00")),
        (date(2025, 6, 21), 2, Decimal("100.00")),
    ]
