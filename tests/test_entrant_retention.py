"""The state keeps only the entrants later entry rules can use, and entry decisions do not change.

`trim_entrants` drops entrants older than the re-entry window (at least `OCCASION_MARGIN_DAYS`),
keeping one row per customer for once-per-customer campaigns and everything for adaptive A/B splits.
The property: day after day on random trigger hits, `select_entrants` with the trimmed state decides
exactly as with the whole history (entrants and every count), for random re-entry windows and
once-per-customer settings.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty_assets.transforms.day_state import (
    OCCASION_MARGIN_DAYS,
    STATE_SCHEMAS,
    EntrantRetention,
    trim_entrants,
)
from loyalty_assets.transforms.entry import select_entrants
from tests.engine_fixtures import campaign, fired, ts

EMAIL = {"type": "send_email", "id": "mail", "subject": "Hi", "template": "x.html"}
START = date(2025, 1, 1)
STATE = STATE_SCHEMAS["triggered"]


def rows(*entries: tuple[str, int, str, date]) -> pl.DataFrame:
    return pl.DataFrame([(c, cust, occ, d, None, False) for c, cust, occ, d in entries], schema=STATE, orient="row")


def test_trim_by_hand() -> None:
    d = date(2025, 6, 30)
    old, recent = d - timedelta(days=OCCASION_MARGIN_DAYS + 1), d - timedelta(days=OCCASION_MARGIN_DAYS)
    state = rows(
        ("plain", 1, "a", old),  # dropped: older than the margin
        ("plain", 1, "b", recent),  # kept: within it
        ("reentry", 2, "c", d - timedelta(days=59)),  # kept: re-entry 60 days
        ("reentry", 2, "d", d - timedelta(days=61)),  # dropped
        ("once", 3, "e", date(2024, 1, 5)),  # kept: the customer's first entry, forever
        ("once", 3, "f", date(2024, 3, 5)),  # dropped: a later old entry adds nothing
        ("adaptive", 4, "g", date(2024, 1, 5)),  # kept: the split compares every entrant
        ("gone", 5, "h", old),  # a campaign no longer in the catalog: the margin
    )
    retention = {
        "plain": EntrantRetention.of(None, False, adaptive=False),
        "reentry": EntrantRetention.of(60, False, adaptive=False),
        "once": EntrantRetention.of(None, True, adaptive=False),
        "adaptive": EntrantRetention.of(None, False, adaptive=True),
    }
    kept = trim_entrants(state, d, retention)
    assert kept["occasion"].to_list() == ["b", "c", "e", "g"]
    assert trim_entrants(state, d, None).equals(state)


day_hits = st.lists(st.lists(st.integers(1, 6), max_size=4), min_size=5, max_size=70)


@settings(max_examples=60, deadline=None)
@given(hits=day_hits, reentry=st.none() | st.integers(1, 45), once=st.booleans(), gaps=st.integers(0, 40))
def test_trimmed_history_decides_like_the_whole_history(
    hits: list[list[int]], reentry: int | None, once: bool, gaps: int
) -> None:
    settings_ = {"reentry_days": reentry, "once_per_customer": once}
    c = campaign([EMAIL], settings={k: v for k, v in settings_.items() if v})
    retention = {"test": EntrantRetention.of(reentry, once, adaptive=False)}
    full = rows()
    trimmed = rows()
    for i, customers in enumerate(hits):
        day = START + timedelta(days=i * (1 + gaps % 3))  # some runs skip days
        hit = fired(
            *(
                {
                    "customer_id": cust,
                    "occasion": f"purchase:{day.isoformat()}:{k}",  # occasions bound to their date
                    "event_date": day,
                    "triggered_at": ts(f"{day.isoformat()}T09:0{k % 10}"),
                }
                for k, cust in enumerate(customers)
            )
        )
        decided = []
        for state in (full, trimmed):
            past = state.filter(pl.col("partition_date") < day).drop("campaign_id")
            decided.append(select_entrants(c, hit, run_date=day, audience=None, history=past))
        (a, counts_a), (b, counts_b) = decided
        assert a.equals(b) and counts_a == counts_b, day
        new = a.select(
            pl.lit("test").alias("campaign_id"),
            "customer_id",
            "occasion",
            pl.lit(day).alias("partition_date"),
            "variant",
            "is_control",
        ).cast(STATE)  # type: ignore[arg-type]
        full = pl.concat([full, new])
        trimmed = trim_entrants(pl.concat([trimmed, new]), day, retention)
    assert trimmed.height <= full.height
