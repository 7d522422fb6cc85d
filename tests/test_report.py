"""`loyalty report` end to end: the results asset, a backfill against daily runs, and a real browser.

On `fixtures/campaign_settings` (40 customers whose membership anniversary is 2025-07-10) with
`birthday_ab_channels` at a 30 % control group. After a first run wrote the outbox, the test gives
the campaign's e-mails opens (even customer ids), its SMS deliveries, and checks on 11 July to every
third customer, then runs 9–12 July day by day into one warehouse and as a backfill into another.
"""

from __future__ import annotations

import csv
import html.parser
import os
import re
import shutil
import subprocess
import tempfile
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from loyalty_assets.cli import main, run_dates
from loyalty_assets.reporting.commands import build_results
from loyalty_assets.reporting.report import render_report
from loyalty_assets.settings import Settings
from loyalty_assets.warehouse.warehouse import Warehouse
from tests import results_fixture as fx
from tests.conftest import copy_inputs, keep_campaigns, make_settings, run_days

CAMPAIGN = "birthday_ab_channels"
DAYS = [date(2025, 7, 9) + timedelta(days=i) for i in range(4)]
START = date(2025, 7, 1)  # the campaign's start date: where its results count from
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=10000",
]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless Chromium, installed with apt-get when missing."""
    found = shutil.which("chromium")
    if found is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=True, env=env, capture_output=True)
        found = shutil.which("chromium")
    assert found, "chromium could not be installed"
    return found


def load_in_browser(chromium: str, page: Path) -> tuple[str, list[str]]:
    """The page's DOM after its scripts ran, and every console message Chromium logged."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


class _Cells(html.parser.HTMLParser):
    """The figures table's value cells: (section, variant, group, metric) → text."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str | None, ...], str | None] = {}
        self._key: tuple[str | None, ...] | None = None
        self.plots = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "js-plotly-plot" in (a.get("class") or ""):
            self.plots += 1
        if tag == "td" and "data-metric" in a:
            self._key = tuple(a.get(k) or None for k in ("data-section", "data-variant", "data-group", "data-metric"))
            self.cells[self._key] = None

    def handle_data(self, data: str) -> None:
        if self._key is not None and data.strip():
            self.cells[self._key] = data.strip()

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._key = None


def parse(dom: str) -> _Cells:
    cells = _Cells()
    cells.feed(dom)
    return cells


def as_cells(table: pl.DataFrame) -> dict[tuple[str | None, ...], str | None]:
    return {
        (s, v, g, m): value
        for s, v, g, m, value in table.select("section", "variant", "group", "metric", "value").rows()
    }


def test_hand_made_report_in_a_real_browser(chromium: str, tmp_path: Path) -> None:
    campaign = fx.demo_campaign()
    rules = campaign.settings.attribution_from.as_dict()
    from loyalty_assets.transforms.results import campaign_results

    results = campaign_results(
        campaign,
        start=fx.DAY,
        end=fx.DAY,
        entrants=fx.entrants(),
        outbox=fx.outbox(),
        all_outbox=fx.outbox(),
        accruals=fx.accruals(),
        communications=fx.communications(),
        checks=fx.checks(),
        customers=fx.customers(),
        ledger=fx.ledger(),
        program_tz="Europe/Moscow",
        attribution_days={"demo": 10, "other": 7},
        attribution_rules={"demo": rules, "other": rules},
    )
    page = tmp_path / "demo.html"
    page.write_text(render_report(results, campaign_name="Demo"), encoding="utf-8")
    dom, console = load_in_browser(chromium, page)
    assert console == []
    cells = parse(dom)
    assert cells.plots == 4  # uplift (conversion, revenue per customer), funnel, cumulative revenue
    assert cells.cells == as_cells(results.table())
    assert cells.cells[("money", None, None, "incremental_revenue")] == "3900.00"
    assert "http://" not in page.read_text(encoding="utf-8").split("<script>")[0]  # nothing fetched


def test_a_campaign_without_entrants_still_gets_every_chart(chromium: str, tmp_path: Path) -> None:
    from loyalty_assets.transforms.results import campaign_results

    campaign = fx.demo_campaign()
    rules = campaign.settings.attribution_from.as_dict()
    results = campaign_results(
        campaign,
        start=fx.DAY,
        end=fx.DAY,
        entrants=fx.entrants().clear(),
        outbox=fx.outbox().clear(),
        all_outbox=fx.outbox().clear(),
        accruals=fx.accruals().clear(),
        communications=fx.communications(),
        checks=fx.checks(),
        customers=fx.customers(),
        ledger=fx.ledger(),
        program_tz="Europe/Moscow",
        attribution_days={"demo": 10},
        attribution_rules={"demo": rules},
    )
    page = tmp_path / "empty.html"
    page.write_text(render_report(results, campaign_name="Demo"), encoding="utf-8")
    dom, console = load_in_browser(chromium, page)
    assert console == []
    assert parse(dom).plots == 4
    drawn = re.sub(r"<script.*?</script>", "", dom, flags=re.S)  # what the charts drew, not their data
    assert drawn.count(">no test and control entrants yet<") == 2
    assert drawn.count(">no messages yet<") == drawn.count(">no entrants yet<") == 1


def test_a_page_with_a_script_error_is_caught(chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>notDefined()</script></body></html>", encoding="utf-8")
    _, console = load_in_browser(chromium, page)
    assert any("notDefined" in line for line in console)


def _prepare(root: Path) -> tuple[Path, Path]:
    """A copy of the fixture and of the catalog narrowed to the campaign, at a 30 % control group."""
    data, catalog = copy_inputs(root, "campaign_settings")
    keep_campaigns(catalog, CAMPAIGN)
    file = catalog / "campaigns" / f"{CAMPAIGN}.yaml"
    definition = yaml.safe_load(file.read_text(encoding="utf8"))
    definition["settings"]["control_group_percent"] = 30
    file.write_text(yaml.safe_dump(definition, allow_unicode=True, sort_keys=False), encoding="utf8")
    return data, catalog


def _add_events(data: Path, outbox: pl.DataFrame) -> None:
    with (data / "communications.csv").open("a", newline="", encoding="utf8") as f:
        writer = csv.writer(f)
        for message_id, customer, channel, sent in outbox.select(
            "message_id", "customer_id", "channel", "send_at"
        ).rows():
            stamp = sent.strftime("%Y-%m-%dT%H:%M:%S")
            writer.writerow([message_id, customer, CAMPAIGN, channel, stamp, "sent", stamp])
            writer.writerow([message_id, customer, CAMPAIGN, channel, stamp, "delivered", stamp])
            if channel == "email" and customer % 2 == 0:
                writer.writerow([message_id, customer, CAMPAIGN, channel, stamp, "opened", stamp])
    with (data / "checks.csv").open("a", newline="", encoding="utf8") as f:
        writer = csv.writer(f)
        for customer in range(102, 141, 3):
            writer.writerow([f"k{customer}", customer, "2025-07-11T09:00:00", "s1", f"{customer * 10}.00", "", ""])


@pytest.fixture(scope="module")
def by_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Settings]:
    """The reference: the first run of 10 July, the events added, then DAYS day by day on SQLite.
    Shared by both warehouses' backfills (it was run once per warehouse)."""
    root = tmp_path_factory.mktemp("report_by_day")
    data, catalog = _prepare(root)
    daily = make_settings(data, catalog, f"sqlite:///{root / 'daily.db'}", root / "daily-storage")
    run_days(daily, [date(2025, 7, 10)])
    _add_events(data, Warehouse(daily.database_url).read("message_outbox"))
    for day in DAYS:
        run_days(daily, [day])
    return data, catalog, daily


