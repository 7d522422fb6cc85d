"""`loyalty backtest`: run one campaign over past dates into a scratch warehouse.

The campaign runs through the real daily job (the same assets, in date order) against the same
sources, but with a private copy of the catalog and its own SQLite warehouse and storage in a scratch
folder: the production warehouse is never opened for writing. The copy makes the campaign live over
the range (a draft, paused or not-yet-started campaign is accepted) and keeps only that campaign, so
other campaigns do not run; its frequency cap therefore counts only the campaign's own messages, and
a fresh scratch warehouse has no history before `--from` (re-entry and once-per-customer start empty).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import yaml

from loyalty_assets.config.catalog import load_catalog
from loyalty_assets.reporting.commands import ReportError, build_results
from loyalty_assets.settings import Settings
from loyalty_assets.transforms.results import CampaignResults
from loyalty_assets.warehouse.warehouse import Warehouse


@dataclass(frozen=True)
class Backtest:
    campaign_id: str
    scratch: Path
    per_day: pl.DataFrame  # date, entrants, control, messages, bonus_cost
    results: CampaignResults | None


def _scratch_catalog(settings: Settings, campaign_id: str, start: date, end: date, target: Path) -> None:
    """A catalog copy in which only `campaign_id` remains, made active over `start..end`."""
    shutil.copytree(settings.campaigns_dir, target)
    campaigns = target / "campaigns"
    for path in campaigns.glob("*.y*ml"):
        if path.stem != campaign_id:
            path.unlink()
    file = next(campaigns.glob(f"{campaign_id}.y*ml"))
    definition = yaml.safe_load(file.read_text(encoding="utf8"))
    definition["status"] = "active"
    if definition.get("start_date") and date.fromisoformat(str(definition["start_date"])) > start:
        definition["start_date"] = start.isoformat()
    if definition.get("end_date") and date.fromisoformat(str(definition["end_date"])) < end:
        definition["end_date"] = end.isoformat()
    file.write_text(yaml.safe_dump(definition, allow_unicode=True, sort_keys=False), encoding="utf8")


def backtest(settings: Settings, campaign_id: str, start: date, end: date, *, scratch: Path | None = None) -> Backtest:
    """Run the campaign for every date of `start..end` into `scratch` (a new temporary folder by default)."""
    import dagster as dg

    from loyalty_assets.defs.definitions import build_definitions
    from loyalty_assets.defs.schedules import DAILY_JOB

    if end < start:
        raise ReportError(f"--to {end} is before --from {start}")
    catalog = load_catalog(settings.campaigns_dir)
    if campaign_id not in catalog.campaigns:
        raise ReportError(f"unknown campaign {campaign_id!r}; known: {', '.join(sorted(catalog.campaigns))}")
    folder = scratch or Path(tempfile.mkdtemp(prefix=f"backtest-{campaign_id}-"))
    if (folder / "warehouse.db").exists():
        raise ReportError(f"scratch folder {folder} already holds a backtest: choose another --scratch")
    folder.mkdir(parents=True, exist_ok=True)
    _scratch_catalog(settings, campaign_id, start, end, folder / "catalog")
    url = f"sqlite:///{folder / 'warehouse.db'}"
    if url == settings.database_url:
        raise ReportError("the scratch warehouse must not be the production warehouse")
    scratch_settings = replace(
        settings, campaigns_dir=folder / "catalog", database_url=url, storage_dir=folder / "storage"
    )
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    job = build_definitions(scratch_settings).resolve_job_def(DAILY_JOB)
    with dg.DagsterInstance.ephemeral() as instance:
        for day in days:
            run = job.execute_in_process(partition_key=day.isoformat(), instance=instance, raise_on_error=False)
            if not run.success:
                raise ReportError(f"the backtest run for {day} failed (scratch folder {folder})")
    wh = Warehouse(url)
    per_day = _per_day(wh, campaign_id, days)
    results = None
    frames_have_data = _has_outcomes(wh, campaign_id)
    if frames_have_data:
        results = build_results(scratch_settings, campaign_id, start, end)
    return Backtest(campaign_id, folder, per_day, results)


def _per_day(wh: Warehouse, campaign_id: str, days: list[date]) -> pl.DataFrame:
    scope = {"campaign_id": campaign_id}
    entrants = wh.read("triggered_customers", scope)
    messages = wh.read("message_outbox", scope)
    accruals = wh.read("bonus_accruals", scope)
    rows = []
    for day in days:
        on = pl.col("partition_date") == day
        mine = entrants.filter(on)
        cost = accruals.filter(on).get_column("amount").sum() if accruals.filter(on).height else Decimal("0.00")
        rows.append(
            {
                "date": day,
                "entrants": mine.height,
                "control": int(mine.get_column("is_control").sum()) if mine.height else 0,
                "messages": messages.filter(on).height,
                "bonus_cost": str(Decimal(cost).quantize(Decimal("0.01"))),
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "date": pl.Date(),
            "entrants": pl.Int64(),
            "control": pl.Int64(),
            "messages": pl.Int64(),
            "bonus_cost": pl.String(),
        },
        orient="row",
    )


def _has_outcomes(wh: Warehouse, campaign_id: str) -> bool:
    """Results are worth computing once the campaign has entrants (checks and events come from the sources)."""
    return wh.count("triggered_customers", {"campaign_id": campaign_id}) > 0
