"""Accruals and outbound messages of executed steps: amounts, channel rules, quiet hours, caps, batches.

Run date D = 2025-06-10, program zone Moscow (UTC+3). Customer 6 lives in Vladivostok (UTC+10).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from loyalty_assets.config.campaigns import Campaign, FrequencyCap
from loyalty_assets.sources.frames import AsOf
from loyalty_assets.transforms.accruals import build_accruals, percent_of
from loyalty_assets.transforms.activity import message_activity
from loyalty_assets.transforms.campaign_day import favourite_names
from loyalty_assets.transforms.messages import MessageBatch, build_messages, render_error_reason
from loyalty_assets.transforms.templates import TemplateRenderer
from tests.engine_fixtures import VLAT, actions, campaign, customers, frames, money, renderer, rows_of, ts

D = date(2025, 6, 10)
AS_OF = AsOf(D)

# --- accruals -------------------------------------------------------------------------------------


def accrual_campaign() -> Campaign:
    """A purchase campaign with a 5 % cashback (30 days) and a fixed 500 bonuses without expiry."""
    return campaign(
        [
            {
                "type": "accrue_bonuses",
                "id": "cashback",
                "percent_of_check": "5",
                "lifetime_days": 30,
                "legal_entity": "X",
                "reason": "Fish cashback",
            },
            {"type": "accrue_bonuses", "id": "gift", "amount": "500", "legal_entity": "Y"},
        ],
        id="fish",
        name="Fish",
    )


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        ("1234.50", "61.73"),  # 1234.50 × 5 % = 61.725 → half up → 61.73 (a float would give 61.72)
        ("10.10", "0.51"),  # 10.10 × 5 % = 0.505 → 0.51
        ("0.10", "0.01"),  # 0.005 → 0.01
        ("0.09", "0.00"),  # 0.0045 → 0.00
        ("99999.99", "5000.00"),  # 4999.9995 → 5000.00
    ],
)
def test_percent_of_rounds_half_up_in_cents(total: str, expected: str) -> None:
    frame = pl.DataFrame({"total": [Decimal(total)]}, schema={"total": pl.Decimal(14, 2)})
    assert frame.select(percent_of(pl.col("total"), Decimal(5)))["total"].to_list() == [Decimal(expected)]


def test_accruals_fixed_and_percent_of_check() -> None:
    done = actions(
        {
            "customer_id": 1,
            "occasion": "purchase:c1",
            "at": ts("2025-06-10T09:00"),
            "check_id": "c1",
            "check_total": money("1234.50"),
            "step_id": "cashback",
            "step_type": "accrue_bonuses",
        },
        {
            "customer_id": 2,
            "occasion": "purchase:c2",
            "at": ts("2025-06-10T12:30"),
            "check_id": "c2",
            "check_total": money("10.10"),
            "step_id": "cashback",
            "step_type": "accrue_bonuses",
        },
        {
            "customer_id": 1,
            "occasion": "purchase:c1",
            "at": ts("2025-06-10T09:00"),
            "check_id": "c1",
            "check_total": money("1234.50"),
            "step_id": "gift",
            "step_type": "accrue_bonuses",
        },
    )
    got = build_accruals(accrual_campaign(), done)
    assert rows_of(got, "accrual_id", "amount", "accrued_at", "expires_at", "legal_entity", "reason") == [
        # 30 days after 10 June 09:00 UTC = 10 July 09:00 UTC
        (
            "fish:cashback:1:purchase:c1",
            money("61.73"),
            ts("2025-06-10T09:00"),
            ts("2025-07-10T09:00"),
            "X",
            "Fish cashback: purchase:c1",
        ),
        ("fish:gift:1:purchase:c1", money("500.00"), ts("2025-06-10T09:00"), None, "Y", "Fish: purchase:c1"),
        (
            "fish:cashback:2:purchase:c2",
            money("0.51"),
            ts("2025-06-10T12:30"),
            ts("2025-07-10T12:30"),
            "X",
            "Fish cashback: purchase:c2",
        ),
    ]


# --- messages -------------------------------------------------------------------------------------

FISH_HTML = (
    "<p>{{ customer.first_name }}, thanks for {{ check.total }}!</p>"
    "<p>{{ bonus.amount }} bonuses until {{ bonus.expires_on.strftime('%d.%m.%Y') }}</p>"
    "<p>{{ favourite_categories | join(', ') }}</p>"
)

ALL_CHANNELS: list[dict[str, Any]] = [
    {
        "type": "send_email",
        "id": "mail",
        "subject": "{{ customer.first_name }}: {{ bonus.amount }}",
        "template": "fish.html",
    },
    {"type": "send_sms", "id": "sms", "text": "Hi {{ customer.first_name }} & co"},
    {"type": "send_push", "id": "push", "text": "Push"},
    {
        "type": "notify_staff",
        "id": "staff",
        "recipient": "manager@shop.example",
        "subject": "Sold",
        "text": "Customer {{ customer.customer_id }} bought {{ check.total }}",
    },
]

CONTACTS = customers(
    # everything present and subscribed; a name with markup
    {
        "customer_id": 1,
        "first_name": "<b>Ann</b>",
        "email": " ann@example.com ",
        "email_subscribed": True,
        "phone": "+79990000001",
        "sms_subscribed": True,
        "push_token": "tok1",
        "push_subscribed": True,
    },
    # no email; blank phone; a push token but unsubscribed from push
    {
        "customer_id": 2,
        "first_name": "Bob",
        "email": None,
        "email_subscribed": True,
        "phone": "  ",
        "sms_subscribed": True,
        "push_token": "tok2",
        "push_subscribed": False,
    },
    # email unsubscribed; phone unsubscribed; no push token
    {
        "customer_id": 3,
        "email": "c@example.com",
        "email_subscribed": False,
        "phone": "+79990000003",
        "sms_subscribed": False,
    },
    # subscribed but undeliverable email
    {"customer_id": 4, "email": "d@example.com", "email_subscribed": True, "email_valid": False},
    {
        "customer_id": 5,
        "email": "e@example.com",
        "email_subscribed": True,
        "phone": "+79990000005",
        "sms_subscribed": True,
    },
    {
        "customer_id": 6,
        "email": "f@example.com",
        "email_subscribed": True,
        "phone": "+79990000006",
        "sms_subscribed": True,
        "timezone": VLAT,
    },
)


def step_actions(step_ids: list[str], at: dict[int, str]) -> pl.DataFrame:
    """Each customer of `at` performing each step of `step_ids` at the given UTC instant."""
    types = {s["id"]: s["type"] for s in ALL_CHANNELS}
    return actions(
        *(
            {
                "customer_id": cid,
                "occasion": f"purchase:c{cid}",
                "at": ts(when),
                "check_id": f"c{cid}",
                "check_total": money("1234.50"),
                "step_id": sid,
                "step_type": types[sid],
            }
            for cid, when in at.items()
            for sid in step_ids
        )
    )


def send(
    c: Campaign,
    done: pl.DataFrame,
    tmp_path: Path,
    *,
    accruals: pl.DataFrame | None = None,
    favourites: pl.DataFrame | None = None,
    recent: pl.DataFrame | None = None,
    cap: FrequencyCap | None = None,
) -> MessageBatch:
    """`build_messages` for D with the fish template."""
    r: TemplateRenderer = renderer(tmp_path / "templates", {"fish.html": FISH_HTML})
    return build_messages(
        c,
        done,
        accruals if accruals is not None else build_accruals(c, done.clear()),
        CONTACTS,
        r,
        AS_OF,
        favourites=favourites,
        recent_messages=recent,
        frequency_cap=cap,
    )


def plain(steps: list[dict[str, Any]], **settings: Any) -> Campaign:
    """A purchase campaign with `steps` and `settings`."""
    return campaign(steps, id="fish", name="Fish", settings=settings)


def test_channel_rules_and_skip_reasons(tmp_path: Path) -> None:
    c = plain([{"type": "send_email", "id": "mail", "subject": "Hello", "template": "plain.html"}, *ALL_CHANNELS[1:]])
    r = renderer(tmp_path, {"plain.html": "<p>Hi</p>"})
    done = step_actions(["mail", "sms", "push", "staff"], {i: "2025-06-10T09:00" for i in (1, 2, 3, 4)})
    batch = build_messages(c, done, build_accruals(c, done.clear()), CONTACTS, r, AS_OF)
    assert sorted(rows_of(batch.outbox, "customer_id", "channel", "recipient")) == [
        (1, "email", "ann@example.com"),  # stripped
        (1, "push", "tok1"),
        (1, "sms", "+79990000001"),
        (1, "staff", "manager@shop.example"),
        (2, "staff", "manager@shop.example"),
        (3, "staff", "manager@shop.example"),
        (4, "staff", "manager@shop.example"),
    ]
    assert sorted(rows_of(batch.skipped, "customer_id", "channel", "reason")) == [
        (2, "email", "no_email"),
        (2, "push", "push_unsubscribed"),
        (2, "sms", "no_phone"),  # blank
        (3, "email", "email_unsubscribed"),
        (3, "push", "no_push_token"),
        (3, "sms", "sms_unsubscribed"),
        (4, "email", "email_invalid"),
        (4, "push", "no_push_token"),
        (4, "sms", "no_phone"),
    ]
    mail = batch.outbox.filter(pl.col("channel") == "email").row(0, named=True)
    assert mail["message_id"] == "fish:mail:email:1:purchase:c1"
    assert mail["send_at"] == ts("2025-06-10T09:00") and mail["batch_no"] == 1
    staff = batch.outbox.filter((pl.col("channel") == "staff") & (pl.col("customer_id") == 2)).row(0, named=True)
    assert staff["subject"] == "Sold" and staff["body"] == "Customer 2 bought 1234.50"


def test_quiet_hours_move_sms_to_the_local_morning_and_leave_email(tmp_path: Path) -> None:
    c = plain(
        [{"type": "send_email", "id": "mail", "subject": "Hi", "template": "plain.html"}, ALL_CHANNELS[1]],
        quiet_hours={"start": "21:00", "end": "09:00", "channels": ["sms"]},
    )
    r = renderer(tmp_path, {"plain.html": "<p>Hi</p>"})
    done = step_actions(
        ["mail", "sms"],
        {
            1: "2025-06-10T20:30",  # 23:30 MSK: quiet
            5: "2025-06-10T05:59",  # 08:59 MSK: quiet
            6: "2025-06-10T13:30",  # 23:30 VLAT: quiet in her zone (16:30 in Moscow)
        },
    )
    batch = build_messages(c, done, build_accruals(c, done.clear()), CONTACTS, r, AS_OF)
    sent = {(row[0], row[1]): row[2] for row in rows_of(batch.outbox, "customer_id", "channel", "send_at")}
    assert sent == {
        (1, "email"): ts("2025-06-10T20:30"),  # email not affected
        (1, "sms"): ts("2025-06-11T06:00"),  # 11 June 09:00 MSK
        (5, "email"): ts("2025-06-10T05:59"),
        (5, "sms"): ts("2025-06-10T06:00"),  # 09:00 MSK the same morning
        (6, "email"): ts("2025-06-10T13:30"),
        (6, "sms"): ts("2025-06-10T23:00"),  # 11 June 09:00 VLAT
    }


def test_frequency_cap_counts_recent_messages_of_other_campaigns(tmp_path: Path) -> None:
    c = plain([{"type": "send_email", "id": "mail", "subject": "Hi", "template": "plain.html"}, ALL_CHANNELS[1]])
    r = renderer(tmp_path, {"plain.html": "<p>Hi</p>"})
    done = pl.concat(
        [
            step_actions(["mail"], {1: "2025-06-10T09:00", 5: "2025-06-10T09:00"}),
            step_actions(["sms"], {1: "2025-06-10T10:00", 5: "2025-06-10T10:00"}),
        ]
    )
    # window = 7 days ending with D = [3 June 21:00 UTC, 10 June 21:00 UTC)
    recent = pl.DataFrame(
        {
            "customer_id": [1, 5],
            "channel": ["email", "email"],
            "send_at": [ts("2025-06-08T12:00"), ts("2025-06-03T20:59")],  # 5's is just outside the window
        }
    )
    batch = build_messages(
        c,
        done,
        build_accruals(c, done.clear()),
        CONTACTS,
        r,
        AS_OF,
        recent_messages=recent,
        frequency_cap=FrequencyCap(max_messages=2, days=7),
    )
    # customer 1: 1 recent + today's email = 2 → the 10:00 SMS is over the cap; customer 5: 0 recent → both
    assert sorted(rows_of(batch.outbox, "customer_id", "channel")) == [(1, "email"), (5, "email"), (5, "sms")]
    assert rows_of(batch.skipped, "customer_id", "channel", "reason", "triggered_at") == [
        (1, "sms", "frequency_cap", ts("2025-06-10T10:00"))
    ]


def test_speed_limit_spreads_messages_into_hourly_batches(tmp_path: Path) -> None:
    c = plain(
        [{"type": "send_email", "id": "mail", "subject": "Hi", "template": "plain.html"}], max_messages_per_hour=2
    )
    r = renderer(tmp_path, {"plain.html": "<p>Hi</p>"})
    people = customers(
        *({"customer_id": i, "email": f"{i}@example.com", "email_subscribed": True} for i in (15, 11, 14, 12, 13))
    )
    done = step_actions(["mail"], {i: "2025-06-10T07:00" for i in (15, 11, 14, 12, 13)})
    batch = build_messages(c, done, build_accruals(c, done.clear()), people, r, AS_OF)
    # ordered by planned time then customer id; 2 per hour → batches 1,1,2,2,3 at +0h,+0h,+1h,+1h,+2h
    assert rows_of(batch.outbox, "customer_id", "batch_no", "send_at") == [
        (11, 1, ts("2025-06-10T07:00")),
        (12, 1, ts("2025-06-10T07:00")),
        (13, 2, ts("2025-06-10T08:00")),
        (14, 2, ts("2025-06-10T08:00")),
        (15, 3, ts("2025-06-10T09:00")),
    ]


def test_speed_limit_never_pushes_sms_into_quiet_hours(tmp_path: Path) -> None:
    c = plain([ALL_CHANNELS[1]], max_messages_per_hour=1, quiet_hours={"start": "21:00", "end": "09:00"})
    r = renderer(tmp_path, {})
    done = step_actions(["sms"], {1: "2025-06-10T17:30", 5: "2025-06-10T17:30", 6: "2025-06-10T07:30"})
    batch = build_messages(c, done, build_accruals(c, done.clear()), CONTACTS, r, AS_OF)
    # every planned instant must be outside 21:00–09:00 local (Moscow for 1 and 5, Vladivostok for 6)
    zones = {1: "Europe/Moscow", 5: "Europe/Moscow", 6: VLAT}
    for cid, send_at in rows_of(batch.outbox, "customer_id", "send_at"):
        local = send_at.astimezone(ZoneInfo(zones[cid]))
        assert 9 <= local.hour < 21, (cid, local)


def test_templates_see_check_bonus_and_favourites_and_html_is_escaped(tmp_path: Path) -> None:
    c = plain(
        [
            {
                "type": "accrue_bonuses",
                "id": "cashback",
                "percent_of_check": "5",
                "lifetime_days": 30,
                "legal_entity": "X",
            },
            ALL_CHANNELS[0],
            ALL_CHANNELS[1],
        ]
    )
    done = pl.concat(
        [
            actions(
                {
                    "customer_id": 1,
                    "occasion": "purchase:c1",
                    "at": ts("2025-06-10T09:00"),
                    "check_id": "c1",
                    "check_total": money("1234.50"),
                    "step_id": "cashback",
                    "step_type": "accrue_bonuses",
                }
            ),
            step_actions(["mail", "sms"], {1: "2025-06-10T09:00"}),
        ]
    )
    accruals = build_accruals(c, done)
    src = frames(
        CONTACTS,
        favourite_categories=[
            {
                "customer_id": 1,
                "period_start": date(2025, 6, 1),
                "period_end": date(2025, 6, 30),
                "category_id": cat,
                "chosen_at": ts("2025-06-01T08:00"),
            }
            for cat in ("milk", "aquarium_fish")
        ],
    )
    batch = send(c, done, tmp_path, accruals=accruals, favourites=favourite_names(src, AS_OF))
    mail = batch.outbox.filter(pl.col("channel") == "email").row(0, named=True)
    # 5 % of 1234.50 = 61.73; expires 10 July 09:00 UTC = 10 July 12:00 MSK
    assert mail["subject"] == "<b>Ann</b>: 61.73"  # plain-text subject: not escaped
    assert mail["body"] == (
        "<p>&lt;b&gt;Ann&lt;/b&gt;, thanks for 1234.50!</p>"
        "<p>61.73 bonuses until 10.07.2025</p>"
        "<p>Aquarium fish, Milk</p>"  # names, sorted
    )
    assert mail["template"] == "fish.html"
    sms = batch.outbox.filter(pl.col("channel") == "sms").row(0, named=True)
    assert sms["body"] == "Hi <b>Ann</b> & co" and sms["subject"] is None and sms["template"] == "<inline>"


def test_a_message_that_cannot_be_rendered_is_skipped_with_the_reason_and_the_others_go_out(tmp_path: Path) -> None:
    """Issue 7: customer 5's 5 % of 0.09 rounds to 0.00, so no accrual and no `bonus` for her email."""
    c = plain(
        [
            {
                "type": "accrue_bonuses",
                "id": "cashback",
                "percent_of_check": "5",
                "lifetime_days": 30,
                "legal_entity": "X",
            },
            ALL_CHANNELS[0],
            ALL_CHANNELS[1],
        ]
    )

    def bought(cid: int, total: str) -> dict[str, Any]:
        return {
            "customer_id": cid,
            "occasion": f"purchase:c{cid}",
            "at": ts("2025-06-10T09:00"),
            "check_id": f"c{cid}",
            "check_total": money(total),
            "step_id": "cashback",
            "step_type": "accrue_bonuses",
        }

    done = pl.concat(
        [
            actions(bought(1, "1234.50"), bought(5, "0.09")),
            step_actions(["mail", "sms"], {1: "2025-06-10T09:00", 5: "2025-06-10T09:00"}).with_columns(
                pl.when(pl.col("customer_id") == 5).then(money("0.09")).otherwise(money("1234.50")).alias("check_total")
            ),
        ]
    )
    accruals = build_accruals(c, done)
    assert rows_of(accruals, "customer_id", "amount") == [(1, money("61.73"))]  # 0.00 is not accrued
    batch = send(c, done, tmp_path, accruals=accruals)
    # her SMS needs no bonus and goes out; her email fails on `bonus.amount`; customer 1 gets both
    assert sorted(rows_of(batch.outbox, "customer_id", "channel")) == [(1, "email"), (1, "sms"), (5, "sms")]
    reason = "render_error: UndefinedError: 'None' has no attribute 'amount'"
    assert rows_of(batch.skipped, "customer_id", "step_id", "channel", "reason", "triggered_at") == [
        (5, "mail", "email", reason, ts("2025-06-10T09:00"))
    ]
    log = message_activity("fish", batch.outbox, batch.skipped).filter(pl.col("kind") == "message_skipped")
    assert rows_of(log, "event_id", "customer_id", "details") == [
        ("messages:fish:mail:email:5:purchase:c5", 5, f"email mail: {reason} (purchase:c5)")
    ]


def test_render_error_reasons_never_carry_contact_details() -> None:
    errors = pl.DataFrame({"e": ["ValueError: 'ann.lee@example.com' or +7 (999) 000-00-01 and 4276123456781234", None]})
    assert errors.select(render_error_reason(pl.col("e"))).to_series().to_list() == [
        "render_error: ValueError: '***@***' or *** and ***",
        None,
    ]
