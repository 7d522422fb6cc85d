"""Which rows of each source table a day's rules read, once features come from carried state.

With the features carried day to day (`transforms.feature_carry`), the event tables (`checks`,
`check_items`, `bonus_transactions`, `communications`, `site_visits`) are read by D's rules only
near D: the event triggers read D's events, the favourite reminders the checks of the favourite
period containing D. A few rules read a table's whole history; `history_tables` names them so the
daily asset loads those tables whole (and says why in its metadata), the others from `rows_since`.
The per-customer tables (customers, attributes, favourites, categories) are always loaded whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta

import polars as pl

from loyalty_assets.config.campaigns import AnniversaryTrigger, DateArrivalTrigger, EventTrigger
from loyalty_assets.config.catalog import Catalog
from loyalty_assets.config.filters import Filter
from loyalty_assets.sources.frames import AsOf
from loyalty_assets.transforms.feature_carry import carried
from loyalty_assets.transforms.features import required_features

#: The timestamp that places an event table's row in time (checks' lines go with their check).
EVENT_TIME = {"checks": "ts", "bonus_transactions": "ts", "communications": "event_at", "site_visits": "ts"}
#: Tables read whole whatever the day: one row (or a few versions) per customer, or the tree.
WHOLE_TABLES = ("customers", "categories", "customer_attributes", "favourite_categories")
#: Event triggers that read what is left of every bonus lot (`triggers._bonus_expiry`).
LOT_EVENTS = ("bonus_expiring", "bonus_expired")
#: A day's margin for the customers' zones around the program's day (±14 h at most).
_ZONE_MARGIN = timedelta(days=1)


def history_tables(catalog: Catalog) -> dict[str, str]:
    """Event tables whose whole history some rule of the catalog reads, with the first such rule.

    The rules reading the bonus lots (`reads_lots`) are not among them: the daily asset carries the
    lots from day to day (`feature_carry.carried_lots`)."""
    needs: dict[str, str] = {}
    for cid in sorted(catalog.campaigns):
        campaign = catalog.campaigns[cid]
        split = campaign.ab_split()
        if split is not None and split.adaptive is not None:
            why = f"campaign {cid}: an adaptive A/B split compares every entrant's attributed checks"
            needs.setdefault("checks", why)
            needs.setdefault("communications", why)
        trigger = campaign.trigger
        if isinstance(trigger, AnniversaryTrigger | DateArrivalTrigger) and trigger.field.endswith("_check_date"):
            needs.setdefault("checks", f"campaign {cid}: a trigger on {trigger.field} reads each customer's checks")
    if "checks" in needs:
        needs.setdefault("check_items", needs["checks"])
    return needs


def reads_lots(catalog: Catalog, filters: Iterable[Filter]) -> bool:
    """Whether a rule reads what remains of the bonus lots: `bonus_balance` / `bonuses_expiring`
    conditions, or the `bonus_expiring` / `bonus_expired` triggers."""
    if any(not carried(s) and s.source == "bonuses" for s in required_features(filters)):
        return True
    return any(
        isinstance(c.trigger, EventTrigger) and c.trigger.event in LOT_EVENTS for c in catalog.campaigns.values()
    )


def rows_since(point: AsOf, favourite_categories: pl.DataFrame) -> datetime:
    """The earliest instant D's rules read an event table from (UTC, with a day of margin for zones):
    the start of D, or the start of the earliest favourite period containing D, whose checks the
    favourite reminders sum (`cashback.favourite_period_summary`)."""
    since = point.start
    current = favourite_categories.filter(
        (pl.col("period_start") <= point.date)
        & (pl.col("period_end") >= point.date)
        & (pl.col("chosen_at") < point.cutoff_literal)
    )
    first = current.get_column("period_start").min()
    if first is not None:
        since = min(since, datetime.combine(first, time(0), UTC) - timedelta(days=1))  # type: ignore[arg-type]
    return since - _ZONE_MARGIN
