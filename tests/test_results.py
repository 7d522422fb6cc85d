"""Campaign results on the hand-made fixture of `tests/results_fixture.py`: every number by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from unittest import mock

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty_assets.config.campaigns import Campaign, GlobalControlGroup
from loyalty_assets.transforms.attribution import attribute_checks, measurement_windows, touches
from loyalty_assets.transforms.control_groups import global_control_members
from loyalty_assets.transforms.results import CampaignResults, campaign_results, programme_results
from loyalty_assets.transforms.uplift import (
    mean_difference,
    proportion_difference,
    sample_ratio_check,
    significant_winner,
)
from tests import results_fixture as fx

RULES = {"email": "opened", "push": "opened", "sms": "delivered", "viber": "delivered"}


def results(campaign: Campaign | None = None, **overrides: pl.DataFrame) -> CampaignResults:
    c = campaign or fx.demo_campaign()
    rules = c.settings.attribution_from.as_dict()
    frames = {
        "entrants": fx.entrants(),
        "outbox": fx.outbox(),
        "all_outbox": fx.outbox(),
        "accruals": fx.accruals(),
        "communications": fx.communications(),
        "checks": fx.checks(),
        "customers": fx.customers(),
        "ledger": fx.ledger(),
        **overrides,
    }
    return campaign_results(
        c,
        start=fx.DAY,
        end=fx.DAY,
        program_tz="Europe/Moscow",
        attribution_days={"demo": c.settings.attribution_days, "other": 7},
        attribution_rules={"demo": rules, "other": RULES},
        **frames,
    )


def figures(r: CampaignResults, scope: str, group: str, variant: str | None = None) -> dict[str, object]:
    row = r.groups.filter(
        (pl.col("scope") == scope)
        & (pl.col("group") == group)
        & (pl.col("variant").is_null() if variant is None else pl.col("variant") == variant)
    )
    assert row.height == 1
    return row.row(0, named=True)


def test_per_group_figures_by_hand() -> None:
    r = results()
    test = figures(r, "campaign", "test")
    # buyers in window: 1..8 (9 bought before the send, 10 exactly at send + 10 days: both outside)
    # revenue: 4 × 1000 + 4 × 500 + customer 1's second check 300 = 6300; 9 checks
    assert (test["customers"], test["buyers"], test["checks"]) == (20, 8, 9)
    assert test["conversion"] == pytest.approx(0.4)
    assert (test["revenue"], test["revenue_per_customer"], test["avg_check"]) == (
        Decimal("6300.00"),
        Decimal("315.00"),
        Decimal("700.00"),
    )
    control = figures(r, "campaign", "control")
    assert (control["customers"], control["buyers"], control["checks"]) == (10, 2, 2)
    assert (control["revenue"], control["revenue_per_customer"], control["avg_check"]) == (
        Decimal("1200.00"),
        Decimal("120.00"),
        Decimal("600.00"),
    )


def test_money_by_hand() -> None:
    r = results()
    # 6300 − 1200 × 20 / 10 = 3900; bonuses 20 × 100 = 2000; net 1900; one redemption linked by source
    assert r.money["incremental_revenue"] == Decimal("3900.00")
    assert r.money["bonus_accrued"] == Decimal("2000.00")
    assert r.money["bonus_redeemed"] == Decimal("40.00")
    assert r.money["net_incremental_revenue"] == Decimal("1900.00")
    # the interval is Welch's interval of revenue per customer × 20 test customers, minus the cost
    per_customer = mean_difference(
        [1300.0, 1000, 1000, 1000, 500, 500, 500, 500] + [0.0] * 12, [800.0, 400] + [0.0] * 8
    )
    assert per_customer is not None
    assert r.money["incremental_revenue_low"] == Decimal(str(round(per_customer.low * 20, 2)))
    assert r.money["net_incremental_revenue_high"] == Decimal(str(round(per_customer.high * 20, 2))) - Decimal(2000)


def test_attribution_by_hand() -> None:
    r = results()
    # claims of demo: c1, c1b (1 opened before), c2 (but `other` touched 2 later), c4 (once, though
    # 4 opened two emails), c5 (SMS delivered), c6. Not: c3 (opened after the check), c7/c8 (never opened).
    assert r.attributed == {
        "attributed_checks": 5,
        "attributed_revenue": Decimal("3300.00"),  # last touch: without c2
        "attributed_checks_overlapping": 6,
        "attributed_revenue_overlapping": Decimal("4300.00"),
        "shared_checks": 1,
    }


def test_attribution_from_the_send() -> None:
    r = results(fx.demo_campaign(attribution_from="sent"))
    # every message counts from its send: c1..c8 (c9 before the send, c10 at the window's end) = 9
    # checks; c2 is still last-touched by `other` (sent 06-11 08:00, opened 09:00: after demo's send)
    assert r.attributed["attributed_checks_overlapping"] == 9
    assert r.attributed["attributed_revenue_overlapping"] == Decimal("6300.00")
    assert r.attributed["attributed_revenue"] == Decimal("5300.00")


def test_one_message_per_campaign_is_credited() -> None:
    claims = attribute_checks(touches(fx.outbox(), fx.communications(), RULES), fx.checks(), {"demo": 10, "other": 7})
    c4 = claims.filter(pl.col("check_id") == "c4")
    assert c4.select("campaign_id", "message_id").rows() == [("demo", "m4b")]  # the later of its two opens
    c2 = claims.filter(pl.col("check_id") == "c2").sort("campaign_id")
    assert c2.select("campaign_id", "last_touch", "campaigns").rows() == [("demo", False, 2), ("other", True, 2)]


def test_differences_use_the_libraries() -> None:
    r = results()
    conv = r.differences.filter((pl.col("scope") == "campaign") & (pl.col("metric") == "conversion")).row(0, named=True)
    assert conv["difference"] == pytest.approx(0.2)
    # Newcombe's hybrid score interval from the two Wilson intervals (Newcombe 1998, method 10)
    from statsmodels.stats.proportion import proportion_confint

    l1, u1 = proportion_confint(8, 20, method="wilson")
    l2, u2 = proportion_confint(2, 10, method="wilson")
    low = 0.2 - ((0.4 - l1) ** 2 + (u2 - 0.2) ** 2) ** 0.5
    high = 0.2 + ((u1 - 0.4) ** 2 + (0.2 - l2) ** 2) ** 0.5
    assert (conv["ci_low"], conv["ci_high"]) == pytest.approx((low, high))
    assert conv["significant"] is False
    rpc = r.differences.filter(pl.col("metric") == "revenue_per_customer").row(0, named=True)
    from scipy.stats import ttest_ind

    reference = ttest_ind(
        [1300.0, 1000, 1000, 1000, 500, 500, 500, 500] + [0.0] * 12, [800.0, 400] + [0.0] * 8, equal_var=False
    )
    ci = reference.confidence_interval(0.95)
    assert rpc["difference"] == pytest.approx(195.0)
    assert (rpc["ci_low"], rpc["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert rpc["p_value"] == pytest.approx(reference.pvalue)


def test_newcombe_reference_value() -> None:
    # Newcombe (1998), Table II example (a): 56/70 − 48/80, method 10: 0.0524 to 0.3339
    interval = proportion_difference(56, 70, 48, 80)
    assert interval is not None
    assert (round(interval.low, 4), round(interval.high, 4)) == (0.0524, 0.3339)


def test_sample_ratio_mismatch() -> None:
    assert not sample_ratio_check(20, 10, Decimal("33.34")).mismatch
    skewed = sample_ratio_check(900, 20, Decimal(10))  # 2 % control where 10 % was configured
    assert skewed.mismatch and skewed.p_value is not None and skewed.p_value < 0.001
    # chi-square by hand: expected 828 / 92; (900−828)²/828 + (20−92)²/92
    assert skewed.chi_square == pytest.approx(72**2 / 828 + 72**2 / 92)
    assert not sample_ratio_check(0, 0, Decimal(10)).mismatch


def test_srm_is_noted_in_the_results() -> None:
    entrants = fx.entrants().with_columns(pl.lit(False).alias("is_control"))
    entrants = entrants.with_columns((pl.col("customer_id") == 101).alias("is_control"))  # 1 control of 30
    r = results(fx.demo_campaign(control_group_percent=50), entrants=entrants)
    assert r.sample_ratio.mismatch
    assert r.notes and r.notes[0].startswith("sample-ratio mismatch")


def test_funnel_by_hand() -> None:
    r = results()
    rows = r.funnel.select("channel", "messages", "sent", "delivered", "opened", "clicked", "purchased").rows()
    # email: m1..m20 without m5, plus m4b = 20; m20 bounced; opened m1 m2 m3 m4 m4b m6; purchased: m1 m2 m4b m6
    assert rows == [("email", 20, 20, 19, 6, 0, 4), ("sms", 1, 1, 1, 0, 0, 1)]
    assert r.funnel.get_column("day").to_list() == [fx.DAY, fx.DAY]


def test_cumulative_revenue_per_customer() -> None:
    r = results()
    test = dict(r.cumulative.filter(pl.col("group") == "test").select("day", "revenue_per_customer").iter_rows())
    control = dict(r.cumulative.filter(pl.col("group") == "control").select("day", "revenue_per_customer").iter_rows())
    # Moscow days: 11 June 6000/20, 12 June +300 → 315; control 800/10 on the 12th, +400 on the 13th
    assert (test[date(2025, 6, 11)], test[date(2025, 6, 12)]) == (300.0, 315.0)
    assert (control[date(2025, 6, 11)], control[date(2025, 6, 12)], control[date(2025, 6, 13)]) == (0.0, 80.0, 120.0)


def test_results_table_holds_every_figure_as_text() -> None:
    table = results().table()
    value = dict(
        ((s, g, m), v)
        for s, g, m, v in table.filter(pl.col("variant").is_null()).select("section", "group", "metric", "value").rows()
    )
    assert value[("campaign", "test", "revenue_per_customer")] == "315.00"
    assert value[("money", None, "incremental_revenue")] == "3900.00"
    assert value[("attribution", None, "attributed_revenue")] == "3300.00"


# --- control timing ------------------------------------------------------------------------------


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def timed_campaign() -> Campaign:
    return Campaign.model_validate(
        {
            "id": "late",
            "name": "Late SMS",
            "trigger": {"type": "fixed_date", "on_date": "2025-06-10", "at": "20:00"},
            "settings": {
                "control_group_percent": 30,
                "attribution_days": 3,
                "max_messages_per_hour": 2,
                "quiet_hours": {"start": "21:00", "end": "09:00", "channels": ["sms"]},
            },
            "steps": [
                {"type": "wait", "id": "pause", "hours": 3},
                {"type": "send_sms", "id": "text", "text": "Hello"},
            ],
        }
    )


def test_control_gets_the_virtual_send_time_of_the_run() -> None:
    # all enter at 20:00 Moscow (17:00 UTC); + 3 h = 23:00, inside quiet hours → 09:00 Moscow
    # (06:00 UTC) next day; 2 per hour: customers 1 and 2 in batch 1, customer 3 (control) in batch 2
    entrants = pl.DataFrame(
        {
            "customer_id": [1, 2, 3, 4],
            "occasion": ["o"] * 4,
            "partition_date": [date(2025, 6, 10)] * 4,
            "triggered_at": [t("2025-06-10T17:00")] * 4,
            "variant": [None, None, None, "global_control"],
            "is_control": [False, False, True, True],
        },
        schema_overrides={"triggered_at": pl.Datetime("us", "UTC"), "variant": pl.String()},
    )
    outbox = pl.DataFrame(
        {
            "message_id": ["s1"],
            "campaign_id": ["late"],
            "customer_id": [1],
            "occasion": ["o"],
            "channel": ["sms"],
            "send_at": [t("2025-06-11T06:00")],
        },
        schema_overrides={"send_at": pl.Datetime("us", "UTC")},
    )
    customers = pl.DataFrame(
        {"customer_id": [1, 2, 3, 4], "timezone": [None, None, None, None]}, schema_overrides={"timezone": pl.String()}
    )
    windows = measurement_windows(timed_campaign(), entrants, outbox, customers, "Europe/Moscow")
    rows = windows.select("customer_id", "group", "start_at", "end_at").rows()
    assert rows == [
        (1, "test", t("2025-06-11T06:00"), t("2025-06-14T06:00")),  # its real SMS
        (2, "test", t("2025-06-11T06:00"), t("2025-06-14T06:00")),  # no message (skipped): planned time
        (3, "control", t("2025-06-11T07:00"), t("2025-06-14T07:00")),  # virtual: batch 2
        (4, "global_control", t("2025-06-11T07:00"), t("2025-06-14T07:00")),
    ]


def test_control_follows_its_would_be_variant_branch() -> None:
    c = Campaign.model_validate(
        {
            "id": "ab",
            "name": "AB",
            "trigger": {"type": "fixed_date", "on_date": "2025-06-10", "at": "10:00"},
            "settings": {"control_group_percent": 50},
            "steps": [
                {
                    "type": "ab_split",
                    "id": "s",
                    "variants": [
                        {"name": "now", "steps": [{"type": "send_sms", "id": "a", "text": "x"}]},
                        {
                            "name": "later",
                            "steps": [
                                {"type": "wait", "id": "w", "days": 1},
                                {"type": "send_sms", "id": "b", "text": "y"},
                            ],
                        },
                    ],
                }
            ],
        }
    )
    ids = list(range(1, 41))
    entrants = pl.DataFrame(
        {
            "customer_id": ids,
            "occasion": ["o"] * 40,
            "partition_date": [date(2025, 6, 10)] * 40,
            "triggered_at": [t("2025-06-10T07:00")] * 40,
            "variant": [None] * 40,
            "is_control": [True] * 40,
        },
        schema_overrides={"triggered_at": pl.Datetime("us", "UTC"), "variant": pl.String()},
    )
    customers = pl.DataFrame({"customer_id": ids, "timezone": [None] * 40}, schema_overrides={"timezone": pl.String()})
    empty_outbox = pl.DataFrame(
        schema={
            "campaign_id": pl.String(),
            "customer_id": pl.Int64(),
            "occasion": pl.String(),
            "channel": pl.String(),
            "send_at": pl.Datetime("us", "UTC"),
        }
    )
    windows = measurement_windows(c, entrants, empty_outbox, customers, "Europe/Moscow")
    starts = dict(windows.group_by("variant").agg(pl.col("start_at").unique()).iter_rows())
    assert set(starts) == {"now", "later"}  # both would-be variants occur among 40 customers
    assert starts["now"] == [t("2025-06-10T07:00")]
    assert starts["later"] == [t("2025-06-11T07:00")]


# --- A/B and programme ------------------------------------------------------------------------------


def test_a_b_winner_needs_significance() -> None:
    assert significant_winner({"a": 2, "b": 18}, {"a": 20, "b": 20}).winner == "b"
    undecided = significant_winner({"a": 9, "b": 11}, {"a": 20, "b": 20})
    assert undecided.winner is None and "not significantly" in undecided.reason
    # three variants: the best must beat both others
    assert significant_winner({"a": 2, "b": 18, "c": 17}, {"a": 20, "b": 20, "c": 20}).winner is None


def test_programme_results_compare_with_the_global_control_group() -> None:
    customers = pl.DataFrame({"customer_id": list(range(1, 201))})
    group = GlobalControlGroup(percent=Decimal(10), start=date(2025, 1, 1))
    held = set(
        global_control_members(customers.get_column("customer_id"), group, date(2025, 6, 1)).get_column("customer_id")
    )
    assert held  # some of the 200 are held out
    buyer_ids = [i for i in range(1, 201) if i % 4 == 0]
    checks = pl.DataFrame(
        {
            "check_id": [f"c{i}" for i in buyer_ids],
            "customer_id": buyer_ids,
            "ts": [t("2025-06-02T09:00")] * len(buyer_ids),
            "total": [Decimal("100.00")] * len(buyer_ids),
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC"), "total": pl.Decimal(14, 2)},
    )
    groups, diffs = programme_results(customers, checks, group, date(2025, 6, 1), date(2025, 6, 30), "Europe/Moscow")
    rows = {g["group"]: g for g in groups.iter_rows(named=True)}
    control_buyers = sum(1 for i in held if i % 4 == 0)
    assert rows["global_control"]["customers"] == len(held)
    assert rows["global_control"]["buyers"] == control_buyers
    assert rows["test"]["buyers"] == len(buyer_ids) - control_buyers
    assert rows["test"]["revenue"] == Decimal(100 * (len(buyer_ids) - control_buyers))
    assert diffs.get_column("metric").to_list() == ["conversion", "revenue_per_customer", "avg_check"]


# --- properties ----------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 20), st.sampled_from(["email", "sms"])),
        min_size=1,
        max_size=8,
    ),
    st.lists(st.integers(0, 30), min_size=1, max_size=8),
)
def test_each_check_has_at_most_one_last_touch(messages: list[tuple[str, int, str]], check_hours: list[int]) -> None:
    base = t("2025-06-10T00:00")
    from datetime import timedelta

    outbox = pl.DataFrame(
        {
            "message_id": [f"m{i}" for i in range(len(messages))],
            "campaign_id": [m[0] for m in messages],
            "customer_id": [1] * len(messages),
            "channel": [m[2] for m in messages],
            "variant": [None] * len(messages),
            "send_at": [base + timedelta(hours=m[1]) for m in messages],
        },
        schema_overrides={"send_at": pl.Datetime("us", "UTC"), "variant": pl.String()},
    )
    checks = pl.DataFrame(
        {
            "check_id": [f"c{i}" for i in range(len(check_hours))],
            "customer_id": [1] * len(check_hours),
            "ts": [base + timedelta(hours=h) for h in check_hours],
            "total": [Decimal("10.00")] * len(check_hours),
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC"), "total": pl.Decimal(14, 2)},
    )
    sent = {m: "sent" for m in ("email", "sms")}
    claims = attribute_checks(
        touches(
            outbox,
            outbox.head(0)
            .select("message_id")
            .with_columns(pl.lit("").alias("event"), pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("event_at")),
            sent,
        ),
        checks,
        {"a": 1, "b": 1},
    )
    per_check = claims.group_by("check_id").agg(pl.col("last_touch").sum(), pl.len(), pl.col("campaign_id").n_unique())
    assert (per_check.get_column("last_touch") == 1).all()
    assert (per_check.get_column("len") == per_check.get_column("campaign_id")).all()  # one message per campaign
    # every claim lies in its window, and a check claimed by nobody had no touch in the day before it
    assert (claims.get_column("ts") >= claims.get_column("touch_at")).all()
    for check_id, ts in checks.select("check_id", "ts").rows():
        in_window = [s for s in outbox.get_column("send_at").to_list() if s <= ts < s + timedelta(days=1)]
        assert (check_id in claims.get_column("check_id").to_list()) == bool(in_window)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 200), st.integers(1, 200), st.data())
def test_newcombe_interval_holds_the_estimate_within_bounds(n_a: int, n_b: int, data: st.DataObject) -> None:
    k_a = data.draw(st.integers(0, n_a))
    k_b = data.draw(st.integers(0, n_b))
    interval = proportion_difference(k_a, n_a, k_b, n_b)
    assert interval is not None
    assert -1 <= interval.low <= interval.estimate <= interval.high <= 1
    wider = proportion_difference(k_a, n_a, k_b, n_b, confidence=0.99)
    assert wider is not None and wider.low <= interval.low and wider.high >= interval.high


# --- what results load of lazy sources ---------------------------------------------------------------


def _as_figures(r: CampaignResults) -> tuple[object, ...]:
    return (r.groups, r.differences, r.money, r.attributed, r.funnel, r.cumulative, r.sample_ratio, r.ab, r.notes)


def test_lazy_sources_load_only_the_rows_windows_and_touches_reach() -> None:
    """From lazy sources, results load the checks from the earliest window or touch on, of the
    customers measured or touched, and the events of the messages read: the rest of history is
    never collected, and every figure is the one the whole frames give."""
    c = fx.demo_campaign()
    windows = measurement_windows(c, fx.entrants(), fx.outbox(), fx.customers(), "Europe/Moscow")
    all_touches = touches(fx.outbox(), fx.communications(), c.settings.attribution_from.as_dict())
    old = pl.DataFrame(
        {
            "check_id": ["old1", "stranger"],
            "customer_id": [1, 999],
            "ts": [t("2024-01-05T10:00"), t("2025-06-11T10:00")],
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    ).with_columns(pl.lit(Decimal("5.00")).cast(pl.Decimal(14, 2)).alias("total"))
    checks = pl.concat([fx.checks(), old])
    from loyalty_assets.transforms.results import reachable_checks, reachable_events

    loaded = reachable_checks(checks.lazy(), windows, all_touches)
    # c9 (06-10 06:59 UTC) is before every window and touch; old1 is last year's; 999 is nobody's
    assert sorted(loaded.get_column("check_id")) == sorted(set(fx.checks().get_column("check_id")) - {"c9"})
    events = reachable_events(fx.communications().lazy(), [fx.outbox().head(1)])
    assert set(events.get_column("message_id")) == {fx.outbox().get_column("message_id")[0]}
    whole, lazy = results(checks=checks), results(checks=checks.lazy())  # type: ignore[arg-type]
    assert str(_as_figures(whole)) == str(_as_figures(lazy)) == str(_as_figures(results()))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([1, 2, 5, 9, 10, 101, 102, 500]), st.integers(-24 * 40, 24 * 20), st.integers(1, 999)
        ),
        max_size=40,
    )
)
def test_narrowed_sources_give_the_figures_of_whole_ones(extra: list[tuple[int, int, int]]) -> None:
    """Whatever checks are added around the campaign (before, inside and after windows, of entrants,
    of others), results with the sources narrowed equal results on every row (narrowing disabled)."""
    from datetime import timedelta

    import loyalty_assets.transforms.results as module

    base = datetime(2025, 6, 10, 12, tzinfo=UTC)
    added = pl.DataFrame(
        {
            "check_id": [f"x{n}" for n in range(len(extra))],
            "customer_id": [cid for cid, _, _ in extra],
            "ts": [base + timedelta(hours=h) for _, h, _ in extra],
            "total": [Decimal(amount) for _, _, amount in extra],
        },
        schema={
            "check_id": pl.String(),
            "customer_id": pl.Int64(),
            "ts": pl.Datetime("us", "UTC"),
            "total": pl.Decimal(14, 2),
        },
    )
    checks = pl.concat([fx.checks(), added])
    narrowed = results(checks=checks.lazy(), communications=fx.communications().lazy())  # type: ignore[arg-type]
    whole_frame = lambda frame, *_: frame.lazy().collect()  # noqa: E731 - narrowing disabled
    with (
        mock.patch.object(module, "reachable_checks", whole_frame),
        mock.patch.object(module, "reachable_events", whole_frame),
    ):
        whole = results(checks=checks)
    assert str(_as_figures(narrowed)) == str(_as_figures(whole))
