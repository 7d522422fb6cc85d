"""`run_journeys`: tokens moving node by node through a chain, across days (scenario 6, seed 003).

The aquarium-fish chain of the seed: congratulate at once → wait 3 hours → care tips → wait 1 day
until 10:00 → an interesting fact. Program zone Moscow (UTC+3): run D's cutoff is D+1 00:00 MSK =
D 21:00 UTC. Customer 1 has no zone (Moscow), customer 2 lives in Vladivostok (UTC+10).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import polars as pl
from polars.testing import assert_frame_equal

from loyalty_assets.config.campaigns import Campaign
from loyalty_assets.sources.frames import AsOf
from loyalty_assets.transforms.features import compute_features
from loyalty_assets.transforms.journey import JourneyDay, compile_chain, run_journeys, start_tokens
from tests.engine_fixtures import VLAT, campaign, customers, frames, rows_of, tokens, ts

D = date(2025, 6, 10)
EMAIL = {"subject": "Hi", "template": "fish.html"}

FISH_CHAIN: list[dict[str, Any]] = [
    {"type": "send_email", "id": "congratulate", **EMAIL},  # node 0
    {"type": "wait", "id": "wait_tips", "hours": 3},  # node 1
    {"type": "send_email", "id": "tips", **EMAIL},  # node 2
    {"type": "wait", "id": "wait_fact", "days": 1, "until": "10:00"},  # node 3
    {"type": "send_email", "id": "fact", **EMAIL},  # node 4
]


def fish_campaign() -> Campaign:
    """The seed's chain, started by a purchase in `pets` (aquarium fish included), once per customer."""
    return campaign(
        FISH_CHAIN,
        id="aquarium_fish_chain",
        trigger={"type": "event", "event": "purchase", "category": "pets"},
        settings={"once_per_customer": True},
    )


def features_for(day: date, *rows: dict[str, Any]) -> pl.DataFrame:
    """The features frame of `day` for the given customers (profile columns only)."""
    return compute_features(frames(customers(*rows)), AsOf(day))


def run(c: Campaign, toks: pl.DataFrame, day: date, features: pl.DataFrame, **members: pl.DataFrame) -> JourneyDay:
    """One day's run of `c` for `toks`."""
    return run_journeys(c, toks, as_of=AsOf(day), features=features, members=members)


FISH_PEOPLE = ({"customer_id": 1}, {"customer_id": 2, "timezone": VLAT})


def entered_on_d() -> pl.DataFrame:
    """Tokens of customers 1 and 2 entering at 2025-06-10 12:00 UTC; customer 3 is in the control group."""
    entrants = pl.DataFrame(
        {
            "customer_id": [1, 2, 3],
            "occasion": ["purchase:c1", "purchase:c2", "purchase:c3"],
            "event_date": [D, D, D],
            "triggered_at": [ts("2025-06-10T12:00")] * 3,
            "variant": [None, None, None],
            "is_control": [False, False, True],
        },
        schema_overrides={"variant": pl.String()},
    )
    first, _ = compile_chain(fish_campaign().steps)
    return start_tokens(entrants, first)


def test_compile_chain_paths_of_branches() -> None:
    c = campaign(
        [
            {
                "type": "filter",
                "id": "f",
                "filter": {"field": "gender", "op": "eq", "value": "F"},
                "else": [{"type": "send_sms", "id": "men", "text": "x"}],
            },
            {
                "type": "ab_split",
                "id": "ab",
                "variants": [
                    {"name": "a", "steps": [{"type": "send_sms", "id": "a1", "text": "x"}]},
                    {"name": "b", "steps": []},
                ],
            },
        ]
    )
    first, nodes = compile_chain(c.steps)
    assert first == "0"
    assert sorted(nodes) == ["0", "0/else/0", "1", "1/a/0"]
    assert nodes["0"].next == "1" and nodes["0"].otherwise == "0/else/0"
    assert nodes["0/else/0"].next == ""  # the else branch ends the journey
    assert dict(nodes["1"].variants) == {"a": "1/a/0", "b": ""}


def test_start_tokens_skip_control_and_start_at_trigger_instant() -> None:
    toks = entered_on_d()
    assert rows_of(toks, "customer_id", "node", "at") == [
        (1, "0", ts("2025-06-10T12:00")),
        (2, "0", ts("2025-06-10T12:00")),
    ]


