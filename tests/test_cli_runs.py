"""`loyalty run/backfill/summary` end to end on the birthday fixture: quiet lines, gates, the summary,
and a safe first use of an empty DAGSTER_HOME by several commands at once (issue 7, item 11)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from loyalty_assets import cli
from loyalty_assets.warehouse.warehouse import Warehouse
from tests.conftest import BIRTHDAY_WRITERS, FIXTURES, keep_campaigns

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, catalog_dir: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / "birthdays", data)
    monkeypatch.setenv("LOYALTY_DATA_DIR", str(data))
    monkeypatch.setenv("LOYALTY_CAMPAIGNS_DIR", str(keep_campaigns(catalog_dir, *BIRTHDAY_WRITERS)))
    monkeypatch.setenv("LOYALTY_DATABASE_URL", f"sqlite:///{tmp_path / 'wh.db'}")
    monkeypatch.setenv("LOYALTY_STORAGE_DIR", str(tmp_path / "storage"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))  # created by the CLI
    return tmp_path


@pytest.mark.long
def test_backfill_prints_a_line_per_date_and_stops_at_a_gate_with_the_override(
    env: Path, catalog_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = catalog_dir / "campaigns" / "birthday_week_early.yaml"
    data = yaml.safe_load(path.read_text())
    data["settings"]["gates"] = {"max_audience_jump": 2, "min_audience_for_jump": 1}
    path.write_text(yaml.safe_dump(data, allow_unicode=True))

    assert cli.main(["backfill", "--start", "2025-02-21", "--end", "2025-02-23"]) == 1
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith(("2025-", "    "))]
    # 21 Feb: customer 12 (28 Feb birthday) → 1 entrant; 22 Feb: 7 > 2 × 1 → the gate holds it back.
    assert lines[0].startswith("2025-02-21  ok ")
    assert "triggered 1, accruals 1, messages 1" in lines[0]
    assert lines[1].startswith("2025-02-22  FAILED")
    assert lines[2].startswith(
        "    ERROR: gate campaign/birthday_week_early/triggered_customers · audience_within_expected_range:"
    )
    assert "add 2025-02-22 to settings.gates.override_dates in campaigns/birthday_week_early.yaml" in lines[2]
    assert not any(line.startswith("2025-02-23") for line in lines)  # stopped: later dates depend on it
    assert "DEBUG" not in out and "Traceback" not in out
    assert len(out.splitlines()) <= 8

    assert cli.main(["summary", "--date", "2025-02-22"]) == 0
    summary = capsys.readouterr().out
    rows = {line.split()[0]: line for line in summary.splitlines() if line.startswith("birthday")}
    assert "gate failed" in rows["birthday_week_early"]
    assert "nobody triggered" in rows["birthday_members_over_a_year"]


def test_run_writes_what_the_line_says_and_the_summary_agrees(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--date", "2025-02-22"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[0]
    # 7 entrants of birthday_week_early (README of the fixture): 7 accruals, 4 emails, 3 skipped.
    assert line.startswith("2025-02-22  ok ") and "triggered 7, accruals 7, messages 4" in line
    assert cli.main(["summary", "--date", "2025-02-22"]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("birthday_week_early "))
    assert row.split()[1:8] == ["ok", "7", "0", "0", "7", "3500.00", "email"]
    assert "email_invalid 1, email_unsubscribed 1, no_email 1" in row


def test_three_first_uses_of_an_empty_dagster_home_at_once_all_succeed(tmp_path: Path) -> None:
    """Dagster migrates its SQLite storage on first use; unserialised, parallel first runs collide."""
    home = tmp_path / "empty_home"
    code = (
        "from loyalty_assets.cli import open_instance; from loyalty_assets.settings import Settings\n"
        "with open_instance(Settings.from_env()) as instance: print(len(instance.get_runs()))"
    )
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err.decode()[-500:] for _, err in results]
    assert [out.strip() for out, _ in results] == [b"0", b"0", b"0"]
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


def test_library_runs_without_dagster_home_keep_no_history(
    env: Path, monkeypatch: pytest.MonkeyPatch, catalog_dir: Path
) -> None:
    """`run_dates` as a library (tests, notebooks) uses an ephemeral instance: only the CLI defaults to .dagster/."""
    from dataclasses import replace
    from datetime import date

    from loyalty_assets.settings import Settings

    monkeypatch.delenv("DAGSTER_HOME")
    settings = replace(Settings.from_env(), dagster_home=env / "project_home")
    assert cli.run_dates(settings, [date(2025, 2, 21)], report=lambda result: None)
    assert not (env / "project_home").exists()


def test_a_thin_checks_day_stops_the_date_before_any_campaign_until_overridden(
    env: Path, catalog_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The blocking `yesterdays_checks_arrived` gate of `source/checks`: 3 checks a day for the 28
    days up to 16 Feb, then 0 on 17 Feb (< 0.3 × median 3) → 18 Feb stops after the sources, with the
    override to use; with 18 Feb in `gate_override_dates` the same date runs."""
    with (env / "data" / "checks.csv").open("a", encoding="utf8") as checks:
        for day in range(20, 48):  # 20 Jan .. 16 Feb: 28 days
            on = f"2025-{1 + (day > 31):02d}-{day - 31 * (day > 31):02d}"
            for n in range(3):
                checks.write(f"V{day}_{n},7,{on} 12:00:00,S01,10.00,0.00,0.00\n")

    assert cli.main(["run", "--date", "2025-02-18"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("2025-02-18  FAILED")
    assert "gate source/checks · yesterdays_checks_arrived" in out
    assert "only 0 checks on 2025-02-17, below 0.3× the 28-day median 3" in out
    assert "add 2025-02-18 to gate_override_dates in program.yaml" in out
    assert "Traceback" not in out and len(lines) <= 4
    wh = Warehouse(f"sqlite:///{env / 'wh.db'}")
    assert wh.count("segment_members") == 0 and wh.count("triggered_customers") == 0  # nothing downstream ran
    assert not (env / "storage" / "loyalty_state" / "2025-02-18").exists()

    program = catalog_dir / "program.yaml"
    program.write_text(program.read_text().replace("gate_override_dates: []", "gate_override_dates: [2025-02-18]"))
    assert cli.main(["run", "--date", "2025-02-18"]) == 0
    assert capsys.readouterr().out.startswith("2025-02-18  ok ")
    assert wh.count("segment_members") > 0
    assert (env / "storage" / "loyalty_state" / "2025-02-18").exists()
