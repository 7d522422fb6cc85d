"""The CLI's user errors: one `ERROR …` line naming what to fix, a non-zero exit, no traceback.

Fast: nothing here runs the pipeline (see test_cli_runs.py for that).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loyalty_assets import cli
from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, catalog_dir: Path) -> Path:
    """Every variable pointed into tmp_path: the fixture data, a catalog copy, a fresh warehouse."""
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / "birthdays", data)
    monkeypatch.setenv("LOYALTY_DATA_DIR", str(data))
    monkeypatch.setenv("LOYALTY_CAMPAIGNS_DIR", str(catalog_dir))
    monkeypatch.setenv("LOYALTY_DATABASE_URL", f"sqlite:///{tmp_path / 'wh.db'}")
    monkeypatch.setenv("LOYALTY_STORAGE_DIR", str(tmp_path / "storage"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return tmp_path


def error_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the CLI; assert exit 1 and exactly one stderr line starting with ERROR; return it."""
    assert cli.main(list(argv)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ERROR "), err
    return err[0]


def test_unreachable_warehouse_names_the_variable_with_the_password_masked(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOYALTY_DATABASE_URL", "postgresql+psycopg://bob:s3cret@127.0.0.1:1/nowhere")
    line = error_of(capsys, "run", "--date", "2025-02-22")
    assert line.startswith(
        "ERROR LOYALTY_DATABASE_URL=postgresql+psycopg://bob:***@127.0.0.1:1/nowhere: cannot connect"
    )
    assert "s3cret" not in line


def test_a_url_that_is_no_url_names_the_variable(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOYALTY_DATABASE_URL", "not a url:pw@host")
    line = error_of(capsys, "summary", "--date", "2025-02-22")
    assert line.startswith("ERROR LOYALTY_DATABASE_URL=not a url:pw@host: not a database URL")


def test_mask_url_hides_the_password_even_when_unparsable() -> None:
    assert cli.mask_url("postgresql://u:pa@ss@h/db") == "postgresql://u:***@h/db"
    assert cli.mask_url("weird://u:secret@h:x:y") == "weird://u:***@h:x:y"
    assert cli.mask_url("sqlite:///a.db") == "sqlite:///a.db"


def test_missing_data_folder_hints_at_the_generator(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOYALTY_DATA_DIR", str(env / "nothing_here"))
    line = error_of(capsys, "run", "--date", "2025-02-22")
    assert "LOYALTY_DATA_DIR=" in line and "does not exist" in line
    assert "python -m loyalty_assets.sample_data --out" in line
    (env / "empty").mkdir()
    monkeypatch.setenv("LOYALTY_DATA_DIR", str(env / "empty"))
    assert "has no customers.parquet or customers.csv" in error_of(
        capsys, "campaign", "dry-run", "birthday_week_early", "--date", "2025-02-22"
    )


def test_unknown_ids_list_the_known_ones(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = error_of(capsys, "segment", "preview", "nope", "--date", "2025-02-22")
    assert line == "ERROR unknown segment 'nope'; known: members_over_a_year, women_q1_email_bonus"
    line = error_of(capsys, "campaign", "dry-run", "nope", "--date", "2025-02-22")
    assert line.startswith("ERROR unknown campaign 'nope'; known: aquarium_fish_chain, birthday_ab_channels, ")


def test_invalid_program_yaml_is_one_line_naming_file_and_field(
    env: Path, catalog_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    program = catalog_dir / "program.yaml"
    program.write_text(program.read_text().replace("timezone: Europe/Moscow", "timezone: Mars/Olympus"))
    for argv in (["validate"], ["run", "--date", "2025-02-22"], ["summary", "--date", "2025-02-22"]):
        line = error_of(capsys, *argv)
        assert line.startswith(f"ERROR {program}: field 'timezone': "), line


def test_debug_shows_the_traceback_instead(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOYALTY_DATA_DIR", str(env / "nothing_here"))
    with pytest.raises(cli.UserError, match="LOYALTY_DATA_DIR"):
        cli.main(["--debug", "run", "--date", "2025-02-22"])


def test_backfill_with_end_before_start(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = error_of(capsys, "backfill", "--start", "2025-02-22", "--end", "2025-02-21")
    assert line == "ERROR --end 2025-02-21 is before --start 2025-02-22"


def test_help_imports_neither_dagster_nor_polars_and_answers_fast() -> None:
    probe = "import sys, loyalty_assets.cli; print(sorted({'dagster', 'polars', 'sqlalchemy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    started = time.monotonic()
    shown = subprocess.run(
        [sys.executable, "-m", "loyalty_assets.cli", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert shown.returncode == 0 and "loyalty run --date" in shown.stdout
    assert time.monotonic() - started < 2.0


def test_a_registered_subcommand_appears_in_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """How colleagues add a command: one decorated function (the registry is a plain dict)."""
    monkeypatch.setattr(cli, "COMMANDS", dict(cli.COMMANDS))

    @cli.command("campaign stats", "per-variant results", lambda p: p.add_argument("campaign_id"))
    def _stats(args: argparse.Namespace, settings: object) -> int:
        print(f"stats of {args.campaign_id}")
        return 0

    args = cli.build_parser().parse_args(["campaign", "stats", "x"])
    assert args._command == "campaign stats" and args.campaign_id == "x"
    assert cli.build_parser().parse_args(["campaign", "dry-run", "y", "--date", "2025-01-01"])._command == (
        "campaign dry-run"
    )
