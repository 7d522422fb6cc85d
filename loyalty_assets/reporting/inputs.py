"""The rows a campaign's results are computed from, read once for the asset and the report alike.

Both call `results_for` with the point-in-time sources of the last date, so the results asset of
date D and `loyalty report --from <start> --to D` give the same figures. With a program-wide global
control group, the programme's figures (everybody else versus the group, over the same dates) are
added with scope `programme`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta

import polars as pl

from loyalty_assets.config.catalog import Catalog
from loyalty_assets.sources.frames import SourceFrames
from loyalty_assets.transforms.results import CampaignResults, campaign_results, programme_results
from loyalty_assets.warehouse.warehouse import Warehouse

#: What results need of a message: never its body, subject or recipient.
MESSAGE_FACTS = (
    "message_id",
    "campaign_id",
    "step_id",
    "customer_id",
    "occasion",
    "channel",
    "variant",
    "send_at",
    "partition_date",
)

#: What results need of an entrant and of an accrual (the check and event columns are never read).
ENTRANT_FACTS = ("campaign_id", "partition_date", "customer_id", "occasion", "triggered_at", "variant", "is_control")
ACCRUAL_FACTS = ("accrual_id", "campaign_id", "partition_date", "customer_id", "amount")


def period_start(catalog: Catalog, campaign_id: str) -> date:
    """The first date a campaign's results count entrants from: its start date, else the partitions'."""
    campaign = catalog.campaigns[campaign_id]
    return max(campaign.start_date or catalog.program.partitions_start, catalog.program.partitions_start)


def touch_window_start(catalog: Catalog, start: date) -> date:
    """The first date whose messages can take the last touch of a check of a period starting `start`."""
    longest = max((c.settings.attribution_days for c in catalog.campaigns.values()), default=0)
    return start - timedelta(days=longest + 1)


def all_message_facts(catalog: Catalog, wh: Warehouse, since: date, end: date) -> pl.DataFrame:
    """Every catalog campaign's message facts of `since..end`: the competitors for the last touch."""
    everyone = wh.read(
        "message_outbox",
        since=("partition_date", since),
        before=("partition_date", end + timedelta(days=1)),
        columns=MESSAGE_FACTS,
    )
    return everyone.filter(pl.col("campaign_id").is_in(sorted(catalog.campaigns)))


@dataclass(frozen=True)
class ResultSources:
    """The point-in-time sources results read: customers whole (every entrant's zone), the event
    tables lazily, so each campaign loads only the rows its windows, touches and accruals reach
    (`transforms.results.reachable_checks`): the results asset hands the source store's scans, and
    the checks before the first window or touch are never read (but by a global control group's
    programme figures, which count every check from the campaign's start)."""

    customers: pl.DataFrame
    checks: pl.LazyFrame
    communications: pl.LazyFrame
    bonus_transactions: pl.LazyFrame

    @classmethod
    def of(cls, frames: SourceFrames) -> ResultSources:
        """From frames held in memory (the report's `load_snapshot`)."""
        lazy = frames.checks.lazy(), frames.communications.lazy(), frames.bonus_transactions.lazy()
        return cls(frames.customers, *lazy)


def results_for(
    catalog: Catalog,
    campaign_id: str,
    wh: Warehouse,
    frames: ResultSources,
    start: date,
    end: date,
    all_messages: pl.DataFrame | None = None,
) -> CampaignResults:
    """Results of `campaign_id`'s entrants of `start..end`, from the warehouse and `frames` (as of `end`).

    `all_messages`: `all_message_facts` from a date on or before `touch_window_start(catalog, start)`,
    when the caller computes several campaigns (one read for all of them instead of one each)."""
    campaign = catalog.campaigns[campaign_id]
    after = end + timedelta(days=1)
    mine = {"campaign_id": campaign_id}
    entrants = wh.read(
        "triggered_customers",
        mine,
        since=("partition_date", start),
        before=("partition_date", after),
        columns=ENTRANT_FACTS,
    )
    since = touch_window_start(catalog, start)
    if all_messages is None:
        all_messages = all_message_facts(catalog, wh, since, end)
    # the campaign's own messages are among everyone's (read from `since` <= `start`): not read twice
    outbox = all_messages.filter(
        (pl.col("campaign_id") == campaign_id) & pl.col("partition_date").is_between(start, end)
    )
    accruals = wh.read(
        "bonus_accruals", mine, since=("partition_date", start), before=("partition_date", after), columns=ACCRUAL_FACTS
    )
    # other campaigns' messages compete for the last touch: those that can reach a check of the period
    everyone = all_messages.filter(pl.col("partition_date").is_between(since, end))
    days = {cid: c.settings.attribution_days for cid, c in catalog.campaigns.items()}
    rules = {cid: c.settings.attribution_from.as_dict() for cid, c in catalog.campaigns.items()}
    results = campaign_results(
        campaign,
        start=start,
        end=end,
        entrants=entrants,
        outbox=outbox,
        all_outbox=everyone,
        accruals=accruals,
        communications=frames.communications,
        checks=frames.checks,
        customers=frames.customers,
        ledger=frames.bonus_transactions,
        program_tz=catalog.program.timezone,
        attribution_days=days,
        attribution_rules=rules,
    )
    group = catalog.program.global_control_group
    if group is None:
        return results
    groups, differences = programme_results(
        frames.customers, frames.checks, group, start, end, catalog.program.timezone, results.confidence
    )
    return replace(
        results,
        groups=pl.concat([results.groups, groups]),
        differences=pl.concat([results.differences, differences]),
    )
