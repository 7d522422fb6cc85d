"""Unit tests of `audience_discount`: the loyalty module's "N% off for an audience on checks from X".

Each expectation is worked out by hand in a comment. The half-up cases are chosen so that a float
implementation (`round(total * 0.15, 2)`) or banker's rounding would give a different kopeck.
"""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest
from pydantic import ValidationError

from loyalty_assets.transforms.promotions import DISCOUNT_SCHEMA, AudiencePromotion, audience_discount


def checks(*rows: tuple[str, int, str]) -> pl.DataFrame:
    """Checks frame typed like the source reader's (`total` Decimal(14, 2), parsed from text)."""
    return pl.DataFrame(
        {
            "check_id": [r[0] for r in rows],
            "customer_id": [r[1] for r in rows],
            "total": pl.Series([r[2] for r in rows], dtype=pl.String).cast(pl.Decimal(14, 2)),
        },
        schema={"check_id": pl.String, "customer_id": pl.Int64, "total": pl.Decimal(14, 2)},
    )


def audience(*ids: int) -> pl.DataFrame:
    return pl.DataFrame({"customer_id": list(ids)}, schema={"customer_id": pl.Int64})


def discounts(frame: pl.DataFrame) -> dict[str, Decimal]:
    return dict(zip(frame["check_id"], frame["discount"], strict=True))


def test_seed_004_twenty_percent_from_1500() -> None:
    out = audience_discount(
        checks(("a", 1, "1500.00"), ("b", 1, "1499.99"), ("c", 2, "2000.00"), ("d", 1, "2345.67")),
        audience(1),
        percent=Decimal(20),
        min_total=Decimal(1500),
    )
    # a: 1500.00 × 0.2 = 300.00 (the bound is inclusive); b: below 1500; c: customer 2 is not in the
    # audience; d: 2345.67 × 0.2 = 469.134 → 469.13.
    assert out.schema == pl.Schema(DISCOUNT_SCHEMA)
    assert out.rows() == [
        ("a", 1, Decimal("1500.00"), Decimal("300.00")),
        ("d", 1, Decimal("2345.67"), Decimal("469.13")),
    ]


def test_rounds_half_up_at_half_a_kopeck() -> None:
    out = audience_discount(
        checks(("a", 1, "10.10"), ("b", 1, "30.50"), ("c", 1, "10.30"), ("d", 1, "0.10")),
        audience(1),
        percent=Decimal(5),
        min_total=Decimal(0),
    )
    # 5% of 10.10 = 0.505 → 0.51 (banker's rounding would keep 0.50);
    # 5% of 30.50 = 1.525 → 1.53 (banker's: 1.52; float 30.5 * 0.05 = 1.5250000000000001 → 1.53 by luck);
    # 5% of 10.30 = 0.515 → 0.52;  5% of 0.10 = 0.005 → 0.01 (the smallest tie, still rounded up).
    assert discounts(out) == {
        "a": Decimal("0.51"),
        "b": Decimal("1.53"),
        "c": Decimal("0.52"),
        "d": Decimal("0.01"),
    }


def test_exact_where_floats_are_not() -> None:
    out = audience_discount(
        checks(("a", 1, "10.10"), ("b", 1, "1.15"), ("c", 1, "999999999999.99")),
        audience(1),
        percent=Decimal(15),
        min_total=Decimal(0),
    )
    # a: 10.10 × 0.15 = 1.515 → 1.52, while the float 10.1 * 0.15 is 1.51499999999999990... (it
    #    prints as 1.515) and rounds to 1.51.
    # b: 1.15 × 0.15 = 0.1725 → 0.17 (below the half: rounded down).
    # c: the largest Decimal(14, 2): 999999999999.99 × 0.15 = 149999999999.9985 → 150000000000.00
    #    (the float product is 149999999999.99850463..., right only by luck: 16 digits is all it has).
    assert round(10.1 * 0.15, 2) == 1.51  # the trap this function avoids
    assert discounts(out) == {
        "a": Decimal("1.52"),
        "b": Decimal("0.17"),
        "c": Decimal("150000000000.00"),
    }
    assert all(v.as_tuple().exponent == -2 for v in out["discount"])  # always two places


