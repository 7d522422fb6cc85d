"""The ledger on generated sample data: a month of daily advances equals a rebuild every day, and the
sum of each customer's remainders is `bonus_balance` for every customer.

The sample's own `expiry` rows are a proportional approximation of FIFO (see sample_data's
docstring), so they disagree with the ledger for some lots: flagged, never applied.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from loyalty_assets.config.filters import parse_filter
from loyalty_assets.sample_data import generate
from loyalty_assets.sources.frames import AsOf
from loyalty_assets.sources.readers import make_reader
from loyalty_assets.sources.snapshot import load_snapshot
from loyalty_assets.transforms.features import compute_features, spec_for
from loyalty_assets.transforms.ledger import advance_lots, balances, build_lots, expiry_mismatches, ledger_entries

END = date(2025, 6, 30)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ledger_sample")
    generate(out, seed=7, customers=300, days=120, end_date=END, progress=False)
    return out


def test_a_month_day_by_day_equals_rebuilds_and_features(sample: Path) -> None:
    first = AsOf(END - timedelta(days=30))
    snapshot = load_snapshot(make_reader(sample, None, AsOf(END).cutoff), AsOf(END))
    entries = ledger_entries(snapshot.frames.bonus_transactions, snapshot.frames.own_accruals)
    lots = build_lots(entries, first.cutoff)
    spec = spec_for(parse_filter({"field": "bonus_balance", "op": "gt", "value": 0}))  # type: ignore[arg-type]
    assert spec is not None
    for n in range(1, 31):
        point = AsOf(first.date + timedelta(days=n))
        day = entries.filter((pl.col("ts") >= point.start_literal) & (pl.col("ts") < point.cutoff_literal))
        lots = advance_lots(lots, day, point.cutoff)
        assert_frame_equal(lots, build_lots(entries, point.cutoff))
    features = compute_features(snapshot.frames, AsOf(END), [spec])
    joined = features.select("customer_id", "bonus_balance").join(balances(lots), on="customer_id", how="left")
    assert joined.height > 250
    differ = joined.filter(pl.col("bonus_balance") != pl.col("balance").fill_null(0))
    assert differ.is_empty()
    # every accrual is a lot; remainders never exceed amounts; only overdraft lots are negative
    assert (
        lots.filter(~pl.col("lot_id").str.starts_with("overdraft:")).height
        == entries.filter((pl.col("kind") == "accrual") & (pl.col("ts") < AsOf(END).cutoff_literal)).height
    )
    assert lots.filter(pl.col("remaining") > pl.col("amount")).is_empty()
    assert lots.filter((pl.col("remaining") < 0) & ~pl.col("lot_id").str.starts_with("overdraft:")).is_empty()
    assert (lots["amount"] - lots["redeemed"] - lots["expired"] == lots["remaining"]).all()
    assert expiry_mismatches(lots, entries, AsOf(END).cutoff).height > 0  # the approximation, flagged
