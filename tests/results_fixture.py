"""The hand-made results fixture: 20 test and 10 control customers of campaign `demo`.

Everybody enters on 2025-06-10 at 07:00 UTC (10:00 Moscow); the test group gets an email at once
(customer 5 an SMS, customer 4 a second email at 09:00), the control group nothing. Attribution:
10 days, default rules (email when opened, SMS when delivered).

| who | message events | checks (UTC) | in window? | attributed to demo? |
|---|---|---|---|---|
| 1 | opened 06-10 08:00 | 1000 on 06-11 10:00, 300 on 06-12 10:00 | both | both |
| 2 | opened 06-10 08:00; `other` opened 06-11 09:00 | 1000 on 06-11 10:00 | yes | claimed; last touch: `other` |
| 3 | opened 06-11 12:00 (after the check) | 1000 on 06-11 10:00 | yes | no |
| 4 | two emails, both opened (08:00, 09:30) | 1000 on 06-11 10:00 | yes | once (the 09:30 one) |
| 5 | SMS delivered 06-10 07:01 | 500 on 06-11 10:00 | yes | yes (SMS counts on delivery) |
| 6 | opened 06-10 08:00 | 500 on 06-11 10:00 | yes | yes |
| 7, 8 | delivered, never opened | 500 each on 06-11 10:00 | yes | no |
| 9 | delivered | 700 on 06-10 06:59 (before the send) | no | no |
| 10 | delivered | 900 on 06-20 07:00 (= send + 10 days: the window is half-open) | no | no |
| 11..19 | delivered | none | | |
| 20 | bounced | none | | |
| 101 | control | 800 on 06-12 10:00 | yes | — |
| 102 | control | 400 on 06-13 10:00 | yes | — |
| 103..110 | control | none | | |

Every test customer got a 100.00 bonus accrual; the ledger links one 40.00 redemption to it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl

from loyalty_assets.config.campaigns import Campaign

DAY = date(2025, 6, 10)
TEST = list(range(1, 21))
CONTROL = list(range(101, 111))
UTC_TS = pl.Datetime("us", "UTC")
MONEY = pl.Decimal(14, 2)


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def demo_campaign(**settings: object) -> Campaign:
    return Campaign.model_validate(
        {
            "id": "demo",
            "name": "Demo",
            "trigger": {"type": "fixed_date", "on_date": "2025-06-10", "at": "10:00"},
            "settings": {"control_group_percent": "33.34", "attribution_days": 10, **settings},
            "steps": [
                {"type": "accrue_bonuses", "id": "gift", "amount": "100.00", "lifetime_days": 30, "legal_entity": "X"},
                {"type": "send_email", "id": "mail", "subject": "Hi", "template": "x.html"},
            ],
        }
    )


def entrants() -> pl.DataFrame:
    ids = TEST + CONTROL
    return pl.DataFrame(
        {
            "customer_id": ids,
            "occasion": ["fixed:2025-06-10"] * len(ids),
            "partition_date": [DAY] * len(ids),
            "triggered_at": [t("2025-06-10T07:00")] * len(ids),
            "variant": [None] * len(ids),
            "is_control": [i in CONTROL for i in ids],
        },
        schema={
            "customer_id": pl.Int64(),
            "occasion": pl.String(),
            "partition_date": pl.Date(),
            "triggered_at": UTC_TS,
            "variant": pl.String(),
            "is_control": pl.Boolean(),
        },
    )


def outbox() -> pl.DataFrame:
    rows = [(f"m{i}", "demo", i, "sms" if i == 5 else "email", t("2025-06-10T07:00")) for i in TEST]
    rows.append(("m4b", "demo", 4, "email", t("2025-06-10T09:00")))
    rows.append(("o2", "other", 2, "email", t("2025-06-11T08:00")))
    frame = pl.DataFrame(
        rows,
        schema={
            "message_id": pl.String(),
            "campaign_id": pl.String(),
            "customer_id": pl.Int64(),
            "channel": pl.String(),
            "send_at": UTC_TS,
        },
        orient="row",
    )
    return frame.with_columns(
        pl.lit(None, dtype=pl.String()).alias("variant"),
        pl.lit(None, dtype=pl.String()).alias("occasion"),
        pl.lit(DAY).alias("partition_date"),
    ).with_columns(pl.when(pl.col("campaign_id") == "demo").then(pl.lit("fixed:2025-06-10")).alias("occasion"))


def communications() -> pl.DataFrame:
    rows: list[tuple[str, int, str, datetime]] = []
    for i in TEST:
        rows.append((f"m{i}", i, "sent", t("2025-06-10T07:00")))
        rows.append((f"m{i}", i, "bounced" if i == 20 else "delivered", t("2025-06-10T07:01")))
    opens = {
        "m1": "2025-06-10T08:00",
        "m2": "2025-06-10T08:00",
        "m3": "2025-06-11T12:00",
        "m4": "2025-06-10T08:00",
        "m6": "2025-06-10T08:00",
    }
    rows += [(m, int(m[1:]), "opened", t(at)) for m, at in opens.items()]
    rows += [
        ("m4b", 4, "sent", t("2025-06-10T09:00")),
        ("m4b", 4, "delivered", t("2025-06-10T09:01")),
        ("m4b", 4, "opened", t("2025-06-10T09:30")),
    ]
    rows += [("o2", 2, "sent", t("2025-06-11T08:00")), ("o2", 2, "opened", t("2025-06-11T09:00"))]
    return pl.DataFrame(
        rows,
        schema={"message_id": pl.String(), "customer_id": pl.Int64(), "event": pl.String(), "event_at": UTC_TS},
        orient="row",
    )


def checks() -> pl.DataFrame:
    rows = [
        ("c1", 1, "2025-06-11T10:00", "1000.00"),
        ("c1b", 1, "2025-06-12T10:00", "300.00"),
        ("c2", 2, "2025-06-11T10:00", "1000.00"),
        ("c3", 3, "2025-06-11T10:00", "1000.00"),
        ("c4", 4, "2025-06-11T10:00", "1000.00"),
        ("c5", 5, "2025-06-11T10:00", "500.00"),
        ("c6", 6, "2025-06-11T10:00", "500.00"),
        ("c7", 7, "2025-06-11T10:00", "500.00"),
        ("c8", 8, "2025-06-11T10:00", "500.00"),
        ("c9", 9, "2025-06-10T06:59", "700.00"),
        ("c10", 10, "2025-06-20T07:00", "900.00"),
        ("k101", 101, "2025-06-12T10:00", "800.00"),
        ("k102", 102, "2025-06-13T10:00", "400.00"),
    ]
    return pl.DataFrame(
        [(c, i, t(at), Decimal(x)) for c, i, at, x in rows],
        schema={"check_id": pl.String(), "customer_id": pl.Int64(), "ts": UTC_TS, "total": MONEY},
        orient="row",
    )


def customers() -> pl.DataFrame:
    ids = TEST + CONTROL
    return pl.DataFrame(
        {"customer_id": ids, "timezone": ["Europe/Moscow"] * len(ids)},
        schema={"customer_id": pl.Int64(), "timezone": pl.String()},
    )


def accruals() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "accrual_id": [f"demo:gift:{i}:fixed:2025-06-10" for i in TEST],
            "campaign_id": ["demo"] * len(TEST),
            "partition_date": [DAY] * len(TEST),
            "customer_id": TEST,
            "amount": [Decimal("100.00")] * len(TEST),
        },
        schema={
            "accrual_id": pl.String(),
            "campaign_id": pl.String(),
            "partition_date": pl.Date(),
            "customer_id": pl.Int64(),
            "amount": MONEY,
        },
    )


def ledger() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "txn_id": ["r1", "r2"],
            "customer_id": [1, 2],
            "ts": [t("2025-06-11T10:00"), t("2025-06-11T10:00")],
            "kind": ["redemption", "redemption"],
            "amount": [Decimal("-40.00"), Decimal("-50.00")],
            "source": ["demo:gift:1:fixed:2025-06-10", None],
        },
        schema={
            "txn_id": pl.String(),
            "customer_id": pl.Int64(),
            "ts": UTC_TS,
            "kind": pl.String(),
            "amount": MONEY,
            "source": pl.String(),
        },
    )
