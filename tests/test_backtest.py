"""`loyalty backtest`: a paused campaign over past dates in a scratch warehouse; production untouched."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from loyalty_assets.cli import main
from loyalty_assets.reporting.backtest import backtest
from loyalty_assets.reporting.commands import ReportError
from loyalty_assets.warehouse.warehouse import Warehouse, ddl_statements
from tests.conftest import FIXTURES, keep_campaigns, make_settings, run_days

CAMPAIGN = "birthday_ab_channels"


def all_tables(url: str) -> dict[str, pl.DataFrame]:
    wh = Warehouse(url)
    names = sorted(
        {s.split("EXISTS", 1)[1].split("(")[0].strip() for s in ddl_statements() if s.startswith("CREATE TABLE")}
    )
    return {name: wh.read(name).sort(pl.all()) for name in names}


@pytest.fixture
def paused(catalog_dir: Path) -> Path:
    """The catalog copy with `birthday_ab_channels` paused (not active: the daily run ignores it), beside
    one active campaign (a production run with a campaign of its own)."""
    keep_campaigns(catalog_dir, CAMPAIGN, "birthday_week_early")
    file = catalog_dir / "campaigns" / f"{CAMPAIGN}.yaml"
    definition = yaml.safe_load(file.read_text(encoding="utf8"))
    definition["status"] = "paused"
    file.write_text(yaml.safe_dump(definition, allow_unicode=True, sort_keys=False), encoding="utf8")
    return catalog_dir


def test_backtest_of_a_paused_campaign_leaves_production_untouched(
    paused: Path,
    warehouse_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / "campaign_settings", data)
    production = make_settings(data, paused, warehouse_url, tmp_path / "storage")
    run_days(production, [date(2025, 7, 10)])
    before = all_tables(warehouse_url)
    assert before["triggered_customers"].filter(pl.col("campaign_id") == CAMPAIGN).is_empty()  # paused

    done = backtest(production, CAMPAIGN, date(2025, 7, 9), date(2025, 7, 11), scratch=tmp_path / "scratch")
    # 40 anniversaries on 10 July; 3 in the 10% control group (fixture README); 37 messages × 200 bonuses
    assert done.per_day.rows() == [
        (date(2025, 7, 9), 0, 0, 0, "0.00"),
        (date(2025, 7, 10), 40, 3, 37, "7400.00"),
        (date(2025, 7, 11), 0, 0, 0, "0.00"),
    ]
    assert done.results is not None and done.results.money["bonus_accrued"] == 7400
    after = all_tables(warehouse_url)
    assert before.keys() == after.keys()
    for name in before:
        assert_frame_equal(before[name], after[name])

    monkeypatch.setenv("LOYALTY_DATA_DIR", str(data))
    monkeypatch.setenv("LOYALTY_CAMPAIGNS_DIR", str(paused))
    monkeypatch.setenv("LOYALTY_DATABASE_URL", warehouse_url)
    assert (
        main(["backtest", CAMPAIGN, "--from", "2025-07-10", "--to", "2025-07-10", "--scratch", str(tmp_path / "s2")])
        == 0
    )
    printed = capsys.readouterr().out
    assert "2025-07-10  entrants     40  control     3  messages     37  bonus cost 7400.00" in printed
    assert "no checks or message events for these entrants yet" in printed
    with pytest.raises(ReportError, match="already holds a backtest"):
        backtest(production, CAMPAIGN, date(2025, 7, 10), date(2025, 7, 10), scratch=tmp_path / "s2")
    for name in before:
        assert_frame_equal(before[name], all_tables(warehouse_url)[name])
