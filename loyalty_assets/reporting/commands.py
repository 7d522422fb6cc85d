"""The logic behind `loyalty report` (cli.py only parses arguments and prints)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from loyalty_assets.config.catalog import load_catalog
from loyalty_assets.reporting.inputs import ResultSources, results_for
from loyalty_assets.reporting.report import write_report
from loyalty_assets.settings import Settings
from loyalty_assets.sources.frames import AsOf
from loyalty_assets.sources.readers import make_reader
from loyalty_assets.sources.snapshot import load_snapshot
from loyalty_assets.transforms.results import CampaignResults
from loyalty_assets.warehouse.lots import own_accruals_through
from loyalty_assets.warehouse.warehouse import open_existing


class ReportError(Exception):
    """A user error, printed as one line."""


def build_results(settings: Settings, campaign_id: str, start: date, end: date) -> CampaignResults:
    """The campaign's results for entrants of `start..end` on the data visible at `end`'s cutoff."""
    if end < start:
        raise ReportError(f"--to {end} is before --from {start}")
    catalog = load_catalog(settings.campaigns_dir)
    if campaign_id not in catalog.campaigns:
        raise ReportError(f"unknown campaign {campaign_id!r}; known: {', '.join(sorted(catalog.campaigns))}")
    wh = open_existing(settings.database_url)
    if wh is None:
        raise ReportError("no warehouse yet: run the pipeline first (make run, or loyalty run --date D)")
    point = AsOf(end, catalog.program.timezone)
    reader = make_reader(settings.data_dir, settings.source_database_url, point.cutoff)
    snapshot = load_snapshot(reader, point, own_accruals=own_accruals_through(wh, point))
    return results_for(catalog, campaign_id, wh, ResultSources.of(snapshot.frames), start, end)


def report(settings: Settings, campaign_id: str, start: date, end: date, out: Path) -> tuple[Path, CampaignResults]:
    results = build_results(settings, campaign_id, start, end)
    name = load_catalog(settings.campaigns_dir).campaigns[campaign_id].name
    return write_report(results, out, campaign_name=name, generated_for=end), results
