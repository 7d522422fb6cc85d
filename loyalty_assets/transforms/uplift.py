"""The statistics of campaign results, delegated to statsmodels and scipy (never hand-rolled).

- Difference of two proportions (conversion): Newcombe's hybrid score interval built from Wilson
  intervals, `statsmodels.stats.proportion.confint_proportions_2indep(method="newcomb")`.
- Difference of two means (revenue per customer, average check): Welch's unequal-variance t
  interval, `statsmodels.stats.weightstats.CompareMeans(...).tconfint_diff(usevar="unequal")`,
  with its p-value from `ttest_ind(usevar="unequal")`.
- Sample-ratio mismatch: Pearson's chi-square goodness of fit of the observed test/control counts
  against the configured control percent, `scipy.stats.chisquare`; flagged below p = 0.001 (the
  usual SRM threshold: a real mismatch, not noise, since it is checked every day).
- A/B winner: the best variant wins only when its Newcombe interval against every other variant
  excludes zero at the configured confidence; otherwise nobody has won yet.

Intervals are floats (they are estimates); money point estimates stay exact Decimals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

SRM_P_THRESHOLD = 0.001


@dataclass(frozen=True)
class Interval:
    """A difference (a − b) with its two-sided interval at `confidence`, and the method's name."""

    estimate: float
    low: float
    high: float
    confidence: float
    method: str

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.low > 0 or self.high < 0


def proportion_difference(
    successes_a: int, n_a: int, successes_b: int, n_b: int, confidence: float = 0.95
) -> Interval | None:
    """p_a − p_b with Newcombe's (Wilson-score) interval; None when a group is empty."""
    if n_a == 0 or n_b == 0:
        return None
    from statsmodels.stats.proportion import confint_proportions_2indep

    low, high = confint_proportions_2indep(
        successes_a, n_a, successes_b, n_b, method="newcomb", compare="diff", alpha=1 - confidence
    )
    return Interval(successes_a / n_a - successes_b / n_b, float(low), float(high), confidence, "newcombe_wilson")


def mean_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Interval | None:
    """mean(a) − mean(b) with Welch's t interval; None when a group has fewer than 2 values or
    both groups have no spread (the interval is undefined, not zero-width)."""
    if len(a) < 2 or len(b) < 2 or _no_spread(a, b):
        return None
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    compare = CompareMeans(DescrStatsW(list(a)), DescrStatsW(list(b)))
    low, high = compare.tconfint_diff(alpha=1 - confidence, usevar="unequal")
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    estimate = sum(a) / len(a) - sum(b) / len(b)
    return Interval(float(estimate), float(low), float(high), confidence, "welch_t")


def welch_p_value(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test (None when undefined)."""
    if len(a) < 2 or len(b) < 2 or _no_spread(a, b):
        return None
    from statsmodels.stats.weightstats import ttest_ind

    _, p, _ = ttest_ind(list(a), list(b), usevar="unequal")
    return float(p) if math.isfinite(p) else None


def _no_spread(a: Sequence[float], b: Sequence[float]) -> bool:
    """Both groups constant: Welch's standard error is zero and the interval undefined."""
    return min(a) == max(a) and min(b) == max(b)


@dataclass(frozen=True)
class SampleRatio:
    test: int
    control: int
    expected_control_share: float
    observed_control_share: float | None
    chi_square: float | None
    p_value: float | None
    mismatch: bool


def sample_ratio_check(test: int, control: int, control_percent: Decimal) -> SampleRatio:
    """Is the observed control share compatible with the configured percent (chi-square, 1 df)?"""
    total = test + control
    expected = float(control_percent) / 100
    if total == 0 or expected <= 0 or expected >= 1:
        observed = control / total if total else None
        return SampleRatio(test, control, expected, observed, None, None, False)
    from scipy.stats import chisquare

    statistic, p = chisquare([test, control], f_exp=[total * (1 - expected), total * expected])
    return SampleRatio(test, control, expected, control / total, float(statistic), float(p), bool(p < SRM_P_THRESHOLD))


@dataclass(frozen=True)
class Winner:
    winner: str | None
    rates: dict[str, float]
    intervals: dict[str, Interval | None]  # best vs each other variant
    reason: str


def significant_winner(
    successes: Mapping[str, int], sizes: Mapping[str, int], confidence: float = 0.95, order: Sequence[str] = ()
) -> Winner:
    """The variant with the best rate, declared only when it beats every other one significantly.

    `order` breaks ties in rate (the first listed); without a significant lead there is no winner
    and the reason says so (the adaptive split then keeps splitting).
    """
    names = list(order) or sorted(sizes)
    rates = {v: (successes.get(v, 0) / sizes[v]) if sizes.get(v) else 0.0 for v in names}
    if len(names) < 2:
        return Winner(None, rates, {}, "fewer than two variants")
    best = max(names, key=lambda v: (rates[v], -names.index(v)))
    intervals = {
        other: proportion_difference(
            successes.get(best, 0), sizes.get(best, 0), successes.get(other, 0), sizes.get(other, 0), confidence
        )
        for other in names
        if other != best
    }
    level = f"{confidence:.0%}"
    weak = [o for o, i in intervals.items() if i is None or not i.significant]
    if weak:
        return Winner(None, rates, intervals, f"{best} leads but not significantly at {level} over {', '.join(weak)}")
    return Winner(best, rates, intervals, f"{best} is significantly better at {level}")
