"""Subcommands of `loyalty` for campaign results (their arguments are registered in cli.py).

loyalty report ID --from D1 --to D2 --out FILE.html    results of D1..D2's entrants as offline HTML
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loyalty_assets.settings import Settings

COMMANDS = ("report", "explain", "backtest")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run a results subcommand; a user error is one line on stderr and exit code 1."""
    from loyalty_assets.reporting.commands import ReportError, report

    try:
        if args.command == "report":
            path, results = report(settings, args.campaign_id, args.start, args.end, args.out)
            test = results.groups.filter((results.groups["scope"] == "campaign") & (results.groups["group"] == "test"))
            print(f"report of {args.campaign_id} ({args.start} … {args.end}) written to {path}")
            gain = results.money.get("incremental_revenue")
            print(f"  test customers {test['customers'][0]}, incremental revenue {gain}")
            return 0
        if args.command == "explain":
            from loyalty_assets.config.catalog import load_catalog
            from loyalty_assets.reporting.explain import explain

            catalog = load_catalog(settings.campaigns_dir)
            if args.campaign not in catalog.campaigns:
                raise ReportError(f"unknown campaign {args.campaign!r}; known: {', '.join(sorted(catalog.campaigns))}")
            lines = explain(
                catalog,
                args.customer_id,
                args.campaign,
                args.date,
                data_dir=settings.data_dir,
                source_database_url=settings.source_database_url,
                storage_dir=settings.storage_dir,
            )
            print("\n".join(lines))
            return 0
        if args.command == "backtest":
            from loyalty_assets.reporting.backtest import backtest
            from loyalty_assets.reporting.markdown import results_markdown
            from loyalty_assets.transforms.results import FUNNEL_STAGES

            done = backtest(settings, args.campaign_id, args.start, args.end, scratch=args.scratch)
            print(f"backtest of {done.campaign_id} {args.start} … {args.end} in {done.scratch} (production untouched):")
            for day, entrants, control, messages, cost in done.per_day.iter_rows():
                print(
                    f"  {day}  entrants {entrants:>6}  control {control:>5}  messages {messages:>6}  bonus cost {cost}"
                )
            found = done.results
            events = sum(int(found.funnel[s].sum()) for s in FUNNEL_STAGES) if found is not None else 0
            if found is not None and (events or found.groups["checks"].sum()):
                print(results_markdown(found))
            else:
                print("  no checks or message events for these entrants yet")
            return 0
    except ReportError as error:
        print(f"ERROR {error}", file=sys.stderr)
        return 1
    return 2
