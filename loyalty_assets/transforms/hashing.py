"""Stable pseudo-random buckets for control groups, A/B splits and samples.

Python's `hash()` is salted per process and Polars' `Expr.hash` may change between versions; a
control group must contain the same customers in every run and every release. SplitMix64 over the
customer id, keyed by a SHA-256 of the salt (e.g. the campaign id), is both stable and vectorised.
"""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl

BUCKETS = 10_000


def _splitmix64(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def stable_bucket(customer_ids: pl.Series, salt: str) -> pl.Series:
    """A bucket in [0, 10000) per customer id, the same for the same (salt, id) forever."""
    key = np.uint64(int.from_bytes(hashlib.sha256(salt.encode()).digest()[:8], "big"))
    ids = customer_ids.cast(pl.Int64).to_numpy().astype(np.uint64)
    return pl.Series(customer_ids.name, _splitmix64(ids ^ key) % np.uint64(BUCKETS)).cast(pl.Int64)


def in_percent(customer_ids: pl.Series, salt: str, percent: float) -> pl.Series:
    """True for about `percent` % of the ids, deterministically."""
    return stable_bucket(customer_ids, salt) < round(float(percent) * BUCKETS / 100)