def test_first_day_performs_two_actions_at_exact_instants() -> None:
    day = run(fish_campaign(), entered_on_d(), D, features_for(D, *FISH_PEOPLE))
    # congratulate at entry (12:00 UTC); tips 3 hours later (15:00 UTC = 18:00 MSK, before the 21:00 UTC cutoff)
    assert rows_of(day.actions, "customer_id", "step_id", "at") == [
        (1, "congratulate", ts("2025-06-10T12:00")),
        (2, "congratulate", ts("2025-06-10T12:00")),
        (1, "tips", ts("2025-06-10T15:00")),
        (2, "tips", ts("2025-06-10T15:00")),
    ]
    assert set(day.actions["step_type"]) == {"send_email"}
    # Both wait past the cutoff at the `fact` step (node 4); nobody has finished.
    assert rows_of(day.pending, "customer_id", "node") == [(1, "4"), (2, "4")]
    assert day.pending["at"].min() >= AsOf(D).cutoff
    assert day.exits.is_empty()
    assert day.counts == {"step:congratulate": 2, "step:wait_tips": 2, "step:tips": 2, "step:wait_fact": 2}


def test_vladivostok_customer_waits_for_ten_oclock_in_her_own_zone() -> None:
    day = run(fish_campaign(), entered_on_d(), D, features_for(D, *FISH_PEOPLE))
    # tips at 15:00 UTC = 01:00 VLAT on 11 June; one day later is 12 June 01:00 VLAT; the next 10:00 VLAT
    # after that is 12 June 10:00 VLAT = 12 June 00:00 UTC.
    pending = day.pending.filter(pl.col("customer_id") == 2)
    assert pending["at"].to_list() == [ts("2025-06-12T00:00")]


def test_wait_one_day_until_ten_is_the_next_local_morning() -> None:
    first = run(fish_campaign(), entered_on_d(), D, features_for(D, *FISH_PEOPLE))
    mine = first.pending.filter(pl.col("customer_id") == 1)
    # tips at 15:00 UTC = 18:00 MSK on 10 June; "1 day, at 10:00" = 11 June 10:00 MSK = 11 June 07:00 UTC
    assert mine["at"].to_list() == [ts("2025-06-11T07:00")]
    second = run(fish_campaign(), mine, date(2025, 6, 11), features_for(date(2025, 6, 11), *FISH_PEOPLE))
    assert rows_of(second.actions, "customer_id", "step_id", "at") == [(1, "fact", ts("2025-06-11T07:00"))]


def test_pending_token_fed_into_its_due_day_performs_the_fact() -> None:
    fish = fish_campaign()
    waiting = run(fish, entered_on_d(), D, features_for(D, *FISH_PEOPLE)).pending
    vlat = waiting.filter(pl.col("customer_id") == 2)  # due 12 June 00:00 UTC = 12 June 03:00 MSK

    # On 11 June (cutoff 11 June 21:00 UTC) the token is not due yet: pending, untouched.
    june_11 = run(fish, vlat, date(2025, 6, 11), features_for(date(2025, 6, 11), *FISH_PEOPLE))
    assert june_11.actions.is_empty()
    assert_frame_equal(june_11.pending, vlat)
    assert june_11.counts == {}

    # On 12 June it is performed at exactly its instant and the journey completes.
    june_12 = run(fish, vlat, date(2025, 6, 12), features_for(date(2025, 6, 12), *FISH_PEOPLE))
    assert rows_of(june_12.actions, "customer_id", "occasion", "step_id", "at") == [
        (2, "purchase:c2", "fact", ts("2025-06-12T00:00"))
    ]
    assert june_12.pending.is_empty()
    assert rows_of(june_12.exits, "customer_id", "step_id", "reason") == [(2, "", "completed")]


def test_token_due_exactly_at_cutoff_is_pending() -> None:
    # cutoff of 10 June = 11 June 00:00 MSK = 10 June 21:00 UTC; "visible when strictly before"
    toks = tokens({"customer_id": 1, "node": "4", "at": ts("2025-06-10T21:00")})
    day = run(fish_campaign(), toks, D, features_for(D, *FISH_PEOPLE))
    assert day.actions.is_empty()
    assert_frame_equal(day.pending, toks)
    one_earlier = tokens({"customer_id": 1, "node": "4", "at": ts("2025-06-10T20:59")})
    assert run(fish_campaign(), one_earlier, D, features_for(D, *FISH_PEOPLE)).actions.height == 1


