"""A loyalty-module promotion on checks: "N% off for a target audience on checks from X" (seed 004).

Seed 004 ends outside this project: the segment we export to `target_audiences` is imported by the
loyalty module (CRM → target audiences), which then runs the promotion «скидка 20% для этой ЦА на
чеки от 1 500 ₽» at the till. This pipeline never applies discounts itself. We still provide the
promotion's arithmetic as a pure function so the export can be verified end to end: given the
checks and the exported audience, which checks would get what discount. That makes "the promotion
can be evaluated on checks" (contract, scenario 5) a testable statement instead of a hand-off.

Money stays exact: totals are `Decimal`, the discount is computed on integer minor units
(Int128) and rounded half-up to kopecks, never through binary floats. Period, stores and
categories of a real promotion are the loyalty module's business and deliberately not modelled.
"""

from __future__ import annotations

from decimal import Decimal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from loyalty_assets.sources.schemas import MONEY

#: Output schema of `audience_discount`: one row per discounted check.
DISCOUNT_SCHEMA: dict[str, pl.DataType] = {
    "check_id": pl.String(),
    "customer_id": pl.Int64(),
    "total": MONEY,
    "discount": MONEY,
}

_HUNDRED = Decimal(100)


def audience_discount(
    checks: pl.DataFrame, audience: pl.DataFrame, *, percent: Decimal, min_total: Decimal
) -> pl.DataFrame:
    """Per check of an audience member with `total >= min_total`: the promotion's discount.

    `checks` needs `check_id`, `customer_id` and a Decimal `total`; `audience` needs `customer_id`
    (a customer listed twice still gets one discount per check). The discount is
    `total × percent / 100` rounded half-up (away from zero) to 2 places, as Decimal(14, 2).
    Returns `check_id, customer_id, total, discount` in the order of `checks`; a check whose
    discount rounds to 0.00 is still listed (the promotion applied, it was just worth nothing).

    Raises `TypeError` when `total` is not a Decimal column (a float total has already lost the
    kopecks this function promises to keep), `ValueError` for a percent outside [0, 100].
    """
    percent = Decimal(percent)
    min_total = Decimal(min_total)
    if not percent.is_finite() or not _HUNDRED >= percent >= 0:
        raise ValueError(f"percent must be between 0 and 100, got {percent}")
    if not min_total.is_finite():
        raise ValueError(f"min_total must be a finite amount, got {min_total}")
    missing = [c for c in ("check_id", "customer_id", "total") if c not in checks.columns]
    if missing or "customer_id" not in audience.columns:
        raise ValueError(
            f"checks need check_id, customer_id, total (missing {missing}); "
            f"audience needs customer_id (has {audience.columns})"
        )
    total_type = checks.schema["total"]
    if not isinstance(total_type, pl.Decimal):
        raise TypeError(f"checks.total must be a Decimal column, got {total_type}")

    # discount in kopecks = total × percent / 100 × 100 = units × P / 10^(scale + k), where
    # units = total × 10^scale and P = percent × 10^k are exact integers (Int128: no overflow for
    # Decimal(14, 2) totals even with a percent of many decimal places).
    scale = total_type.scale or 0
    exponent = percent.normalize().as_tuple().exponent
    k = max(0, -exponent) if isinstance(exponent, int) else 0
    p_int = int(percent.scaleb(k))
    denominator = 10 ** (scale + k)
    units = (pl.col("total") * pl.lit(10**scale)).cast(pl.Int128)
    numerator = units * pl.lit(p_int, pl.Int128)
    # Half-up on the magnitude, sign restored: floor((2|n| + d) / 2d) is |n|/d rounded half-up.
    kopecks = ((numerator.abs() * 2 + denominator) // (2 * denominator) * numerator.sign().cast(pl.Int128)).cast(
        pl.Decimal(38, 0)
    )

    members = audience.select(pl.col("customer_id").cast(pl.Int64)).unique()
    return (
        checks.select(
            pl.col("check_id").cast(pl.String),
            pl.col("customer_id").cast(pl.Int64),
            pl.col("total"),
        )
        .join(members, on="customer_id", how="semi", maintain_order="left")
        .filter(pl.col("total") >= pl.lit(min_total))
        .with_columns((kopecks * pl.lit(Decimal("0.01"))).cast(MONEY).alias("discount"))
        .with_columns(pl.col("total").cast(MONEY))
        .select(list(DISCOUNT_SCHEMA))
    )


class AudiencePromotion(BaseModel):
    """A promotion as the loyalty module would be configured: audience label, percent, minimum check.

    `AudiencePromotion(audience="promo_q1_women", percent=20, min_total=1500)` is seed 004's
    «скидка 20% для ЦА на чеки от 1 500 ₽».
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    audience: str = Field(min_length=1)
    percent: Decimal = Field(ge=0, le=100)
    min_total: Decimal = Field(ge=0)

    @field_validator("percent", "min_total", mode="before")
    @classmethod
    def _no_floats(cls, v: object) -> object:
        """0.1 as a float is not 0.1: amounts come as Decimal, int or text, never as float."""
        if isinstance(v, float):
            raise ValueError("expected a Decimal, int or text amount, not a float")
        return v

    def evaluate(self, checks: pl.DataFrame, target_audiences: pl.DataFrame) -> pl.DataFrame:
        """Discounts on `checks` for the members of this audience in a `target_audiences` frame.

        Rows of other labels are ignored when the frame has an `audience` column (the table holds
        every exported audience); a frame without it is taken as this audience's members.
        """
        members = target_audiences
        if "audience" in members.columns:
            members = members.filter(pl.col("audience") == self.audience)
        return audience_discount(checks, members, percent=self.percent, min_total=self.min_total)
