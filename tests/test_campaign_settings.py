"""Scenario 8 of the contract (seed 000) end to end: the campaign-wide settings of `birthday_ab_channels`.

Control group, A/B split of channels, sending-speed limit, start and end dates, and the re-entry
interval, on `fixtures/campaign_settings` (its README lists who is who), on SQLite and PostgreSQL.
The catalog copy keeps only this campaign; tests that need another setting edit their copy.
Program zone Europe/Moscow = UTC+3 all year; Asia/Vladivostok = UTC+10.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from loyalty_assets.warehouse.activity import customer_activity
from loyalty_assets.warehouse.warehouse import Warehouse
from tests.conftest import FIXTURES, keep_campaigns, make_settings, run_days

CAMPAIGN = "birthday_ab_channels"
ANNIVERSARY = date(2025, 7, 10)
COHORT = list(range(101, 141))  # registered 2024-07-10
VLADIVOSTOK = [110, 120, 130, 140]
#: Stable hash of (campaign, customer) with 10%: pinned so that a change of assignment is noticed.
CONTROL = [129, 133, 138]

Runner = Callable[..., Warehouse]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def campaign_file(catalog_dir: Path) -> Path:
    """The catalog copy with only `birthday_ab_channels`; returns its file for edits."""
    keep_campaigns(catalog_dir, CAMPAIGN)
    return catalog_dir / "campaigns" / f"{CAMPAIGN}.yaml"


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply `change` to the campaign's YAML mapping in place."""
    definition = yaml.safe_load(path.read_text(encoding="utf8"))
    change(definition)
    path.write_text(yaml.safe_dump(definition, allow_unicode=True, sort_keys=False), encoding="utf8")


@pytest.fixture
def run(campaign_file: Path, catalog_dir: Path, warehouse_url: str, tmp_path: Path) -> Runner:
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / "campaign_settings", data)
    settings = make_settings(data, catalog_dir, warehouse_url, tmp_path / "storage")

    def _run(*days: date) -> Warehouse:
        run_days(settings, days)
        return Warehouse(warehouse_url)

    return _run


def test_control_group_is_recorded_but_gets_nothing(run: Runner) -> None:
    wh = run(ANNIVERSARY)
    scope = {"campaign_id": CAMPAIGN, "partition_date": ANNIVERSARY}
    triggered = wh.read("triggered_customers", scope).sort("customer_id")
    assert triggered["customer_id"].to_list() == COHORT
    assert set(triggered["occasion"]) == {"membership_birthday:2025-07-10"}
    control = triggered.filter(pl.col("is_control"))
    assert control["customer_id"].to_list() == CONTROL  # 3 of 40 ≈ 10% (a hash, not an exact quota)
    assert control["variant"].null_count() == len(CONTROL)  # control has no variant

    receiving = sorted(set(COHORT) - set(CONTROL))  # 40 − 3 = 37
    accruals = wh.read("bonus_accruals", scope).sort("customer_id")
    assert accruals["customer_id"].to_list() == receiving
    assert set(accruals["amount"]) == {Decimal("200.00")}
    first = accruals.row(0, named=True)
    assert first["accrued_at"] == utc(2025, 7, 10, 7, 0)  # 10:00 MSK
    assert first["expires_at"] == utc(2025, 8, 9, 7, 0)  # + 30 days
    outbox = wh.read("message_outbox", scope)
    assert sorted(outbox["customer_id"]) == receiving  # one message each, none for control
    assert not set(CONTROL) & set(outbox["customer_id"])


def test_ab_variants_split_channels(run: Runner) -> None:
    wh = run(ANNIVERSARY)
    scope = {"campaign_id": CAMPAIGN, "partition_date": ANNIVERSARY}
    triggered = wh.read("triggered_customers", scope).filter(pl.col("is_control").not_())
    variant_of = dict(zip(triggered["customer_id"], triggered["variant"], strict=True))
    # 37 receiving = 17 email + 20 sms (stable hash, weights 1:1).
    assert sorted(set(variant_of.values())) == ["email", "sms"]
    assert sum(v == "email" for v in variant_of.values()) == 17
    assert sum(v == "sms" for v in variant_of.values()) == 20

    outbox = wh.read("message_outbox", scope)
    for row in outbox.iter_rows(named=True):
        assert row["channel"] == variant_of[row["customer_id"]]  # the variant decides the channel
        assert row["variant"] == variant_of[row["customer_id"]]
    email = outbox.filter(pl.col("channel") == "email").sort("customer_id").row(0, named=True)
    assert email["step_id"] == "membership_email"
    assert email["recipient"] == f"c{email['customer_id']}@example.com"
    assert "<strong>200.00</strong> bonuses" in email["body"]
    assert "valid until 09.08.2025" in email["body"]
    sms = outbox.filter(pl.col("channel") == "sms").sort("customer_id").row(0, named=True)
    assert sms["customer_id"] == 103
    assert sms["recipient"] == "+79990000103"
    assert sms["subject"] is None
    assert sms["body"] == "Gleb103, happy membership birthday! 200.00 bonuses are on your card until 09.08.2025."