# --- filter steps -------------------------------------------------------------------------------

WOMEN = {"field": "gender", "op": "eq", "value": "F"}
PEOPLE = ({"customer_id": 1, "gender": "F"}, {"customer_id": 2, "gender": "M"}, {"customer_id": 3})


def three_tokens() -> pl.DataFrame:
    """Customers 1 (F), 2 (M) and 3 (no gender) at the first step at 09:00 UTC."""
    return tokens(*({"customer_id": i, "node": "0", "at": ts("2025-06-10T09:00")} for i in (1, 2, 3)))


def test_filter_with_else_routes_yes_and_no() -> None:
    c = campaign(
        [
            {
                "type": "filter",
                "id": "women",
                "filter": WOMEN,
                "else": [{"type": "send_sms", "id": "to_others", "text": "Hello"}],
            },
            {"type": "send_email", "id": "to_women", **EMAIL},
        ]
    )
    day = run(c, three_tokens(), D, features_for(D, *PEOPLE))
    assert day.counts["branch:women:yes"] == 1
    assert day.counts["branch:women:no"] == 2  # M and unknown gender (null never matches)
    assert rows_of(day.actions.sort("customer_id"), "customer_id", "step_id") == [
        (1, "to_women"),
        (2, "to_others"),
        (3, "to_others"),
    ]
    # every journey ends normally: the else branch does not fall through to `to_women`
    assert rows_of(day.exits, "customer_id", "reason") == [(1, "completed"), (2, "completed"), (3, "completed")]


def test_filter_without_else_ends_non_matching_journeys() -> None:
    c = campaign(
        [{"type": "filter", "id": "women", "filter": WOMEN}, {"type": "send_email", "id": "to_women", **EMAIL}]
    )
    day = run(c, three_tokens(), D, features_for(D, *PEOPLE))
    assert rows_of(day.actions, "customer_id", "step_id") == [(1, "to_women")]
    assert rows_of(day.exits, "customer_id", "step_id", "reason", "at") == [
        (1, "", "completed", ts("2025-06-10T09:00")),
        (2, "women", "filtered_out", ts("2025-06-10T09:00")),
        (3, "women", "filtered_out", ts("2025-06-10T09:00")),
    ]


def test_segment_filter_uses_members_of_the_day() -> None:
    c = campaign([{"type": "filter", "id": "vip_only", "segment": "vip"}, {"type": "send_email", "id": "m", **EMAIL}])
    members = pl.DataFrame({"customer_id": [2, 3]})
    day = run(c, three_tokens(), D, features_for(D, *PEOPLE), vip=members)
    assert day.actions["customer_id"].to_list() == [2, 3]
    # no members frame for the segment at all: nobody passes
    nobody = run(c, three_tokens(), D, features_for(D, *PEOPLE))
    assert nobody.actions.is_empty() and nobody.counts["branch:vip_only:no"] == 3


# --- A/B ----------------------------------------------------------------------------------------


def test_ab_split_routes_by_the_token_variant() -> None:
    c = campaign(
        [
            {
                "type": "ab_split",
                "id": "channel_test",
                "variants": [
                    {"name": "by_email", "steps": [{"type": "send_email", "id": "mail", **EMAIL}]},
                    {"name": "by_sms", "steps": [{"type": "send_sms", "id": "sms", "text": "Hi"}]},
                ],
            },
        ]
    )
    toks = tokens(
        {"customer_id": 1, "node": "0", "at": ts("2025-06-10T09:00"), "variant": "by_email"},
        {"customer_id": 2, "node": "0", "at": ts("2025-06-10T09:00"), "variant": "by_sms"},
        {"customer_id": 3, "node": "0", "at": ts("2025-06-10T09:00"), "variant": "by_sms"},
        {"customer_id": 4, "node": "0", "at": ts("2025-06-10T09:00"), "variant": None},
    )
    day = run(c, toks, D, features_for(D, *PEOPLE, {"customer_id": 4}))
    assert rows_of(day.actions.sort("customer_id"), "customer_id", "step_id", "variant") == [
        (1, "mail", "by_email"),
        (2, "sms", "by_sms"),
        (3, "sms", "by_sms"),
    ]
    assert day.counts["variant:by_email"] == 1 and day.counts["variant:by_sms"] == 2
    assert rows_of(day.exits.filter(pl.col("reason") != "completed"), "customer_id", "step_id", "reason") == [
        (4, "channel_test", "no_variant")
    ]
