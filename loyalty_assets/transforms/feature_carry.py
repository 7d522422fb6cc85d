"""The daily run's features from a carried per-customer state: D's state is D−1's plus D's rows.

`transforms/features.compute_features` aggregates all history every day, so a day's cost followed
the length of history. The daily asset instead carries, in `loyalty_state`, the feature states of
`transforms/feature_state` (purchases with their windows and category/product keys; bonus flows,
message events and site visits as windowed per-day sums) and advances them with the rows that
entered the validated source store on D. What no state covers (the profile, attributes,
favourites, `customer.<column>`) is computed from D's frames as before: those tables are
per-customer, not history. The bonus lots the balance features and the expiry triggers read are
carried too (`carried_lots`: D−1's lots advanced by D's entries, `ledger.carry_lots`).

When the carried state cannot be advanced (the first run, a gap, another catalog or category tree,
specs whose windows changed), it is rebuilt from the history as of D, once; the features are the
same either way (tests/test_feature_state.py proves state = full recomputation feature by feature,
tests/test_feature_carry.py the carried features against `compute_features`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, timedelta

import polars as pl

from loyalty_assets.sources.frames import AsOf, SourceFrames
from loyalty_assets.transforms.feature_state import (
    EVENT_FIELDS,
    PURCHASE_FIELDS,
    EventState,
    PurchaseState,
    StaleState,
    advance,
    advance_events,
    build_state,
    empty_event_state,
    event_features,
    ledger_rows,
    purchase_features,
)
from loyalty_assets.transforms.features import FeatureSpec, compute_features
from loyalty_assets.transforms.ledger import build_lots, carry_lots, ledger_entries

#: Frames of the carried state inside `loyalty_state` are named `features.<family>.<part>`.
PREFIX = "features."
#: The source table each event family reads.
FAMILY_TABLE = {"bonuses": "bonus_transactions", "communications": "communications", "site_visits": "site_visits"}
_META_SCHEMA: dict[str, pl.DataType] = {
    "family": pl.String(),
    "day": pl.Date(),
    "fingerprint": pl.String(),
    "keys": pl.String(),
    "signature": pl.String(),
}
_SORT = ("customer_id", "_day", "_exp")


def carried(spec: FeatureSpec) -> bool:
    """Whether a carried state serves `spec` (the rest is computed from D's frames)."""
    return spec.field in PURCHASE_FIELDS or any(spec.field in f for f in EVENT_FIELDS.values())


def signature(specs: Iterable[FeatureSpec], family: str) -> str:
    """What a family's state was built for: its specs' columns (windows included, which the
    states' own fingerprints leave out: a widened window needs days a narrower one settled)."""
    fields = PURCHASE_FIELDS if family == "purchases" else EVENT_FIELDS[family]
    columns = sorted({s.column for s in specs if s.field in fields})
    return hashlib.sha256("|".join(columns).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FeatureCarry:
    """The feature states as of one date, by family (`purchases` or an `EVENT_FIELDS` family)."""

    purchases: PurchaseState | None = None
    events: Mapping[str, EventState] = field(default_factory=dict)
    signatures: Mapping[str, str] = field(default_factory=dict)
    #: the bonus lots at the cutoff of `lots_day` as the day's rules saw them (before that day's own
    #: accruals), without the lots with nothing remaining; None when no rule reads lots
    lots: pl.DataFrame | None = None
    lots_day: date | None = None

    def to_frames(self) -> dict[str, pl.DataFrame]:
        """Frames for `loyalty_state`, rows in a fixed order (a re-run stores the same files)."""
        out: dict[str, pl.DataFrame] = {}
        meta: list[dict[str, object]] = []
        if self.purchases is not None:
            p = self.purchases
            out |= {f"{PREFIX}purchases.daily": p.daily, f"{PREFIX}purchases.settled": p.settled}
            meta.append(_meta("purchases", p.day, p.fingerprint, json.dumps(p.keys), self.signatures["purchases"]))
        for family, st in sorted(self.events.items()):
            out |= {
                f"{PREFIX}{family}.daily": st.daily,
                f"{PREFIX}{family}.settled": st.settled,
                # read by `bonuses_expiring` only, which the carried lots answer (`carried`): not kept
                f"{PREFIX}{family}.expiring": st.expiring.clear(),
            }
            meta.append(_meta(family, st.day, st.fingerprint, "", self.signatures[family]))
        if self.lots is not None and self.lots_day is not None:
            out[f"{PREFIX}lots.lots"] = self.lots.filter(pl.col("remaining") != 0)
            meta.append(_meta("lots", self.lots_day, "", "", ""))
        out = {name: frame.sort([c for c in _SORT if c in frame.columns]) for name, frame in out.items()}
        out[f"{PREFIX}meta"] = pl.DataFrame(meta, schema=_META_SCHEMA)
        return out

    @classmethod
    def from_frames(cls, frames: Mapping[str, pl.DataFrame]) -> FeatureCarry:
        """Read back `to_frames` (an older state without these frames: nothing carried)."""
        meta = frames.get(f"{PREFIX}meta")
        if meta is None:
            return cls()
        purchases, events, signatures, lots, lots_day = None, {}, {}, None, None
        for row in meta.iter_rows(named=True):
            family = str(row["family"])

            def part(name: str, family: str = family) -> pl.DataFrame:
                return frames[f"{PREFIX}{family}.{name}"]

            if family == "lots":
                lots, lots_day = part("lots"), row["day"]
                continue
            signatures[family] = str(row["signature"])
            if family == "purchases":
                keys = tuple(tuple(k) for k in json.loads(row["keys"]))
                purchases = PurchaseState(row["day"], keys, row["fingerprint"], part("daily"), part("settled"))
            else:
                events[family] = EventState(
                    row["day"], family, row["fingerprint"], part("daily"), part("settled"), part("expiring")
                )
        return cls(purchases, events, signatures, lots, lots_day)


def _meta(family: str, day: date, fingerprint: str, keys: str, sig: str) -> dict[str, object]:
    return {"family": family, "day": day, "fingerprint": fingerprint, "keys": keys, "signature": sig}


@dataclass(frozen=True)
class DayRows:
    """Where a day's carried features get their rows, by source table (`customers`, `checks`,
    `check_items`, `bonus_transactions`, `communications`, `site_visits`).

    `entered`: the rows that entered the validated sources on D (late rows included, on their own
    day). `history`: every row visible as of D, for a rebuild; `history_of`: the same for some
    customers only. `own_entered` / `own_history`: this project's own accruals that became visible
    on D / all visible as of D (`DayState`)."""

    entered: Callable[[str], pl.DataFrame]
    history: Callable[[str], pl.DataFrame]
    history_of: Callable[[str, pl.Series], pl.DataFrame]
    own_entered: pl.DataFrame
    own_history: pl.DataFrame


def _families(specs: list[FeatureSpec]) -> list[str]:
    """The families with at least one spec, purchases first."""
    found = ["purchases"] if any(s.field in PURCHASE_FIELDS for s in specs) else []
    return found + [f for f in sorted(EVENT_FIELDS) if any(s.field in EVENT_FIELDS[f] for s in specs)]


def advance_carry(
    previous: FeatureCarry,
    point: AsOf,
    specs: Iterable[FeatureSpec],
    rows: DayRows,
    *,
    customers: pl.DataFrame,
    categories: pl.DataFrame,
) -> tuple[FeatureCarry, dict[str, str]]:
    """The feature states as of D, and for each family rebuilt from history the reason why.

    A family's state advances when it is as of D−1 and was built for these specs and this category
    tree; otherwise it is rebuilt from `rows.history` (the first run, a gap, a catalog change).
    """
    day = point.date
    specs = [s for s in specs if carried(s)]
    common = {"customers": customers, "categories": categories, "specs": specs, "program_tz": point.program_tz}
    purchases, events, signatures, rebuilt = None, {}, {}, {}
    for family in _families(specs):
        signatures[family] = signature(specs, family)
        fresh = previous.signatures.get(family) == signatures[family]
        prior: PurchaseState | EventState | None = (
            previous.purchases if family == "purchases" else previous.events.get(family)
        )
        if prior is None or not fresh or prior.day != day - timedelta(days=1):
            rebuilt[family] = _why(prior.day if prior else None, fresh, day)
        else:
            try:
                if isinstance(prior, PurchaseState):
                    purchases = advance(prior, day, rows.entered("checks"), rows.entered("check_items"), **common)  # type: ignore[arg-type]
                else:
                    got = rows.entered(FAMILY_TABLE[family])
                    got = ledger_rows(got, _own_entered(rows)) if family == "bonuses" else got
                    events[family] = advance_events(prior, day, got, **common)  # type: ignore[arg-type]
                continue
            except StaleState as exc:
                rebuilt[family] = str(exc)
        if family == "purchases":
            purchases = build_state(day, rows.history("checks"), rows.history("check_items"), **common)  # type: ignore[arg-type]
        else:
            every = rows.history(FAMILY_TABLE[family])
            every = ledger_rows(every, rows.own_history) if family == "bonuses" else every
            start = empty_event_state(family, day - timedelta(days=1), specs, categories)
            events[family] = advance_events(start, day, every, **common)  # type: ignore[arg-type]
    return FeatureCarry(purchases, events, signatures), rebuilt


def carried_lots(previous: FeatureCarry, point: AsOf, rows: DayRows) -> tuple[pl.DataFrame, str | None]:
    """The bonus lots at D's cutoff, as `build_lots` over the whole ledger and the own accruals
    visible at D gives them, and why they were rebuilt from history (None: carried from D−1).

    From D−1's carried lots: the entries that became visible on D advance them, and customers with
    an entry stamped before D−1's cutoff are rebuilt from their own history (`carry_lots`)."""
    yesterday = AsOf(point.date - timedelta(days=1), point.program_tz)
    if previous.lots is None or previous.lots_day != yesterday.date:
        held = previous.lots_day
        why = "no carried lots (first run)" if held is None else f"the carried lots are as of {held.isoformat()}"
        return build_lots(ledger_entries(rows.history("bonus_transactions"), rows.own_history), point.cutoff), why

    def history_of(ids: pl.Series) -> pl.DataFrame:
        own = rows.own_history.filter(pl.col("customer_id").is_in(ids.implode()))
        return ledger_entries(rows.history_of("bonus_transactions", ids), own)

    entries = ledger_entries(rows.entered("bonus_transactions"), _own_entered(rows))
    return carry_lots(previous.lots, yesterday.cutoff, entries, history_of, point.cutoff), None


def _own_entered(rows: DayRows) -> pl.DataFrame:
    """Own accruals that count from D on: those that became visible on D, and earlier ones of the
    customers who registered on D (until then no feature row counted them)."""
    new_customers = rows.entered("customers").select("customer_id")
    if new_customers.is_empty():
        return rows.own_entered
    theirs = rows.own_history.join(new_customers, on="customer_id", how="semi")
    return pl.concat([rows.own_entered, theirs.join(rows.own_entered, on="accrual_id", how="anti")])


def _why(held: date | None, fresh: bool, day: date) -> str:
    if held is None:
        return "no carried state (first run)"
    if not fresh:
        return "the catalog's conditions for it changed"
    return f"the carried state is as of {held.isoformat()}, not {(day - timedelta(days=1)).isoformat()}"


def carried_features(
    frames: SourceFrames, point: AsOf, specs: Iterable[FeatureSpec], carry: FeatureCarry
) -> pl.DataFrame:
    """The features frame of D, equal to `compute_features(full history frames, point, specs)`:
    the carried families read from `carry` (as of D), the rest computed from `frames`."""
    specs = sorted(set(specs), key=lambda s: s.column)
    rest = [s for s in specs if not carried(s)]
    base = compute_features(frames, point, rest)
    ids = base.get_column("customer_id")
    parts = []
    if carry.purchases is not None:
        parts.append(purchase_features(carry.purchases, ids, specs))
    for st in carry.events.values():
        parts.append(event_features(st, ids, specs, frames.categories))
    for part in parts:
        base = base.join(part, on="customer_id", how="left", maintain_order="left")
    # the full path's column order and types (a plan over no rows: milliseconds)
    shape = compute_features(_no_rows(frames), point, specs).schema
    return base.select([pl.col(c).cast(t) for c, t in shape.items()])


def _no_rows(frames: SourceFrames) -> SourceFrames:
    """The same frames without rows (the category tree kept: specs may name categories)."""
    values = {f.name: getattr(frames, f.name).clear() for f in fields(frames) if f.init}
    return SourceFrames(**{**values, "categories": frames.categories})
