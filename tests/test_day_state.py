"""The cross-day state `loyalty_state`: what D−1 hands to D, bounded to what D can need.

Hand-computed cases for each kind of state, and a property test: compacting the manual-segment
event log never changes who is a member at the two cutoffs the next date asks about.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty_assets.sources.frames import AsOf
from loyalty_assets.transforms.day_state import (
    MANUAL_EVENT_SCHEMA,
    STATE_SCHEMAS,
    DayState,
    compact_manual_events,
    manual_members_at,
)

D = date(2025, 6, 26)
MSK = "Europe/Moscow"


def utc(y: int, m: int, d: int, h: int = 9) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC)


def frame(name: str, rows: list[dict]) -> pl.DataFrame:
    schema = STATE_SCHEMAS[name]
    return pl.DataFrame([{c: r.get(c) for c in schema} for r in rows], schema=schema)


def outbox_row(campaign: str, day: date, customer: int) -> dict:
    return {
        "campaign_id": campaign,
        "partition_date": day,
        "message_id": f"{campaign}:s:email:{customer}:o{day}",
        "customer_id": customer,
        "channel": "email",
        "send_at": utc(day.year, day.month, day.day),
    }


def state_with(**frames: pl.DataFrame) -> DayState:
    return DayState.from_frames({"meta": pl.DataFrame({"as_of": [D - timedelta(days=1)]}), **frames})


def test_recent_messages_are_the_cap_window_of_earlier_dates() -> None:
    state = state_with(
        outbox=frame(
            "outbox",
            [
                outbox_row("a", date(2025, 6, 24), 2),  # inside the 7-day window: counted
                outbox_row("b", date(2025, 6, 18), 3),  # 26 − 8 = 18: the extra day of margin, counted
                outbox_row("b", date(2025, 6, 17), 4),  # before the window: not counted
            ],
        )
    )
    assert sorted(state.recent_messages(AsOf(D, MSK), days=7)["customer_id"]) == [2, 3]


def test_next_keeps_the_cap_window_and_adaptive_campaigns_history_only() -> None:
    earlier = state_with(
        outbox=frame(
            "outbox",
            [
                outbox_row("a", date(2025, 6, 1), 1),
                outbox_row("ab", date(2025, 6, 1), 2),
                outbox_row("a", date(2025, 6, 22), 3),
                outbox_row("a", D, 99),  # D's own rows (from an earlier run of D) are replaced
            ],
        )
    )
    today = frame("outbox", [outbox_row("a", D, 4)]).drop("partition_date")
    after = earlier.next(
        AsOf(D, MSK),
        members={},
        triggered={},
        accruals=[],
        outbox=[today],
        pending={},
        manual_events=[],
        cap_days=7,
        adaptive_campaigns=["ab"],
    )
    # 1 Jun of campaign a: outside 26 − 7 = 19 Jun; 1 Jun of the adaptive campaign: kept for its decision
    assert sorted(after.outbox["customer_id"]) == [2, 3, 4]
    assert after.as_of == D


def test_pending_tokens_wait_until_their_day_then_leave_the_state() -> None:
    token = {"customer_id": 7, "occasion": "o", "event_date": D, "node": "1", "variant": None}
    earlier = state_with(
        pending=frame(
            "pending",
            [
                {**token, "campaign_id": "c", "at": utc(2025, 6, 26, 10)},  # due on 26 Jun (13:00 MSK)
                {**token, "campaign_id": "c", "customer_id": 8, "at": utc(2025, 6, 30, 10)},  # due later
                {**token, "campaign_id": "other", "at": utc(2025, 6, 26, 10)},
            ],
        )
    )
    point = AsOf(D, MSK)
    assert earlier.pending_due("c", point)["customer_id"].to_list() == [7]
    after = earlier.next(
        point,
        members={},
        triggered={},
        accruals=[],
        outbox=[],
        pending={},
        manual_events=[],
        cap_days=None,
        adaptive_campaigns=[],
    )
    assert after.pending["customer_id"].to_list() == [8]  # those due on D were run by D


def test_own_accruals_count_from_the_next_day_and_only_before_the_cutoff() -> None:
    accrual = {"campaign_id": "c", "step_id": "s", "occasion": "o", "amount": "100.00", "legal_entity": "X"}
    state = DayState.from_frames(
        {
            "accruals": frame(
                "accruals",
                [
                    {
                        **accrual,
                        "accrual_id": "1",
                        "customer_id": 1,
                        "partition_date": date(2025, 6, 25),
                        "accrued_at": utc(2025, 6, 25),
                    },
                    {
                        **accrual,
                        "accrual_id": "2",
                        "customer_id": 2,
                        "partition_date": D,
                        "accrued_at": utc(2025, 6, 26),
                    },
                ],
            )
        }
    )
    assert state.own_accruals(AsOf(D, MSK))["customer_id"].to_list() == [1]


def event(n: int, customer: int, action: str, ts: datetime, segment: str = "vip") -> dict:
    return {
        "event_id": f"e{n}",
        "segment_id": segment,
        "customer_id": customer,
        "action": action,
        "ts": ts,
        "campaign_id": "c",
    }


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 4),  # customer
            st.sampled_from(["add", "remove"]),
            st.integers(0, 5 * 24 - 1),  # hour from 22 Jun 00:00 UTC
            st.sampled_from(["vip", "lapsed"]),
        ),
        max_size=25,
    )
)
def test_compacting_manual_events_keeps_members_at_the_next_cutoffs(
    rows: list[tuple[int, str, int, str]],
) -> None:
    base = datetime(2025, 6, 22, tzinfo=UTC)
    events = pl.DataFrame(
        [event(i, c, a, base + timedelta(hours=h), s) for i, (c, a, h, s) in enumerate(rows)],
        schema=MANUAL_EVENT_SCHEMA,
    )
    point = AsOf(D, MSK)
    compact = compact_manual_events(events, point)
    for cutoff in (AsOf(D - timedelta(days=1), MSK), point):  # starts of D and of D+1
        full = {k: v["customer_id"].to_list() for k, v in manual_members_at(events, cutoff).items()}
        kept = {k: v["customer_id"].to_list() for k, v in manual_members_at(compact, cutoff).items()}
        assert kept == full
    assert compact.height <= events.height


def test_manual_members_of_a_day_are_those_added_before_it_began() -> None:
    events = pl.DataFrame(
        [
            event(1, 1, "add", utc(2025, 6, 25, 12)),  # added on 25 Jun: member on 26 Jun
            event(2, 2, "add", utc(2025, 6, 26, 12)),  # added during 26 Jun: member from 27 Jun
            event(3, 3, "add", utc(2025, 6, 24, 12)),
            event(4, 3, "remove", utc(2025, 6, 25, 12)),  # removed on 25 Jun
        ],
        schema=MANUAL_EVENT_SCHEMA,
    )
    state = state_with(manual_events=events)
    members = state.manual_members(["vip", "never_used"], D, MSK)
    assert members["vip"]["customer_id"].to_list() == [1]
    assert members["never_used"].is_empty()


def test_a_stored_state_reads_back_whole_or_only_the_frames_asked_for(tmp_path) -> None:
    """`loyalty_state` is a folder of frames: the daily asset reads all of them, the ledger only
    `accruals` (`STATE_FRAMES`), and what was not read comes back empty, not missing."""
    from loyalty_assets.warehouse.history import read_folder, write_folder

    state = DayState.empty()
    frames = state.to_frames() | {"accruals": state.accruals.clear()}
    write_folder(tmp_path / "2025-06-10", frames)
    assert sorted(read_folder(tmp_path / "2025-06-10") or {}) == sorted(frames)
    only = read_folder(tmp_path / "2025-06-10", ["accruals"])
    assert only is not None and list(only) == ["accruals"]
    assert DayState.from_frames(only).triggered.is_empty()
    assert read_folder(tmp_path / "2025-06-11") is None
