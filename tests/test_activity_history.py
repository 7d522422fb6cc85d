"""The lean activity log: `activity_events` keeps skips, waits and later ends; the history is complete.

The SQL view `activity_log` (the contract's table) and `warehouse.activity.customer_activity` (Polars)
derive entries, accruals, queued messages and same-run journey ends from their own tables; both must
give the same rows, on both dialects, for any amount and timestamp. An `activity_log` table of an
earlier release, and a `triggered_customers` table without the end columns, are migrated.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import polars as pl
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty_assets.warehouse.activity import customer_activity
from loyalty_assets.warehouse.warehouse import Warehouse

DAY = date(2025, 6, 26)
AT = datetime(2025, 6, 26, 7, 0, tzinfo=UTC)
SCOPE = {"campaign_id": "c1", "partition_date": DAY}
UTC_US = pl.Datetime("us", "UTC")


Ended = tuple[datetime, str, str] | None


def entrants(*customers: int, control: tuple[int, ...] = (), ends: list[Ended] | None = None) -> pl.DataFrame:
    n = len(customers)
    ended = ends or [None] * n
    return pl.DataFrame(
        {
            "customer_id": list(customers),
            "occasion": ["birthday:2025-07-03"] * n,
            "event_date": [date(2025, 7, 3)] * n,
            "triggered_at": pl.Series([AT] * n, dtype=UTC_US),
            "variant": [None] * n,
            "is_control": [c in control for c in customers],
            "check_id": [None] * n,
            "check_total": pl.Series([None] * n, dtype=pl.Decimal(14, 2)),
            "event_amount": pl.Series([None] * n, dtype=pl.Decimal(14, 2)),
            # the journey's end when the run that entered it ended it (else a row of activity_events)
            "ended_at": pl.Series([e[0] if e else None for e in ended], dtype=UTC_US),
            "ended_reason": pl.Series([e[1] if e else None for e in ended], dtype=pl.String()),
            "ended_step": pl.Series([e[2] if e else None for e in ended], dtype=pl.String()),
        },
        schema_overrides={"variant": pl.String(), "check_id": pl.String()},
    )


def accruals(amounts: list[Decimal], expires: list[datetime | None]) -> pl.DataFrame:
    n = len(amounts)
    return pl.DataFrame(
        {
            "accrual_id": [f"c1:bonus:{i + 1}:birthday:2025-07-03" for i in range(n)],
            "step_id": ["bonus"] * n,
            "customer_id": list(range(1, n + 1)),
            "occasion": ["birthday:2025-07-03"] * n,
            "amount": pl.Series(amounts, dtype=pl.Decimal(14, 2)),
            "accrued_at": pl.Series([AT] * n, dtype=UTC_US),
            "expires_at": pl.Series(expires, dtype=UTC_US),
            "legal_entity": ["X"] * n,
            "reason": ["Birthday bonus"] * n,
        }
    )


def outbox(*customers: int) -> pl.DataFrame:
    n = len(customers)
    return pl.DataFrame(
        {
            "message_id": [f"c1:mail:email:{c}:birthday:2025-07-03" for c in customers],
            "step_id": ["mail"] * n,
            "customer_id": list(customers),
            "occasion": ["birthday:2025-07-03"] * n,
            "channel": ["email"] * n,
            "recipient": [f"u{c}@example.com" for c in customers],
            "subject": ["Hi"] * n,
            "body": ["<p>a long body nobody reads back</p>"] * n,
            "template": ["t.html"] * n,
            "variant": pl.Series([None] * n, dtype=pl.String()),
            "send_at": pl.Series([AT + timedelta(hours=1)] * n, dtype=UTC_US),
            "batch_no": [1] * n,
        }
    )


def skipped(customer: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_id": [f"messages:c1:mail:email:{customer}:birthday:2025-07-03"],
            "customer_id": [customer],
            "ts": pl.Series([AT], dtype=UTC_US),
            "campaign_id": ["c1"],
            "kind": ["message_skipped"],
            "details": ["email mail: no_email (birthday:2025-07-03)"],
        }
    )


def write(
    wh: Warehouse, amounts: list[Decimal], expires: list[datetime | None], ends: list[Ended] | None = None
) -> None:
    n = len(amounts)
    with wh.transaction() as conn:
        wh.replace("triggered_customers", entrants(*range(1, n + 1), control=(n,), ends=ends), SCOPE, conn=conn)
        wh.replace("bonus_accruals", accruals(amounts, expires), SCOPE, conn=conn)
        wh.replace("message_outbox", outbox(*range(1, n)), SCOPE, conn=conn)
        wh.replace("activity_events", skipped(n), {**SCOPE, "stage": "messages"}, conn=conn)


def view_rows(wh: Warehouse) -> list[tuple[object, ...]]:
    query = "SELECT event_id, customer_id, kind, details, stage FROM activity_log ORDER BY event_id"
    with wh.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(query))]


def polars_rows(wh: Warehouse) -> list[tuple[object, ...]]:
    history = customer_activity(wh).sort("event_id")
    return history.select("event_id", "customer_id", "kind", "details", "stage").rows()


def test_history_by_hand(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    write(wh, [Decimal("500.00"), Decimal("0.10")], [datetime(2025, 7, 26, 7, 0, tzinfo=UTC), None])
    expected = [
        ("accruals:c1:c1:bonus:1:birthday:2025-07-03", 1, "bonus_accrued",
         "500.00 bonuses, expires 2025-07-26T07:00Z, legal entity X (birthday:2025-07-03)", "accruals"),
        ("accruals:c1:c1:bonus:2:birthday:2025-07-03", 2, "bonus_accrued",
         "0.10 bonuses, expires never, legal entity X (birthday:2025-07-03)", "accruals"),
        ("messages:c1:c1:mail:email:1:birthday:2025-07-03", 1, "message_queued",
         "email mail (birthday:2025-07-03)", "messages"),
        ("messages:c1:mail:email:2:birthday:2025-07-03", 2, "message_skipped",
         "email mail: no_email (birthday:2025-07-03)", "messages"),
        ("triggered:c1:1:birthday:2025-07-03", 1, "entered", "birthday:2025-07-03", "triggered"),
        ("triggered:c1:2:birthday:2025-07-03", 2, "entered_control_group", "birthday:2025-07-03", "triggered"),
    ]  # fmt: skip
    assert view_rows(wh) == expected
    assert polars_rows(wh) == expected
    # One customer's history in the order lived: entered, accrued, skipped.
    second = customer_activity(wh, {"customer_id": 2})
    assert second["kind"].to_list() == ["entered_control_group", "bonus_accrued", "message_skipped"]
    assert customer_activity(wh, SCOPE, kinds=("message_queued",))["customer_id"].to_list() == [1]


amount = st.decimals(min_value=0, max_value=Decimal("999999999999.99"), places=2, allow_nan=False)
instant = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda t: t.replace(tzinfo=UTC)
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            amount,
            st.none() | instant,
            st.none()
            | st.tuples(instant, st.sampled_from(["completed", "filtered_out"]), st.sampled_from(["", "mail"])),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_view_equals_polars_for_any_amount_expiry_and_end(tmp_path_factory, rows) -> None:  # type: ignore[no-untyped-def]
    wh = Warehouse(f"sqlite:///{tmp_path_factory.mktemp('activity')}/w.db")
    write(wh, [a for a, _, _ in rows], [e for _, e, _ in rows], [end for _, _, end in rows])
    assert view_rows(wh) == polars_rows(wh)
    ended = [i + 1 for i, (_, _, end) in enumerate(rows) if end is not None]
    journey = [r for r in polars_rows(wh) if r[2] == "journey_ended"]
    assert [r[1] for r in journey] == ended  # one derived end per entrant whose run ended it, no other


@pytest.mark.postgres
def test_view_equals_polars_on_postgres_edge_values(postgres_url: str) -> None:
    wh = Warehouse(postgres_url)
    edge = [Decimal("0.00"), Decimal("0.01"), Decimal("999999999999.99"), Decimal("1000.50")]
    ends: list[Ended] = [None, (AT, "completed", ""), (AT + timedelta(days=400), "filtered_out", "mail"), None]
    write(wh, edge, [None, datetime(2099, 12, 31, 23, 59, 59, 999000, tzinfo=UTC), AT, AT], ends)
    assert view_rows(wh) == polars_rows(wh)


def test_an_earlier_activity_log_table_is_migrated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path}/old.db"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE activity_log (event_id TEXT NOT NULL PRIMARY KEY, customer_id BIGINT NOT NULL, "
                "ts TIMESTAMP NOT NULL, campaign_id TEXT NOT NULL, kind TEXT NOT NULL, details TEXT, "
                "stage TEXT NOT NULL, partition_date DATE NOT NULL)"
            )
        )
        rows = [("e1", "entered", "triggered"), ("e2", "message_skipped", "messages"), ("e3", "waiting", "journey")]
        for event_id, kind, stage in rows:
            conn.execute(
                sa.text(
                    "INSERT INTO activity_log VALUES "
                    "(:e, 1, '2025-06-26 07:00:00.000000', 'c1', :k, NULL, :s, '2025-06-26')"
                ),
                {"e": event_id, "k": kind, "s": stage},
            )
    wh = Warehouse(url)
    kept = wh.read("activity_events").sort("event_id")
    assert kept["kind"].to_list() == ["message_skipped", "waiting"]  # `entered` now comes from triggered_customers
    assert [r[0] for r in view_rows(wh)] == ["e2", "e3"]


def test_an_earlier_triggered_customers_table_gets_the_end_columns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A warehouse of the release before same-run ends were kept on the entrant's row: the columns are
    added (empty), its ends stay rows of activity_events, and the view reads both."""
    url = f"sqlite:///{tmp_path}/old.db"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE triggered_customers (campaign_id TEXT NOT NULL, partition_date DATE NOT NULL, "
                "customer_id BIGINT NOT NULL, occasion TEXT NOT NULL, event_date DATE NOT NULL, "
                "triggered_at TIMESTAMP NOT NULL, variant TEXT, is_control BOOLEAN NOT NULL, check_id TEXT, "
                "check_total NUMERIC(14, 2), event_amount NUMERIC(14, 2), "
                "PRIMARY KEY (campaign_id, customer_id, occasion))"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO triggered_customers VALUES ('c1', '2025-06-26', 1, 'birthday:2025-07-03', "
                "'2025-07-03', '2025-06-26 07:00:00.000000', NULL, 0, NULL, NULL, NULL)"
            )
        )
    wh = Warehouse(url)
    row = wh.read("triggered_customers").row(0, named=True)
    assert (row["ended_at"], row["ended_reason"], row["ended_step"]) == (None, None, None)
    assert [r[2] for r in view_rows(wh)] == ["entered"]