def test_speed_limit_spreads_batches(run: Runner, campaign_file: Path) -> None:
    edit(campaign_file, lambda d: d["settings"].update(max_messages_per_hour=10))
    wh = run(ANNIVERSARY)
    outbox = wh.read("message_outbox", {"campaign_id": CAMPAIGN, "partition_date": ANNIVERSARY})
    # Planned order (send time, then customer): the 4 Vladivostok customers at 00:00 UTC, then the
    # 33 Moscow ones at 07:00 UTC. Row n (from 0) goes in batch n // 10 + 1, sent (batch − 1) hours late:
    # rows 0–9 batch 1, 10–19 batch 2 (+1 h), 20–29 batch 3 (+2 h), 30–36 batch 4 (+3 h).
    receiving = [c for c in COHORT if c not in CONTROL]
    ordered = VLADIVOSTOK + [c for c in receiving if c not in VLADIVOSTOK]
    planned = {c: utc(2025, 7, 10, 0, 0) if c in VLADIVOSTOK else utc(2025, 7, 10, 7, 0) for c in receiving}
    got = {row["customer_id"]: (row["batch_no"], row["send_at"]) for row in outbox.iter_rows(named=True)}
    for n, customer in enumerate(ordered):
        batch = n // 10 + 1
        assert got[customer] == (batch, planned[customer] + timedelta(hours=batch - 1)), customer
    assert outbox.group_by("batch_no").len().sort("batch_no").rows() == [(1, 10), (2, 10), (3, 10), (4, 7)]
    # e.g. 105 is row 4 + 4 = 8 → batch 1 at 07:00; 112 is row 14 → batch 2 at 08:00.
    assert got[105] == (1, utc(2025, 7, 10, 7, 0))
    assert got[112] == (2, utc(2025, 7, 10, 8, 0))


@pytest.mark.long
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_start_and_end_dates_are_inclusive_and_nothing_fires_outside(run: Runner, campaign_file: Path) -> None:
    """On SQLite only: the dates are the transforms' rule, written like every other row of this
    campaign (the PostgreSQL runs of this module cover those writes), and the six months between the
    dates make this the module's longest run (the store catches up day by day)."""
    # The fixture's live range (its README); the shipped file starts earlier, on the sample data.
    edit(campaign_file, lambda definition: definition.update(start_date="2025-07-01"))
    wh = run(date(2025, 6, 30), date(2025, 12, 31), date(2026, 1, 1))
    triggered = wh.read("triggered_customers", {"campaign_id": CAMPAIGN})
    # 203's anniversary (30 Jun) is before the start; 201's (31 Dec) is the last live day;
    # 202's (1 Jan 2026) is after the end date.
    assert triggered.select("partition_date", "customer_id").rows() == [(date(2025, 12, 31), 201)]
    assert wh.read("bonus_accruals", {"campaign_id": CAMPAIGN, "partition_date": date(2026, 1, 1)}).is_empty()
    assert wh.read("message_outbox", {"campaign_id": CAMPAIGN, "partition_date": date(2026, 1, 1)}).is_empty()


@pytest.mark.parametrize(("reentry_days", "again"), [(31, False), (30, True)])
def test_reentry_interval_blocks_across_dates(run: Runner, campaign_file: Path, reentry_days: int, again: bool) -> None:
    """A monthly anniversary fires on 10 July and 10 August (31 days apart).

    With `reentry_days: 31` the window on 10 Aug is [10 Aug − 31 = 10 Jul, 10 Aug): the July entry is
    inside it, nobody re-enters. With 30 it is [11 Jul, 10 Aug): the July entry is outside, all re-enter.
    """

    def monthly(d: dict[str, Any]) -> None:
        d["trigger"].pop("every_years")
        d["trigger"]["every_months"] = 1
        d["settings"]["reentry_days"] = reentry_days

    edit(campaign_file, monthly)
    wh = run(ANNIVERSARY, date(2025, 8, 10))
    july = wh.read("triggered_customers", {"campaign_id": CAMPAIGN, "partition_date": ANNIVERSARY})
    august = wh.read("triggered_customers", {"campaign_id": CAMPAIGN, "partition_date": date(2025, 8, 10)})
    assert sorted(july["customer_id"]) == COHORT
    assert sorted(august["customer_id"]) == (COHORT if again else [])
    august_accruals = wh.read("bonus_accruals", {"campaign_id": CAMPAIGN, "partition_date": date(2025, 8, 10)})
    assert august_accruals.height == (37 if again else 0)
    log = customer_activity(wh, {"campaign_id": CAMPAIGN, "partition_date": date(2025, 8, 10)})
    assert (log.height > 0) == again


def test_shipped_campaign_does_not_overlap_the_birthday_campaign() -> None:
    """Why the shipped A/B campaign uses the registration anniversary: `birthday_week_early` keeps the
    birth date, so one customer is never given two birthday gifts by two campaigns on one occasion."""
    from loyalty_assets.config.catalog import load_catalog

    shipped = load_catalog()
    ab = shipped.campaigns[CAMPAIGN]
    assert ab.trigger.field == "registration_date"  # type: ignore[union-attr]
    assert shipped.campaigns["birthday_week_early"].trigger.field == "birth_date"  # type: ignore[union-attr]
    assert (ab.start_date, ab.end_date) == (date(2025, 6, 1), date(2025, 12, 31))  # shows on the sample date
    assert ab.settings.control_group_percent == Decimal(10)
    assert ab.settings.attribution_days == 14
