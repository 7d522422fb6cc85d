"""Stable pseudo-random buckets for control groups, A/B splits, `random_sample` segments and shards.

The one place the project hashes customers. Python's `hash()` is salted per process and Polars'
`Expr.hash` may change between versions; a control group must contain the same customers in every
run and every release. SplitMix64's finaliser over the customer id XOR a key (the first 8 bytes
of SHA-256 of the salt, e.g. the campaign id), in wrapping UInt64 arithmetic, is both stable and
vectorised. Buckets are the hash modulo 10,000, so percents have two decimals of resolution.
"""

from __future__ import annotations

import hashlib

import polars as pl

BUCKETS = 10_000
_U64 = pl.UInt64


def salt_key(salt: str) -> int:
    """The 64-bit key of `salt` (first 8 bytes of its SHA-256, big-endian)."""
    return int.from_bytes(hashlib.sha256(salt.encode("utf-8")).digest()[:8], "big")


def splitmix64(x: pl.Expr) -> pl.Expr:
    """SplitMix64 finaliser on a UInt64 expression (wrapping arithmetic; shifts as divisions)."""
    z = x + pl.lit(0x9E3779B97F4A7C15, _U64)
    z = z.xor(z // pl.lit(1 << 30, _U64)) * pl.lit(0xBF58476D1CE4E5B9, _U64)
    z = z.xor(z // pl.lit(1 << 27, _U64)) * pl.lit(0x94D049BB133111EB, _U64)
    return z.xor(z // pl.lit(1 << 31, _U64))


def customer_hash(customer_id: pl.Expr, salt: str) -> pl.Expr:
    """A UInt64 per customer id, the same for the same (salt, id) forever."""
    return splitmix64(customer_id.cast(pl.Int64).cast(_U64, wrap_numerical=True).xor(pl.lit(salt_key(salt), _U64)))


def bucket_expr(customer_id: pl.Expr, salt: str) -> pl.Expr:
    """A bucket in [0, 10000) per customer id, the same for the same (salt, id) forever."""
    return (customer_hash(customer_id, salt) % pl.lit(BUCKETS, _U64)).cast(pl.Int64)


def percent_threshold(percent: float) -> int:
    return round(float(percent) * BUCKETS / 100)


def in_percent_expr(customer_id: pl.Expr, salt: str, percent: float) -> pl.Expr:
    """True for about `percent` % of the ids, deterministically."""
    return bucket_expr(customer_id, salt) < percent_threshold(percent)


def stable_bucket(customer_ids: pl.Series, salt: str) -> pl.Series:
    """`bucket_expr` over a Series (keeps its name)."""
    return pl.select(bucket_expr(pl.lit(customer_ids), salt).alias(customer_ids.name)).to_series()


def in_percent(customer_ids: pl.Series, salt: str, percent: float) -> pl.Series:
    """`in_percent_expr` over a Series."""
    return pl.select(in_percent_expr(pl.lit(customer_ids), salt, percent).alias(customer_ids.name)).to_series()
