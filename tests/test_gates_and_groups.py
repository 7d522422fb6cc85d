"""Entry rules, control groups, fail-closed gates and campaign-kept segments (scenarios 6 and 8).

Run date D = 2025-06-10, program zone Moscow (UTC+3).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from loyalty_assets.config.campaigns import Campaign, Gates, GlobalControlGroup
from loyalty_assets.sources.frames import AsOf
from loyalty_assets.transforms.campaign_day import audience_gate, checks_volume_gate, manual_segment_members
from loyalty_assets.transforms.control_groups import global_control_members, period_of
from loyalty_assets.transforms.entry import select_entrants
from tests.engine_fixtures import campaign, fired, history, rows_of, table, ts

D = date(2025, 6, 10)
EMAIL = {"type": "send_email", "id": "mail", "subject": "Hi", "template": "x.html"}


def hits(*customer_ids: int) -> pl.DataFrame:
    """Trigger hits on D: one purchase `purchase:c<id>` per customer at 09:00 UTC."""
    return fired(
        *(
            {"customer_id": i, "occasion": f"purchase:c{i}", "event_date": D, "triggered_at": ts("2025-06-10T09:00")}
            for i in customer_ids
        )
    )


def enter(
    c: Campaign, hits_: pl.DataFrame, past: pl.DataFrame | None = None, **kwargs: Any
) -> tuple[pl.DataFrame, dict[str, int]]:
    """`select_entrants` on D with an empty history unless `past` is given."""
    return select_entrants(
        c,
        hits_,
        run_date=D,
        audience=kwargs.pop("audience", None),
        history=past if past is not None else history(),
        **kwargs,
    )


# --- entry --------------------------------------------------------------------------------------


def test_audience_narrows_the_trigger_hits() -> None:
    entrants, counts = enter(campaign([EMAIL]), hits(1, 2, 3), audience=pl.Series([1, 3, 7]))
    assert entrants["customer_id"].to_list() == [1, 3]
    assert counts["fired"] == 3 and counts["not_in_audience"] == 1 and counts["entered"] == 2


def test_an_occasion_handled_on_another_date_is_not_handled_again() -> None:
    past = history(
        {"customer_id": 1, "occasion": "purchase:c1", "partition_date": date(2025, 6, 9)},  # handled yesterday
        {"customer_id": 2, "occasion": "purchase:c2", "partition_date": D},  # today's own row: a re-run
        {"customer_id": 3, "occasion": "purchase:old", "partition_date": date(2025, 6, 9)},  # another occasion
    )
    entrants, counts = enter(campaign([EMAIL]), hits(1, 2, 3), past)
    assert entrants["customer_id"].to_list() == [2, 3]
    assert counts["occasion_already_handled"] == 1


def test_reentry_days() -> None:
    c = campaign([EMAIL], settings={"reentry_days": 14})
    past = history(
        {"customer_id": 1, "occasion": "purchase:a", "partition_date": D - timedelta(days=10)},  # blocked
        {"customer_id": 2, "occasion": "purchase:b", "partition_date": D - timedelta(days=15)},  # allowed
    )
    entrants, counts = enter(c, hits(1, 2, 3), past)
    assert entrants["customer_id"].to_list() == [2, 3]
    assert counts["reentry_blocked"] == 1


def test_once_per_customer_ever() -> None:
    c = campaign([EMAIL], settings={"once_per_customer": True})
    past = history({"customer_id": 1, "occasion": "purchase:a", "partition_date": date(2024, 6, 1)})
    entrants, counts = enter(c, hits(1, 2), past)
    assert entrants["customer_id"].to_list() == [2]
    assert counts["already_entered_once"] == 1


@pytest.mark.parametrize("settings", [{"once_per_customer": True}, {"reentry_days": 14}])
def test_two_purchases_on_one_day_enter_once(settings: dict[str, Any]) -> None:
    two = fired(
        {"customer_id": 1, "occasion": "purchase:a", "event_date": D, "triggered_at": ts("2025-06-10T09:00")},
        {"customer_id": 1, "occasion": "purchase:b", "event_date": D, "triggered_at": ts("2025-06-10T12:00")},
    )
    entrants, _ = enter(campaign([EMAIL], settings=settings), two)
    assert rows_of(entrants, "customer_id", "occasion") == [(1, "purchase:a")]  # the first purchase of the day


def test_control_group_is_stable_and_about_the_percent() -> None:
    c = campaign([EMAIL], settings={"control_group_percent": 50})
    ids = list(range(1, 2001))
    first, counts = enter(c, hits(*ids))
    again, _ = enter(c, hits(*ids))
    control = first.filter(pl.col("is_control"))["customer_id"].to_list()
    assert control == again.filter(pl.col("is_control"))["customer_id"].to_list()
    # 1000 expected; sd = sqrt(2000 × 0.25) ≈ 22
    assert 900 <= len(control) <= 1100
    assert counts["control"] == len(control) and counts["entered"] == 2000
    assert first.filter(pl.col("is_control"))["variant"].null_count() == len(control)
    # a customer's membership does not depend on who else fired that day
    alone, _ = enter(c, hits(control[0], control[0] + 100_000))
    assert alone.filter(pl.col("customer_id") == control[0])["is_control"].to_list() == [True]


def test_global_control_group_is_held_out_with_its_own_variant() -> None:
    steps = [{"type": "ab_split", "id": "ab", "variants": [{"name": "a", "steps": [EMAIL]}, {"name": "b"}]}]
    entrants, counts = enter(campaign(steps), hits(1, 2, 3), global_control=pl.Series([1, 2, 99]))
    assert rows_of(entrants, "customer_id", "variant", "is_control")[:2] == [
        (1, "global_control", True),
        (2, "global_control", True),
    ]
    third = entrants.row(2, named=True)
    assert third["variant"] in {"a", "b"} and third["is_control"] is False
    assert counts["global_control"] == 2 and counts["control"] == 0

    opted_in = campaign(steps, settings={"exclude_global_control": False})
    everyone, counts = enter(opted_in, hits(1, 2, 3), global_control=pl.Series([1, 2, 99]))
    assert not everyone["is_control"].any() and counts["global_control"] == 0
    assert set(everyone["variant"]) <= {"a", "b"}


# --- gates --------------------------------------------------------------------------------------


def test_audience_gate() -> None:
    gates = Gates(max_audience_jump=Decimal(10), min_audience_for_jump=20, override_dates=(date(2025, 6, 11),))
    # 20 yesterday × 10 = 200: 200 passes, 201 fails
    assert audience_gate(gates, D, 200, 20).passed
    failed = audience_gate(gates, D, 201, 20)
    assert not failed.passed
    assert "settings.gates.override_dates" in failed.description and "2025-06-10" in failed.description
    assert failed.metadata == {"entrants_today": 201, "entrants_yesterday": 20}
    # the same jump on an override date is accepted
    assert audience_gate(gates, date(2025, 6, 11), 201, 20).passed
    # a small yesterday (19 < 20) or none: no comparison
    assert audience_gate(gates, D, 10_000, 19).passed
    assert audience_gate(gates, D, 10_000, None).passed


def daily_checks(per_day: dict[date, int]) -> pl.DataFrame:
    """`per_day[day]` checks at 12:00 MSK (09:00 UTC) of each day."""
    rows = [
        {"check_id": f"{day}-{n}", "customer_id": 1, "ts": ts(f"{day}T09:00"), "total": Decimal("1.00")}
        for day, count in per_day.items()
        for n in range(count)
    ]
    return table("checks", rows)


YESTERDAY = D - timedelta(days=1)


def test_checks_volume_gate_fails_on_a_thin_day() -> None:
    # 28 days before yesterday (12 May..8 June) with 10 checks each → median 10; 0.3 × 10 = 3
    history_days = {YESTERDAY - timedelta(days=i): 10 for i in range(1, 29)}
    thin = checks_volume_gate(daily_checks({**history_days, YESTERDAY: 2}), AsOf(D), Decimal("0.3"))
    assert not thin.passed
    assert thin.metadata["median_28_days"] == 10 and thin.metadata["checks_yesterday"] == 2
    assert "gate_override_dates" in thin.description
    enough = checks_volume_gate(daily_checks({**history_days, YESTERDAY: 3}), AsOf(D), Decimal("0.3"))
    assert enough.passed
    overridden = checks_volume_gate(daily_checks({**history_days, YESTERDAY: 2}), AsOf(D), Decimal("0.3"), (D,))
    assert overridden.passed


def test_checks_volume_gate_needs_a_week_of_history() -> None:
    six_days = {YESTERDAY - timedelta(days=i): 10 for i in range(1, 7)}
    result = checks_volume_gate(daily_checks({**six_days, YESTERDAY: 0}), AsOf(D), Decimal("0.3"))
    assert result.passed and "fewer than 7 days" in result.description


def test_checks_volume_gate_with_ten_days_of_history() -> None:
    ten_days = {YESTERDAY - timedelta(days=i): 10 for i in range(1, 11)}
    result = checks_volume_gate(daily_checks({**ten_days, YESTERDAY: 2}), AsOf(D), Decimal("0.3"))
    assert not result.passed  # 2 checks against 10 a day for 10 days


# --- global control group ---------------------------------------------------------------------------

SIX_MONTHS = GlobalControlGroup(percent=Decimal(10), reform_every_months=6, start=date(2024, 1, 1))


@pytest.mark.parametrize(
    ("day", "period"),
    [
        (date(2025, 6, 26), (date(2025, 1, 1), date(2025, 6, 30))),  # 17 months in → 3rd period
        (date(2025, 1, 1), (date(2025, 1, 1), date(2025, 6, 30))),
        (date(2024, 12, 31), (date(2024, 7, 1), date(2024, 12, 31))),
        (date(2024, 1, 1), (date(2024, 1, 1), date(2024, 6, 30))),
        (date(2025, 7, 1), (date(2025, 7, 1), date(2025, 12, 31))),
    ],
)
def test_period_of_six_month_group(day: date, period: tuple[date, date]) -> None:
    assert period_of(SIX_MONTHS, day) == period


def test_global_control_members_stable_and_about_the_percent() -> None:
    ids = pl.Series("customer_id", range(1, 5001), dtype=pl.Int64)
    june = global_control_members(ids, SIX_MONTHS, date(2025, 6, 26))
    january = global_control_members(ids, SIX_MONTHS, date(2025, 1, 2))
    assert june["customer_id"].to_list() == january["customer_id"].to_list()  # same period, same group
    # 500 expected; sd = sqrt(5000 × 0.1 × 0.9) ≈ 21
    assert 430 <= june.height <= 570
    assert set(june["period_start"]) == {date(2025, 1, 1)} and set(june["period_end"]) == {date(2025, 6, 30)}
    july = global_control_members(ids, SIX_MONTHS, date(2025, 7, 1))
    assert july["customer_id"].to_list() != june["customer_id"].to_list()  # re-drawn for the next period


# --- campaign-kept segments ---------------------------------------------------------------------------


def test_manual_segment_members_take_the_latest_event_before_the_cutoff() -> None:
    def event(eid: str, cid: int, action: str, at: str, segment: str = "fish_lovers") -> dict[str, Any]:
        return {"event_id": eid, "segment_id": segment, "customer_id": cid, "action": action, "ts": ts(at)}

    events = pl.DataFrame(
        [
            event("e1", 1, "add", "2025-06-01T10:00"),
            event("e2", 1, "remove", "2025-06-05T10:00"),  # 1: add then remove → out
            event("e3", 2, "remove", "2025-06-01T10:00"),
            event("e4", 2, "add", "2025-06-05T10:00"),  # 2: remove then add → in
            event("e5", 3, "add", "2025-06-10T20:59"),  # 23:59 MSK on D → in
            event("e6", 4, "add", "2025-06-01T10:00"),
            event("e7", 4, "remove", "2025-06-10T21:00"),  # 11 June 00:00 MSK: after the cutoff → still in
            event("e8", 5, "add", "2025-06-11T08:00"),  # tomorrow → not yet
            event("e9", 1, "add", "2025-06-02T10:00", segment="vip"),
        ],
        schema={
            "event_id": pl.String(),
            "segment_id": pl.String(),
            "customer_id": pl.Int64(),
            "action": pl.String(),
            "ts": pl.Datetime("us", "UTC"),
        },
    )
    members = manual_segment_members(events, AsOf(D))
    assert set(members) == {"fish_lovers", "vip"}
    assert members["fish_lovers"]["customer_id"].to_list() == [2, 3, 4]
    assert members["vip"]["customer_id"].to_list() == [1]