def test_fractional_percent_and_threshold_between_kopecks() -> None:
    out = audience_discount(
        checks(("a", 1, "1500.00"), ("b", 1, "1499.99"), ("c", 1, "1000.01")),
        audience(1),
        percent=Decimal("12.5"),
        min_total=Decimal("1000.005"),
    )
    # 12.5% of 1500.00 = 187.50; of 1499.99 = 187.49875 → 187.50; of 1000.01 = 125.00125 → 125.00.
    # 1000.01 ≥ 1000.005 compares exactly (no threshold rounding).
    assert discounts(out) == {"a": Decimal("187.50"), "b": Decimal("187.50"), "c": Decimal("125.00")}


def test_empty_audience_gives_an_empty_typed_frame() -> None:
    out = audience_discount(checks(("a", 1, "5000.00")), audience(), percent=Decimal(20), min_total=Decimal(1500))
    assert out.is_empty()
    assert out.schema == pl.Schema(DISCOUNT_SCHEMA)


def test_no_checks_gives_an_empty_typed_frame() -> None:
    out = audience_discount(checks(), audience(1), percent=Decimal(20), min_total=Decimal(1500))
    assert out.is_empty()
    assert out.schema == pl.Schema(DISCOUNT_SCHEMA)


def test_duplicate_audience_rows_do_not_duplicate_discounts_and_order_is_kept() -> None:
    out = audience_discount(
        checks(("z", 1, "2000.00"), ("a", 2, "1600.00"), ("m", 1, "1500.00")),
        audience(1, 1, 2),
        percent=Decimal(20),
        min_total=Decimal(1500),
    )
    # One row per check, in the checks' own order: 400.00, 320.00, 300.00.
    assert out.select("check_id", "discount").rows() == [
        ("z", Decimal("400.00")),
        ("a", Decimal("320.00")),
        ("m", Decimal("300.00")),
    ]


def test_zero_and_hundred_percent() -> None:
    data = checks(("a", 1, "1234.56"))
    assert discounts(audience_discount(data, audience(1), percent=Decimal(0), min_total=Decimal(0))) == {
        "a": Decimal("0.00")
    }
    assert discounts(audience_discount(data, audience(1), percent=Decimal(100), min_total=Decimal(0))) == {
        "a": Decimal("1234.56")
    }


def test_rejects_float_totals_and_impossible_percents() -> None:
    floats = pl.DataFrame({"check_id": ["a"], "customer_id": [1], "total": [1500.0]})
    with pytest.raises(TypeError, match="Decimal"):
        audience_discount(floats, audience(1), percent=Decimal(20), min_total=Decimal(1500))
    with pytest.raises(ValueError, match="between 0 and 100"):
        audience_discount(checks(), audience(1), percent=Decimal(120), min_total=Decimal(0))
    with pytest.raises(ValueError, match="between 0 and 100"):
        audience_discount(checks(), audience(1), percent=Decimal(-5), min_total=Decimal(0))


def test_promotion_model_reads_its_audience_from_target_audiences() -> None:
    promo = AudiencePromotion(audience="promo_q1_women", percent=Decimal(20), min_total=Decimal(1500))
    exported = pl.DataFrame(
        {"audience": ["promo_q1_women", "other_label"], "customer_id": [1, 2]},
        schema={"audience": pl.String, "customer_id": pl.Int64},
    )
    out = promo.evaluate(checks(("a", 1, "1500.00"), ("b", 2, "1500.00")), exported)
    # Customer 2 belongs to another label: only check a, 300.00.
    assert discounts(out) == {"a": Decimal("300.00")}


def test_promotion_model_refuses_floats_and_bad_percents() -> None:
    with pytest.raises(ValidationError, match="not a float"):
        AudiencePromotion(audience="x", percent=0.1, min_total=Decimal(0))  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        AudiencePromotion(audience="x", percent=Decimal(101), min_total=Decimal(0))
    assert AudiencePromotion(audience="x", percent="20", min_total=1500).percent == Decimal(20)  # type: ignore[arg-type]
