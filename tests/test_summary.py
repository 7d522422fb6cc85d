"""`loyalty_assets.summary`: the per-campaign overview of a date, on small hand-made tables."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl
import pytest

from loyalty_assets.config.campaigns import Campaign
from loyalty_assets.config.catalog import load_catalog
from loyalty_assets.summary import compute_summary, to_markdown

DAY = date(2025, 6, 26)


@pytest.fixture(scope="module")
def campaigns() -> dict[str, Campaign]:
    shipped = load_catalog().campaigns
    return {
        "a": shipped["birthday_week_early"].model_copy(update={"id": "a"}),
        "b_paused": shipped["birthday_week_early"].model_copy(update={"id": "b_paused", "status": "paused"}),
        "c_later": shipped["birthday_week_early"].model_copy(update={"id": "c_later", "start_date": date(2025, 7, 1)}),
        "d_over": shipped["birthday_week_early"].model_copy(update={"id": "d_over", "end_date": date(2025, 6, 25)}),
        "e_gate": shipped["birthday_week_early"],
        "f_quiet": shipped["birthday_week_early"],
    }


def tables() -> dict[str, pl.DataFrame]:
    return {
        "triggered_customers": pl.DataFrame(
            {
                "campaign_id": ["a", "a", "a", "a"],
                "customer_id": [1, 2, 3, 4],
                "is_control": [False, False, True, True],
                "variant": ["email", "sms", None, "global_control"],
            }
        ),
        "bonus_accruals": pl.DataFrame(
            {"campaign_id": ["a", "a"], "amount": [Decimal("200.00"), Decimal("150.50")]},
            schema={"campaign_id": pl.String, "amount": pl.Decimal(14, 2)},
        ),
        "message_outbox": pl.DataFrame({"campaign_id": ["a", "a"], "channel": ["sms", "email"], "batch_no": [1, 2]}),
        "activity_events": pl.DataFrame(
            {
                "campaign_id": ["a", "a", "a"],
                "kind": ["entered", "message_skipped", "message_skipped"],
                "details": [None, "email first_email: no_email (birthday:2025-06-26)", "sms sms_step: no_phone (x)"],
            }
        ),
        "target_audiences": pl.DataFrame({"audience": ["promo", "promo", "vip"], "customer_id": [1, 2, 3]}),
    }


def members(rows: list[tuple[str, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"segment_id": pl.String, "customer_id": pl.Int64}, orient="row")


def test_one_line_per_campaign_with_counts_and_the_reason_when_nothing_happened(
    campaigns: dict[str, Campaign],
) -> None:
    summary = compute_summary(
        campaigns,
        DAY,
        tables(),
        members_today=members([("s", 1), ("s", 2), ("t", 9)]),
        members_yesterday=members([("s", 2), ("s", 3), ("u", 5)]),
        gate_failed={"e_gate"},
    )
    rows = {r["campaign"]: r for r in summary.campaigns.iter_rows(named=True)}
    assert list(rows) == ["a", "b_paused", "c_later", "d_over", "e_gate", "f_quiet"]  # every campaign, sorted
    a = rows["a"]
    assert (a["status"], a["triggered"], a["control"], a["global_control"]) == ("ok", 4, 1, 1)
    assert (a["accruals"], a["amount"]) == (2, Decimal("350.50"))  # exact decimals
    assert (a["messages"], a["skipped"], a["batches"]) == ("email 1, sms 1", "no_email 1, no_phone 1", 2)
    assert rows["b_paused"]["status"] == "paused"
    assert rows["c_later"]["status"] == "not started (starts 2025-07-01)"
    assert rows["d_over"]["status"] == "ended (2025-06-25)"
    assert rows["e_gate"]["status"] == "gate failed"
    assert rows["f_quiet"]["status"] == "nobody triggered"
    assert (rows["f_quiet"]["triggered"], rows["f_quiet"]["amount"], rows["f_quiet"]["messages"]) == (0, 0, "")
    # s: 1 entered, 3 left, 2 stayed; t: new; u: emptied.
    assert summary.segments.rows() == [("s", 2, 1, 1), ("t", 1, 1, 0), ("u", 0, 0, 1)]
    assert summary.audiences.rows() == [("promo", 2), ("vip", 1)]


def test_markdown_has_a_row_per_campaign_and_dashes_for_empty_cells(campaigns: dict[str, Campaign]) -> None:
    summary = compute_summary(campaigns, DAY, tables(), members_today=members([]), members_yesterday=members([]))
    text = to_markdown(summary)
    assert "| a | ok | 4 | 1 | 1 | 2 | 350.50 | email 1, sms 1 | no_email 1, no_phone 1 | 2 |" in text
    assert "| f_quiet | nobody triggered | 0 | 0 | 0 | 0 | 0.00 | – | – | 0 |" in text
    assert "(none saved)" in text  # no segment rows
