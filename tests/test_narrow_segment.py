"""Scenario 5 of the contract (seed 004) end to end: a narrow segment exported to the loyalty module.

CSV fixture `fixtures/narrow_segment` → Dagster daily job in process → `segment_members` and
`target_audiences` rows, on SQLite and PostgreSQL; then the loyalty module's promotion "20% off
checks from 1500" evaluated on the fixture's checks for the exported audience, and the marketer's
`loyalty segment preview`. Every expectation is worked out by hand in the fixture's README (who is
who and why); program zone Europe/Moscow = UTC+3, so a run for D sees rows before D 21:00 UTC.

The catalog holds the shipped segments but no campaigns: campaign accruals count toward
`bonuses_accrued`, so a campaign added elsewhere must not be able to move this segment's members.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from loyalty_assets.cli import main
from loyalty_assets.defs.segments import segment_key
from loyalty_assets.settings import Settings
from loyalty_assets.sources.readers import read_file_table
from loyalty_assets.transforms.promotions import AudiencePromotion
from loyalty_assets.warehouse.membership import members_on as membership_on
from loyalty_assets.warehouse.warehouse import Warehouse
from tests.conftest import FIXTURES, daily_job, keep_campaigns, make_settings, run_days

SEGMENT = "women_q1_email_bonus"
LABEL = "promo_q1_women"
BACKFILL = date(2025, 5, 1)
RUN_DATE = date(2025, 6, 26)
NEXT_DAY = date(2025, 6, 27)

# Hand-computed members (fixture README): 111 (Maria) only reaches 1200 accrued on 15 May; 112 (Nina)
# gets her second accrual at 26 Jun 21:30Z = 27 Jun 00:30 Moscow; 113 (Olga) buys again on 27 June.
MEMBERS: dict[date, list[int]] = {
    BACKFILL: [101, 104, 106, 109, 113],
    RUN_DATE: [101, 104, 106, 109, 111, 113],
    NEXT_DAY: [101, 104, 106, 109, 111, 112],
}

OUTPUT_TABLES = (
    "triggered_customers",
    "bonus_accruals",
    "message_outbox",
    "segment_members",
    "target_audiences",
    "activity_events",
)

Metadata = dict[str, Any]


def run_collecting_metadata(settings: Settings, days: Sequence[date]) -> list[Metadata]:
    """`conftest.run_days`, but returning the segment asset's materialization metadata per date.

    Metadata values are unwrapped (`MetadataValue.value`): ints, bools and the JSON payloads.
    """
    import dagster as dg

    job = daily_job(settings)
    collected: list[Metadata] = []
    with dg.DagsterInstance.ephemeral() as instance:
        for day in days:
            result = job.execute_in_process(partition_key=day.isoformat(), instance=instance, raise_on_error=True)
            assert result.success, day
            events = [e for e in result.get_asset_materialization_events() if e.asset_key == segment_key(SEGMENT)]
            assert len(events) == 1, f"{day}: expected one materialization of {SEGMENT}"
            materialization = events[0].step_materialization_data.materialization
            collected.append({k: v.value for k, v in materialization.metadata.items()})
    return collected


@pytest.fixture
def narrow_data(tmp_path: Path) -> Path:
    """A private copy of the seed-004 fixture."""
    target = tmp_path / "data"
    shutil.copytree(FIXTURES / "narrow_segment", target)
    return target


@pytest.fixture
def narrow_catalog(catalog_dir: Path) -> Path:
    """The shipped catalog without campaigns (see the module docstring)."""
    return keep_campaigns(catalog_dir)


Runner = Callable[..., tuple[Warehouse, list[Metadata]]]


@pytest.fixture
def run(narrow_data: Path, narrow_catalog: Path, warehouse_url: str, tmp_path: Path) -> Runner:
    settings = make_settings(narrow_data, narrow_catalog, warehouse_url, tmp_path / "storage")

    def _run(*days: date) -> tuple[Warehouse, list[Metadata]]:
        return Warehouse(warehouse_url), run_collecting_metadata(settings, days)

    return _run


def members_on(wh: Warehouse, day: date) -> list[int]:
    return sorted(membership_on(wh, SEGMENT, day)["customer_id"])


def exported(wh: Warehouse) -> pl.DataFrame:
    """The whole `target_audiences` table, one row per (audience, customer), sorted."""
    return wh.read("target_audiences").sort("audience", "customer_id")


def raw_emails(data_dir: Path) -> list[str]:
    return [e for e in pl.read_csv(data_dir / "customers.csv", infer_schema=False)["email"] if e]


def assert_no_raw_email(text: str, data_dir: Path) -> None:
    """Neither an address nor its local part (`alla.kuznetsova`) appears; masks keep one letter only."""
    for email in raw_emails(data_dir):
        local = email.split("@")[0]
        assert email not in text
        assert local not in text, f"local part {local!r} of a customer's e-mail is visible"


def test_members_and_export_on_2025_06_26(run: Runner, narrow_data: Path) -> None:
    started = datetime.now(UTC)
    wh, (meta,) = run(RUN_DATE)
    finished = datetime.now(UTC)

    # Women, last local check day in [1 Jan, 1 Apr], subscribed, accrued > 1000 (see README):
    # out are 102 (man), 103 (2 Apr), 105 (2 Apr 00:30 Moscow), 107 (31 Dec 23:30 Moscow),
    # 108 (exactly 1000.00), 110 (unsubscribed), 112 (accrual after the cutoff), 114 (no check).
    assert members_on(wh, RUN_DATE) == MEMBERS[RUN_DATE]

    audience = exported(wh)
    assert set(audience["audience"]) == {LABEL}  # members_over_a_year is not exported
    assert audience["customer_id"].to_list() == MEMBERS[RUN_DATE]
    assert set(audience["segment_id"]) == {SEGMENT}
    assert set(audience["partition_date"]) == {RUN_DATE}
    assert audience["exported_at"].n_unique() == 1  # one export, one instant
    assert started <= audience["exported_at"][0] <= finished

    # No snapshot of 25 June exists, so every member counts as entered and nobody as left.
    assert meta["members"] == 6
    assert meta["dagster/row_count"] == 6
    assert meta["entered"] == 6
    assert meta["left"] == 0
    assert meta["previous_day_known"] is False
    assert meta["target_audiences"] == {LABEL: 6}

    sample = [record.data for record in meta["sample_masked"].records]  # a table in the UI
    # The first five members by id, e-mails and phones masked (first letter + domain; +7*******NN).
    assert [row["customer_id"] for row in sample] == ["101", "104", "106", "109", "111"]
    assert [row["email"] for row in sample] == [
        "a***@example.com",
        "d***@example.com",
        "z***@example.com",
        "k***@example.com",
        "m***@example.com",
    ]
    assert sample[0]["phone"] == "+7*******01"
    assert sample[1]["phone"] is None
    assert_no_raw_email(json.dumps({**meta, "sample_masked": sample}, default=str), narrow_data)


def test_rerunning_the_date_leaves_the_same_rows(run: Runner) -> None:
    wh, _ = run(RUN_DATE)
    first_members = members_on(wh, RUN_DATE)
    first_export = exported(wh)

    wh, metas = run(RUN_DATE, RUN_DATE)
    assert members_on(wh, RUN_DATE) == first_members == MEMBERS[RUN_DATE]
    again = exported(wh)
    assert again.height == 6  # replaced, not appended
    keys = ["audience", "customer_id", "segment_id", "partition_date"]
    assert again.select(keys).equals(first_export.select(keys))
    # Only the export instant moves forward: a re-run is a new export of the same audience.
    assert again["exported_at"][0] >= first_export["exported_at"][0]
    assert [m["target_audiences"] for m in metas] == [{LABEL: 6}, {LABEL: 6}]


def test_backfill_of_an_older_date_keeps_the_newer_export(run: Runner) -> None:
    wh, _ = run(RUN_DATE)
    before = exported(wh)

    wh, (meta,) = run(BACKFILL)
    # The 1 May snapshot is written (Maria, 111, had only 500.00 accrued then) ...
    assert members_on(wh, BACKFILL) == MEMBERS[BACKFILL]
    assert meta["members"] == 5
    # ... but the loyalty module keeps the 26 June audience, untouched (same rows, same instant).
    assert meta["target_audiences"] == {LABEL: "skipped: holds the newer export of 2025-06-26"}
    assert exported(wh).equals(before)
    assert set(before["partition_date"]) == {RUN_DATE}
    assert members_on(wh, RUN_DATE) == MEMBERS[RUN_DATE]  # the newer snapshot is not touched either


def test_member_dropping_out_replaces_the_audience(run: Runner) -> None:
    wh, (_, meta) = run(RUN_DATE, NEXT_DAY)

    # 27 June: Olga (113) bought again, so her last check left Q1; Nina (112) now has 1200 accrued.
    assert members_on(wh, NEXT_DAY) == MEMBERS[NEXT_DAY]
    audience = exported(wh)
    # Replace semantics: exactly the 27 June members; an append would also hold 113 (7 rows).
    assert audience["customer_id"].to_list() == MEMBERS[NEXT_DAY]
    assert set(audience["partition_date"]) == {NEXT_DAY}
    assert members_on(wh, RUN_DATE) == MEMBERS[RUN_DATE]  # the daily history stays

    assert meta["members"] == 6
    assert meta["entered"] == 1  # 112
    assert meta["left"] == 1  # 113
    assert meta["previous_day_known"] is True
    assert meta["target_audiences"] == {LABEL: 6}


def test_promotion_evaluated_on_the_exported_audience(run: Runner, narrow_data: Path) -> None:
    wh, _ = run(RUN_DATE)
    checks = read_file_table(narrow_data, "checks").frame
    promotion = AudiencePromotion(audience=LABEL, percent=Decimal(20), min_total=Decimal(1500))

    discounts = promotion.evaluate(checks, exported(wh)).sort("check_id")

    # 20% = total / 5; from 1500.00 inclusive; members 101, 104, 106, 109, 111, 113 only:
    #   N02 (101) 1500.00 → 300.00        N01 (101) 1499.99 → below the minimum
    #   N06 (104) 2345.67 → 469.134 → 469.13
    #   N08 (106) 1500.01 → 300.002 → 300.00
    #   N11 (109) 3000.00 → 600.00        N13 (111) 999.00 → below the minimum
    #   N15 (113) 1600.00 → 320.00        N16 (113) 2000.00 → 400.00 (27 June, 26 June export)
    #   N03 (102, a man) 2000.00 and N04 (103) 1800.00 → not in the audience
    assert dict(zip(discounts["check_id"], discounts["discount"], strict=True)) == {
        "N02": Decimal("300.00"),
        "N06": Decimal("469.13"),
        "N08": Decimal("300.00"),
        "N11": Decimal("600.00"),
        "N15": Decimal("320.00"),
        "N16": Decimal("400.00"),
    }
    assert dict(zip(discounts["check_id"], discounts["customer_id"], strict=True))["N16"] == 113
    # 300.00 + 469.13 + 300.00 + 600.00 + 320.00 + 400.00, summed as decimals.
    assert discounts["discount"].sum() == Decimal("2389.13")


def test_preview_counts_like_the_asset_masks_and_writes_nothing(
    narrow_data: Path,
    narrow_catalog: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite:///{tmp_path / 'preview.db'}"
    monkeypatch.setenv("LOYALTY_DATA_DIR", str(narrow_data))
    monkeypatch.setenv("LOYALTY_CAMPAIGNS_DIR", str(narrow_catalog))
    monkeypatch.setenv("LOYALTY_DATABASE_URL", url)
    monkeypatch.setenv("LOYALTY_STORAGE_DIR", str(tmp_path / "storage"))
    monkeypatch.delenv("LOYALTY_SOURCE_DATABASE_URL", raising=False)

    with pl.Config():  # the CLI sets table-printing options; keep them out of other tests
        code = main(["segment", "preview", SEGMENT, "--date", RUN_DATE.isoformat()])
    out = capsys.readouterr().out

    assert code == 0
    found = re.search(rf"segment {SEGMENT} on 2025-06-26: (\d+) customers", out)
    assert found, out
    assert int(found.group(1)) == 6
    for masked in ("a***@example.com", "d***@example.com", "z***@example.com", "o***@example.com"):
        assert masked in out
    assert_no_raw_email(out, narrow_data)

    wh = Warehouse(url)
    assert {table: wh.count(table) for table in OUTPUT_TABLES} == dict.fromkeys(OUTPUT_TABLES, 0)

    # The asset over the same sources and warehouse finds the same number of members.
    run_days(make_settings(narrow_data, narrow_catalog, url, tmp_path / "storage"), [RUN_DATE])
    assert membership_on(wh, SEGMENT, RUN_DATE).height == int(found.group(1))
