"""What one date's run hands to the next: the pipeline's cross-day state, as plain frames.

The daily asset reads `loyalty_state` for D−1 as a declared input and writes it for D, so every
fact a later date needs travels through Dagster (a previous-partition dependency), never through
the warehouse. The state is bounded by what the rules need:

- `accruals`: the bonus accruals this project wrote (they count toward balances and feed the
  `bonus.*` template variables of later messages of the same occasion);
- `members`: every saved segment's members on D (D+1's enter/leave triggers and `left`/`entered`);
- `manual_events`: campaign-kept segments' add/remove events, compacted to the latest event per
  customer before the start of D (plus D's own), which is all "members at a cutoff" needs;
- `triggered`: the campaigns' entrants that later dates' entry rules can still use
  (`EntrantRetention`): re-entry's window, one row per customer for once-per-customer campaigns,
  every entrant of an adaptive A/B split, and a month of margin for "once per occasion";
- `outbox`: message facts without bodies: the frequency-cap window for every campaign, all dates
  for campaigns with an adaptive A/B split;
- `pending`: journey tokens waiting until a moment after D;
- `features`: the per-customer feature states D+1 advances with its own rows
  (`transforms.feature_carry`), so no date aggregates all history.

`DayState.next` builds D's state from D−1's and D's results only, so a re-run of D (from the same
D−1 state) gives the same state, whatever later dates did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

import polars as pl

from loyalty_assets.sources.frames import OWN_ACCRUALS_SCHEMA, AsOf
from loyalty_assets.transforms.accruals import ACCRUALS_SCHEMA
from loyalty_assets.transforms.feature_carry import FeatureCarry
from loyalty_assets.transforms.journey import TOKEN_SCHEMA

CUSTOMER = {"customer_id": pl.Int64()}
UTC_TS = pl.Datetime("us", "UTC")

MANUAL_EVENT_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "segment_id": pl.String(),
    "customer_id": pl.Int64(),
    "action": pl.String(),
    "ts": UTC_TS,
    "campaign_id": pl.String(),
}

STATE_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "accruals": {**ACCRUALS_SCHEMA, "partition_date": pl.Date()},
    "members": {"segment_id": pl.String(), "customer_id": pl.Int64()},
    "manual_events": MANUAL_EVENT_SCHEMA,
    "triggered": {
        "campaign_id": pl.String(),
        "customer_id": pl.Int64(),
        "occasion": pl.String(),
        "partition_date": pl.Date(),
        "variant": pl.String(),
        "is_control": pl.Boolean(),
    },
    "outbox": {
        "campaign_id": pl.String(),
        "partition_date": pl.Date(),
        "message_id": pl.String(),
        "customer_id": pl.Int64(),
        "channel": pl.String(),
        "variant": pl.String(),
        "send_at": UTC_TS,
    },
    "pending": {"campaign_id": pl.String(), **TOKEN_SCHEMA},
    # one row: the date this state is "as of" (no row: the empty state before any run)
    "meta": {"as_of": pl.Date()},
}


#: What tells a state frame's rows apart (its canonical order, `transforms.shards.canonical`).
STATE_KEYS: dict[str, tuple[str, ...]] = {
    "accruals": ("accrual_id",),
    "members": ("segment_id", "customer_id"),
    "manual_events": ("ts", "event_id"),
    "triggered": ("campaign_id", "customer_id", "occasion", "partition_date"),
    "outbox": ("message_id",),
    "pending": ("campaign_id", "customer_id", "occasion", "node"),
}


def state_keys(name: str) -> tuple[str, ...]:
    """The key of a `DayState.to_frames` frame (the carried features': customer, day, expiry; lots: id)."""
    if name in STATE_KEYS:
        return STATE_KEYS[name]
    if name.endswith(".lots"):
        return ("customer_id", "expires_at", "accrued_at", "lot_id")  # FIFO, as the ledger keeps them
    return ("customer_id", "_day", "_exp")


#: Days of entrants kept for "once per occasion" alone. Every trigger binds an occasion to one run
#: date (its event date is D − offset, or the event's own day), so an occasion handled on an earlier
#: date can only come back when its definition changed (e.g. a new `offset_days`): a month of margin.
OCCASION_MARGIN_DAYS = 31


@dataclass(frozen=True)
class EntrantRetention:
    """How much of one campaign's entrant history the entry rules of later dates can use.

    Without it the state kept every entrant ever (tens of millions of rows a year at 1M customers),
    written whole every date; with it the state follows the rules' windows, not the length of history.
    """

    all_dates: bool = False  # an adaptive A/B split compares every entrant since the start
    days: int = OCCASION_MARGIN_DAYS  # re-entry window (at least the occasion margin)
    once_per_customer: bool = False  # keep each customer's first entry forever (one row per customer)

    @classmethod
    def of(cls, reentry_days: int | None, once_per_customer: bool, adaptive: bool) -> EntrantRetention:
        return cls(adaptive, max(OCCASION_MARGIN_DAYS, reentry_days or 0), once_per_customer)


def trim_entrants(triggered: pl.DataFrame, day: date, retention: Mapping[str, EntrantRetention] | None) -> pl.DataFrame:
    """The entrants (as of D, D's included) that D+1 and later can still use, in their original order.

    Campaigns without a retention (no longer in the catalog) keep the occasion margin. `None` keeps all.
    """
    if retention is None or triggered.is_empty():
        return triggered
    default = EntrantRetention()
    policy = pl.DataFrame(
        {
            "campaign_id": [*retention],
            "__all": [r.all_dates for r in retention.values()],
            "__days": [r.days for r in retention.values()],
            "__once": [r.once_per_customer for r in retention.values()],
        },
        schema={"campaign_id": pl.String(), "__all": pl.Boolean(), "__days": pl.Int64(), "__once": pl.Boolean()},
    )
    rows = triggered.with_row_index("__row").join(policy, on="campaign_id", how="left", maintain_order="left")
    since = pl.lit(day, pl.Date()) - pl.duration(days=pl.col("__days").fill_null(default.days))
    first_of_customer = pl.col("__row") == pl.col("__row").sort_by("partition_date", "occasion").first().over(
        "campaign_id", "customer_id"
    )
    keep = (
        pl.col("__all").fill_null(False)
        | (pl.col("partition_date") >= since)
        | (pl.col("__once").fill_null(False) & first_of_customer)
    )
    return rows.filter(keep).select(triggered.columns)


def _conform(frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return frame.select(list(schema)).cast(dict(schema))  # type: ignore[arg-type]


@dataclass(frozen=True)
class DayState:
    """The cross-day state as of the end of a run for `as_of` (None: nothing ever ran)."""

    accruals: pl.DataFrame
    members: pl.DataFrame
    manual_events: pl.DataFrame
    triggered: pl.DataFrame
    outbox: pl.DataFrame
    pending: pl.DataFrame
    meta: pl.DataFrame
    features: FeatureCarry = field(default_factory=FeatureCarry)

    @classmethod
    def empty(cls) -> DayState:
        return cls.from_frames({})

    @classmethod
    def from_frames(cls, frames: Mapping[str, pl.DataFrame]) -> DayState:
        """Read back what `to_frames` stored (a missing frame is empty: older states stay readable)."""
        return cls(
            **{
                name: _conform(frames[name], schema) if name in frames else pl.DataFrame(schema=schema)
                for name, schema in STATE_SCHEMAS.items()
            },
            features=FeatureCarry.from_frames(frames),
        )

    def to_frames(self) -> dict[str, pl.DataFrame]:
        return {name: getattr(self, name) for name in STATE_SCHEMAS} | self.features.to_frames()

    @property
    def as_of(self) -> date | None:
        return self.meta.get_column("as_of")[0] if self.meta.height else None

    # --- what D's run reads ------------------------------------------------------------------

    def own_accruals(self, point: AsOf) -> pl.DataFrame:
        """Accruals written for dates before D and accrued before D's cutoff (for balances)."""
        return self.accruals.filter(
            (pl.col("partition_date") < point.date) & (pl.col("accrued_at") < point.cutoff_literal)
        ).select(list(OWN_ACCRUALS_SCHEMA))

    def own_accruals_entered(self, point: AsOf) -> pl.DataFrame:
        """The own accruals visible at D (`own_accruals`) that were not visible at D−1: those written
        by D−1's run, and earlier ones whose `accrued_at` falls on D (what D's features add)."""
        yesterday = AsOf(point.date - timedelta(days=1), point.program_tz)
        seen = (pl.col("partition_date") < yesterday.date) & (pl.col("accrued_at") < yesterday.cutoff_literal)
        return self.accruals.filter(
            (pl.col("partition_date") < point.date) & (pl.col("accrued_at") < point.cutoff_literal) & ~seen
        ).select(list(OWN_ACCRUALS_SCHEMA))

    def segment_members(self, segment_ids: Iterable[str]) -> dict[str, pl.DataFrame]:
        """Members of saved segments on the state's date; empty when the state is empty (unknown)."""
        by_segment = self.members.partition_by("segment_id", as_dict=True)
        empty = pl.DataFrame(schema=CUSTOMER)
        return {sid: by_segment[(sid,)].select("customer_id") if (sid,) in by_segment else empty for sid in segment_ids}

    def manual_members(self, manual_ids: Iterable[str], day: date, program_tz: str) -> dict[str, pl.DataFrame]:
        """Members of campaign-kept segments on `day`: added before `day` began.

        What campaigns do during a day counts from the next day, so no campaign's result depends on
        the order campaigns run on D.
        """
        start = AsOf(day - timedelta(days=1), program_tz)
        latest = manual_members_at(self.manual_events, start)
        empty = pl.DataFrame(schema=CUSTOMER)
        return {sid: latest.get(sid, empty) for sid in manual_ids} | latest

    def campaign_triggered(self, campaign_id: str) -> pl.DataFrame:
        return self.triggered.filter(pl.col("campaign_id") == campaign_id).drop("campaign_id")

    def campaign_outbox(self, campaign_id: str) -> pl.DataFrame:
        return self.outbox.filter(pl.col("campaign_id") == campaign_id).select(
            "message_id", "customer_id", "variant", "send_at"
        )

    def pending_due(self, campaign_id: str, point: AsOf) -> pl.DataFrame:
        """Tokens of the campaign's chains that earlier dates left waiting until a moment of D."""
        return (
            self.pending.filter(
                (pl.col("campaign_id") == campaign_id)
                & (pl.col("at") >= point.start_literal)
                & (pl.col("at") < point.cutoff_literal)
            )
            .drop("campaign_id")
            .select(list(TOKEN_SCHEMA))
        )

    def entrants_on(self, campaign_id: str, day: date) -> int:
        return self.triggered.filter((pl.col("campaign_id") == campaign_id) & (pl.col("partition_date") == day)).height

    def recent_messages(self, point: AsOf, days: int) -> pl.DataFrame:
        """Earlier dates' messages that can fall in the frequency-cap window ending with D.

        A message is written by the run of the day it is due; quiet hours and speed limits move it
        by at most a day, hence the extra day.
        """
        since = point.date - timedelta(days=days + 1)
        return self.outbox.filter((pl.col("partition_date") >= since) & (pl.col("partition_date") < point.date))

    def campaign_accruals(self, campaign_id: str) -> pl.DataFrame:
        return self.accruals.filter(pl.col("campaign_id") == campaign_id).drop("partition_date")

    # --- what D's run hands on ----------------------------------------------------------------

    def next(
        self,
        point: AsOf,
        *,
        members: Mapping[str, pl.DataFrame],
        triggered: Mapping[str, pl.DataFrame],
        accruals: Iterable[pl.DataFrame],
        outbox: Iterable[pl.DataFrame],
        pending: Mapping[str, pl.DataFrame],
        manual_events: Iterable[pl.DataFrame],
        cap_days: int | None,
        adaptive_campaigns: Iterable[str],
        retention: Mapping[str, EntrantRetention] | None = None,
        features: FeatureCarry | None = None,
    ) -> DayState:
        """D's state: D−1's (dates before D only) plus D's results, trimmed to what later dates use."""
        day = point.date
        before = pl.col("partition_date") < day

        def stack(parts: Iterable[pl.DataFrame], schema: dict[str, pl.DataType]) -> pl.DataFrame:
            frames = [_conform(p, schema) for p in parts]
            return pl.concat(frames) if frames else pl.DataFrame(schema=schema)

        today = pl.lit(day, pl.Date()).alias("partition_date")
        new_triggered = stack(
            (f.with_columns(pl.lit(cid).alias("campaign_id"), today) for cid, f in triggered.items()),
            STATE_SCHEMAS["triggered"],
        )
        new_accruals = stack((f.with_columns(today) for f in accruals), STATE_SCHEMAS["accruals"])
        new_outbox = stack((f.with_columns(today) for f in outbox), STATE_SCHEMAS["outbox"])
        outbox_all = pl.concat([self.outbox.filter(before), new_outbox])
        keep_outbox = pl.col("campaign_id").is_in(list(adaptive_campaigns))
        if cap_days is not None:
            keep_outbox = keep_outbox | (pl.col("partition_date") >= day - timedelta(days=cap_days))
        new_pending = stack(
            (f.with_columns(pl.lit(cid).alias("campaign_id")) for cid, f in pending.items()), STATE_SCHEMAS["pending"]
        )
        waiting = pl.concat([self.pending, new_pending]).filter(pl.col("at") >= point.cutoff_literal)
        events = pl.concat([self.manual_events, stack(manual_events, MANUAL_EVENT_SCHEMA)])
        member_rows = stack(
            (f.select("customer_id").with_columns(pl.lit(sid).alias("segment_id")) for sid, f in members.items()),
            STATE_SCHEMAS["members"],
        )
        return DayState(
            accruals=pl.concat([self.accruals.filter(before), new_accruals]),
            members=member_rows.sort("segment_id", "customer_id"),
            manual_events=compact_manual_events(events, point),
            triggered=trim_entrants(pl.concat([self.triggered.filter(before), new_triggered]), day, retention),
            outbox=outbox_all.filter(keep_outbox),
            pending=waiting.unique(
                ["campaign_id", "customer_id", "occasion", "node"], keep="last", maintain_order=True
            ),
            meta=pl.DataFrame({"as_of": [day]}, schema=STATE_SCHEMAS["meta"]),
            features=features or FeatureCarry(),
        )


def manual_members_at(events: pl.DataFrame, as_of: AsOf) -> dict[str, pl.DataFrame]:
    """Members of campaign-kept segments at D's cutoff: each customer's latest add/remove before it."""
    latest = (
        events.filter(pl.col("ts") < as_of.cutoff_literal)
        .sort("ts", "event_id")
        .group_by("segment_id", "customer_id")
        .agg(pl.col("action").last())
        .filter(pl.col("action") == "add")
    )
    return {
        str(sid): group.select("customer_id").sort("customer_id")
        for (sid,), group in latest.partition_by("segment_id", as_dict=True).items()
    }


def compact_manual_events(events: pl.DataFrame, point: AsOf) -> pl.DataFrame:
    """Keep per (segment, customer) the latest event before the start of D, and every later one.

    D+1 asks for members at the start of D and at the start of D+1; both answers only depend on
    these rows. Event ids are unique, so a re-run replacing D's events cannot double them.
    """
    events = events.unique("event_id", keep="last", maintain_order=True)
    old = events.filter(pl.col("ts") < point.start_literal)
    latest_old = old.sort("ts", "event_id").group_by("segment_id", "customer_id", maintain_order=True).last()
    recent = events.filter(pl.col("ts") >= point.start_literal)
    return pl.concat([_conform(latest_old, MANUAL_EVENT_SCHEMA), recent]).sort("ts", "event_id")
