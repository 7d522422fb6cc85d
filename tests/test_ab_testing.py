"""A/B splits (scenario 8, seed 000): stable weighted variants and the adaptive split's winner."""

from __future__ import annotations

from datetime import date
from typing import Any

import polars as pl
import pytest

from loyalty_assets.config.campaigns import ABSplit, Campaign
from loyalty_assets.transforms.ab_testing import adaptive_decision, assign_variants
from tests.engine_fixtures import campaign, ts

IDS = pl.Series("customer_id", range(1, 4001), dtype=pl.Int64)


def split_campaign(weights: tuple[int, int] = (1, 1), adaptive: dict[str, Any] | None = None) -> Campaign:
    """A campaign whose chain is one split: `by_email` (weight a) vs `by_sms` (weight b)."""
    split: dict[str, Any] = {
        "type": "ab_split",
        "id": "channel_test",
        "variants": [
            {
                "name": "by_email",
                "weight": weights[0],
                "steps": [{"type": "send_email", "id": "mail", "subject": "Hi", "template": "x.html"}],
            },
            {"name": "by_sms", "weight": weights[1], "steps": [{"type": "send_sms", "id": "sms", "text": "Hi"}]},
        ],
    }
    if adaptive is not None:
        split["adaptive"] = adaptive
    return campaign([split], id="birthday_ab")


def the_split(c: Campaign) -> ABSplit:
    """The campaign's split (there is exactly one)."""
    split = c.ab_split()
    assert split is not None
    return split


def shares(variants: pl.Series) -> dict[str, int]:
    """How many customers got each variant."""
    return dict(variants.value_counts().iter_rows())


def test_weights_one_to_three_split_about_25_75() -> None:
    c = split_campaign((1, 3))
    variants = assign_variants(the_split(c), c.id, IDS)
    counts = shares(variants)
    # expected 1000 / 3000 of 4000; sd = sqrt(4000 × 0.25 × 0.75) ≈ 27, so ±100 is > 3.5 sd
    assert set(counts) == {"by_email", "by_sms"}
    assert 900 <= counts["by_email"] <= 1100
    assert counts["by_email"] + counts["by_sms"] == 4000


def test_variants_are_stable_per_customer_and_salted_by_campaign() -> None:
    c = split_campaign((1, 3))
    first = assign_variants(the_split(c), c.id, IDS)
    again = assign_variants(the_split(c), c.id, IDS)
    assert first.to_list() == again.to_list()
    # the order of the input does not matter: a customer's variant depends only on (campaign, id)
    reversed_ids = assign_variants(the_split(c), c.id, IDS.reverse())
    assert reversed_ids.reverse().to_list() == first.to_list()
    # another campaign draws differently
    other = assign_variants(the_split(c), "another_campaign", IDS)
    assert other.to_list() != first.to_list()


def test_adaptive_split_tests_evenly_whatever_the_weights() -> None:
    c = split_campaign((1, 3), adaptive={"first_n": 4, "decide_after_days": 3, "metric": "opens"})
    counts = shares(assign_variants(the_split(c), c.id, IDS))
    # even split: 2000 each, sd ≈ 32
    assert 1880 <= counts["by_email"] <= 2120


def test_a_decided_winner_goes_to_everyone() -> None:
    c = split_campaign((1, 3))
    assert set(assign_variants(the_split(c), c.id, IDS, winner="by_sms")) == {"by_sms"}


# --- adaptive decision ------------------------------------------------------------------------------

ADAPTIVE = {"first_n": 4, "decide_after_days": 3, "metric": "opens"}

# Test entrants 1..4 (the 4th on 3 June → decision on 3 + 3 = 6 June); 5 came later; 9 is control.
HISTORY = pl.DataFrame(
    {
        "customer_id": [1, 2, 3, 4, 5, 9],
        "variant": ["by_email", "by_sms", "by_email", "by_sms", "by_email", None],
        "partition_date": [date(2025, 6, d) for d in (1, 1, 2, 3, 4, 1)],
        "is_control": [False, False, False, False, False, True],
    }
)
OUTBOX = pl.DataFrame(
    {
        "message_id": ["m1", "m2", "m3", "m4", "m5"],
        "customer_id": [1, 2, 3, 4, 5],
        "variant": ["by_email", "by_sms", "by_email", "by_sms", "by_email"],
        "send_at": [ts(f"2025-06-0{d}T07:00") for d in (1, 1, 2, 3, 4)],
    }
)


def opened(*pairs: tuple[str, int]) -> pl.DataFrame:
    """`opened` events of (message, customer)."""
    return pl.DataFrame(
        {
            "message_id": [m for m, _ in pairs],
            "customer_id": [c for _, c in pairs],
            "event": ["opened"] * len(pairs),
            "event_at": [ts("2025-06-04T10:00")] * len(pairs),
        }
    )