@pytest.mark.long
def test_backfill_equals_daily_runs_and_the_report_equals_the_results_table(
    chromium: str,
    by_day: tuple[Path, Path, Settings],
    warehouse_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data, catalog_dir, daily = by_day
    daily_url = daily.database_url
    backfill = make_settings(data, catalog_dir, warehouse_url, tmp_path / "backfill-storage")
    assert run_dates(backfill, DAYS)

    key = ["partition_date", "section", "variant", "group_name", "metric"]
    expected = Warehouse(daily_url).read("campaign_results", {"campaign_id": CAMPAIGN}).sort(key, nulls_last=True)
    by_backfill = (
        Warehouse(warehouse_url).read("campaign_results", {"campaign_id": CAMPAIGN}).sort(key, nulls_last=True)
    )
    assert expected.height > 0
    assert_frame_equal(expected, by_backfill)

    results = build_results(backfill, CAMPAIGN, START, DAYS[-1])
    test = results.groups.filter((pl.col("scope") == "campaign") & (pl.col("group") == "test")).row(0, named=True)
    control = results.groups.filter((pl.col("scope") == "campaign") & (pl.col("group") == "control")).row(0, named=True)
    assert test["customers"] + control["customers"] == 40
    assert control["customers"] >= 2 and test["buyers"] > 0
    assert results.attributed["attributed_checks"] > 0  # SMS deliveries and opened e-mails before 11 July
    daily_results = build_results(daily, CAMPAIGN, START, DAYS[-1])
    assert_frame_equal(results.table(), daily_results.table())

    page = tmp_path / "report.html"
    monkeypatch.setenv("LOYALTY_DATA_DIR", str(data))
    monkeypatch.setenv("LOYALTY_CAMPAIGNS_DIR", str(catalog_dir))
    monkeypatch.setenv("LOYALTY_DATABASE_URL", warehouse_url)
    assert (
        main(["report", CAMPAIGN, "--from", START.isoformat(), "--to", DAYS[-1].isoformat(), "--out", str(page)]) == 0
    )
    dom, console = load_in_browser(chromium, page)
    assert console == []
    cells = parse(dom)
    assert cells.plots == 5  # uplift ×2, funnel, cumulative revenue, A/B variants
    stored = by_backfill.filter(pl.col("partition_date") == DAYS[-1]).rename({"group_name": "group"})
    assert cells.cells == as_cells(stored)


def test_report_errors_are_one_line(
    catalog_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOYALTY_CAMPAIGNS_DIR", str(catalog_dir))
    monkeypatch.setenv("LOYALTY_DATABASE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    out = str(tmp_path / "x.html")
    assert main(["report", "nope", "--from", "2025-07-01", "--to", "2025-07-02", "--out", out]) == 1
    assert main(["report", CAMPAIGN, "--from", "2025-07-01", "--to", "2025-07-02", "--out", out]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("ERROR unknown campaign 'nope'")
    assert err[1].startswith("ERROR no warehouse yet")
