"""`loyalty balance`: the detailed balance of the customer card, from the `bonus_expiry` fixture
(see its README) plus one campaign accrual written to the warehouse by hand.

Customer 4 (Gleb): T6 500 (no expiry), T7 redeems 200 → 300 left; a campaign accrual of 25.50
(expiring 10 Jul, legal entity Y) written for 1 July is a second lot, first in FIFO order.
Customer 1 (Anna) on 4 July: T1 and T2 expired that day, T3 (30, expiring 00:30 MSK on 5 Jul) is left.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from loyalty_assets.cli import main
from loyalty_assets.transforms.accruals import ACCRUALS_SCHEMA
from loyalty_assets.warehouse.warehouse import Warehouse
from tests.conftest import FIXTURES


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    monkeypatch.setenv("LOYALTY_DATA_DIR", str(FIXTURES / "bonus_expiry"))
    monkeypatch.setenv("LOYALTY_DATABASE_URL", url)
    accrual = pl.DataFrame(
        [
            {
                "accrual_id": "welcome:give:4:date:2025-07-01",
                "campaign_id": "welcome",
                "step_id": "give",
                "customer_id": 4,
                "occasion": "date:2025-07-01",
                "amount": Decimal("25.50"),
                "accrued_at": datetime(2025, 7, 1, 7, tzinfo=UTC),
                "expires_at": datetime(2025, 7, 10, 7, tzinfo=UTC),
                "legal_entity": "Y",
                "reason": "welcome",
            }
        ],
        schema=ACCRUALS_SCHEMA,
    )
    Warehouse(url).replace("bonus_accruals", accrual, {"campaign_id": "welcome", "partition_date": date(2025, 7, 1)})
    return url


def test_json_shape_and_amounts(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["balance", "4", "--date", "2025-07-04", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "customer_id": 4,
        "date": "2025-07-04",
        "balance": "325.50",
        "lots": [
            # FIFO order: the accrual with an expiry first, the one without last
            {
                "lot_id": "accrual:welcome:give:4:date:2025-07-01",
                "source": "welcome:give:4:date:2025-07-01",
                "amount": "25.50",
                "remaining": "25.50",
                "accrued_at": "2025-07-01T07:00:00+00:00",
                "expires_at": "2025-07-10T07:00:00+00:00",
                "legal_entity": "Y",
            },
            {
                "lot_id": "ledger:T6",
                "source": "T6",
                "amount": "500.00",
                "remaining": "300.00",
                "accrued_at": "2025-04-05T10:00:00+00:00",
                "expires_at": None,
                "legal_entity": "X",
            },
        ],
    }
    # before the campaign accrual existed
    assert main(["balance", "4", "--date", "2025-06-30", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["balance"] == "300.00"


def test_text_lists_lots_and_balance(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["balance", "1", "--date", "2025-07-04"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "customer 1 on 2025-07-04: balance 30.00"
    for lot in ("ledger:T1", "ledger:T2", "ledger:T3"):
        assert lot in text


def test_unknown_customer_is_one_line(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["balance", "99", "--date", "2025-07-04"]) == 2
    assert capsys.readouterr().err == "ERROR customer 99 is not in customers as of 2025-07-04\n"