# by_email: 1 of its 2 test customers opened (m1) → 0.5; by_sms: both (m2, m4 twice) → 1.0.
# m5 (customer 5, by_email) is outside the test group: counting it would make by_email 2/2 and win the tie.
OPENS = opened(("m1", 1), ("m2", 2), ("m4", 4), ("m4", 4), ("m5", 5))


def decide(day: date, history: pl.DataFrame = HISTORY, **kwargs: Any) -> Any:
    """The adaptive decision on `day` from the history strictly before it (as `campaign_entrants` passes)."""
    c = split_campaign(adaptive={**ADAPTIVE, **kwargs})
    return adaptive_decision(
        the_split(c),
        day,
        history=history.filter(pl.col("partition_date") < day),
        outbox=OUTBOX,
        communications=OPENS,
        checks=pl.DataFrame(schema={"customer_id": pl.Int64(), "ts": pl.Datetime("us", "UTC")}),
        attribution_days=7,
    )


def test_no_winner_before_first_n_test_entrants() -> None:
    decision = decide(date(2025, 6, 3))  # entrants of 1 and 2 June: 3 of 4 (control not counted)
    assert decision.winner is None
    assert decision.reason == "3 of 4 test entrants so far"


def test_no_winner_before_the_decision_date() -> None:
    decision = decide(date(2025, 6, 5))  # 4th test entrant on 3 June, decision on 6 June
    assert decision.winner is None
    assert "2025-06-06" in decision.reason


def test_a_lead_that_is_not_significant_keeps_splitting() -> None:
    decision = decide(date(2025, 6, 6))
    assert decision.rates == {"by_email": 0.5, "by_sms": 1.0}
    # 2 of 2 vs 1 of 2: Newcombe's 95% interval of the difference includes 0
    assert decision.winner is None
    assert decision.reason.startswith("keeps splitting: by_sms leads but not significantly at 95%")


def big_test_group(email_opens: int, sms_opens: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """40 test entrants on 1 June (odd ids by_email, even by_sms), one message each, and their opens."""
    ids = list(range(1, 41))
    variants = ["by_email" if i % 2 else "by_sms" for i in ids]
    history = pl.DataFrame(
        {"customer_id": ids, "variant": variants, "partition_date": [date(2025, 6, 1)] * 40, "is_control": [False] * 40}
    )
    outbox = pl.DataFrame(
        {
            "message_id": [f"m{i}" for i in ids],
            "customer_id": ids,
            "variant": variants,
            "send_at": [ts("2025-06-01T07:00")] * 40,
        }
    )
    openers = [i for i in ids if i % 2][:email_opens] + [i for i in ids if not i % 2][:sms_opens]
    return history, outbox, opened(*((f"m{i}", i) for i in openers))


@pytest.mark.parametrize(
    ("email_opens", "sms_opens", "confidence", "winner"),
    [
        (4, 16, 0.95, "by_sms"),  # 4/20 vs 16/20: difference 0.6, Newcombe 95% interval well above 0
        (8, 12, 0.95, None),  # 8/20 vs 12/20: interval includes 0 → keeps splitting
        (6, 13, 0.95, "by_sms"),  # 6/20 vs 13/20: Newcombe 95% interval (0.042, 0.579) excludes 0
        (6, 13, 0.99, None),  # … but not at 99% (-0.048, 0.625): the level is configurable
    ],
)
def test_winner_only_when_significant(email_opens: int, sms_opens: int, confidence: float, winner: str | None) -> None:
    history, outbox, opens = big_test_group(email_opens, sms_opens)
    split = the_split(split_campaign(adaptive={"first_n": 40, "decide_after_days": 0, "metric": "opens"}))
    decision = adaptive_decision(
        split,
        date(2025, 6, 2),
        history=history,
        outbox=outbox,
        communications=opens,
        checks=pl.DataFrame(schema={"customer_id": pl.Int64(), "ts": pl.Datetime("us", "UTC")}),
        attribution_days=7,
        confidence=confidence,
    )
    assert decision.rates == {"by_email": email_opens / 20, "by_sms": sms_opens / 20}
    assert decision.winner == winner
    assert ("keeps splitting" in decision.reason) == (winner is None)


def test_winner_by_attributed_checks() -> None:
    c = split_campaign(adaptive={**ADAPTIVE, "metric": "checks"})
    checks = pl.DataFrame(
        {
            "customer_id": [1, 3, 2],
            # 1: two days after m1 → attributed; 3: before m3 → not; 2: 7 days after m2 = the window's end → not
            "ts": [ts("2025-06-03T07:00"), ts("2025-06-02T06:59"), ts("2025-06-08T07:00")],
        }
    )
    decision = adaptive_decision(
        the_split(c),
        date(2025, 6, 6),
        history=HISTORY,
        outbox=OUTBOX,
        communications=OPENS,
        checks=checks,
        attribution_days=7,
    )
    assert decision.rates == {"by_email": 0.5, "by_sms": 0.0}
    assert decision.winner is None  # 1 of 2 vs 0 of 2: not significant at 95%
    assert "by_email leads" in decision.reason
