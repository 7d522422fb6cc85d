"""Customer shards: the day's per-customer work split by a stable hash, and put back together.

Every rule of a day reads one customer's rows at a time (features, segments, triggers, entry rules,
journeys, accruals, rendering, the frequency cap), so the customers can be split into `count`
shards by a hash of the customer id and each shard run on its own rows. What is not per customer
is done once, around the shards (`transforms.campaign_day.run_day`): the adaptive A/B decisions
before, the audience gates and the hourly send limits after.

The split is the project's stable hash (`transforms.hashing`) of the customer id with its own salt,
so a customer stays in one shard on every run and release. Results of the shards are merged in one
canonical row order (`canonical`), which is what makes the outputs the same for any shard count:
one shard is not a special case, it goes through the same merge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from loyalty_assets.transforms.hashing import customer_hash

CUSTOMER = "customer_id"
_SALT = "customer-shard"


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0 ≤ index < count)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count} does not exist")

    @property
    def whole(self) -> bool:
        return self.count == 1

    def keep(self, column: str = CUSTOMER) -> pl.Expr:
        """True for the rows of this shard's customers (every row when there is one shard)."""
        if self.whole:
            return pl.lit(True)
        return shard_of(pl.col(column), self.count) == self.index

    def rows(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The frame's rows of this shard's customers; a frame without customers stays whole."""
        if self.whole or CUSTOMER not in frame.columns:
            return frame
        return frame.filter(self.keep())

    def __str__(self) -> str:
        return f"{self.index + 1}/{self.count}"


#: the one shard of a day that is not split
EVERYONE = Shard()


def shard_of(customer_id: pl.Expr, count: int) -> pl.Expr:
    """The shard (0 … count−1) of each customer id, the same forever for the same count."""
    return (customer_hash(customer_id, _SALT) % pl.lit(count, pl.UInt64)).cast(pl.Int64)


def all_shards(count: int) -> list[Shard]:
    return [Shard(i, count) for i in range(count)]


def _sortable(dtype: pl.DataType) -> bool:
    return not isinstance(dtype, pl.List | pl.Array | pl.Struct | pl.Object)


def canonical(frame: pl.DataFrame, first: Sequence[str] = ()) -> pl.DataFrame:
    """The frame in one fixed row order: by `first` (the frame's key: a customer's row of features,
    a message id), or by every sortable column when `first` does not tell every row apart.

    Rows equal on every sortable column are identical in practice (a list column is derived from
    them); the order of such ties is the input's, so it is the same for the same input.
    """
    if frame.height < 2:
        return frame
    head = [c for c in first if c in frame.columns]
    if head and _strictly_increasing(frame, head):
        return frame  # in that order already (a state frame stored sorted, one shard's features)
    if head and not frame.select(pl.struct(head).is_duplicated().any()).item():
        return frame.sort(head, nulls_last=True)
    keys = head + [c for c, t in frame.schema.items() if c not in head and _sortable(t)]
    return frame.sort(keys, nulls_last=True, maintain_order=True) if keys else frame


def _strictly_increasing(frame: pl.DataFrame, keys: Sequence[str]) -> bool:
    """Whether every row's `keys` come strictly after the previous row's (so the rows are in key
    order and the keys tell them apart): one vectorised pass instead of a sort. Nulls come last,
    as `canonical` sorts them."""
    if frame.height < 2:
        return True
    after = pl.lit(False)
    same = pl.lit(True)
    for key in keys:
        this, following = pl.col(key), pl.col(key).shift(-1)
        less = (this < following).fill_null(False) | (this.is_not_null() & following.is_null())
        equal = (this == following).fill_null(False) | (this.is_null() & following.is_null())
        after = after | (same & less)
        same = same & equal
    return bool(frame.select(after.head(frame.height - 1).all()).item())


def stack(parts: Iterable[pl.DataFrame], first: Sequence[str] = ()) -> pl.DataFrame:
    """The shards' parts of one frame, as one frame in canonical order."""
    frames = list(parts)
    if len(frames) == 1:
        return canonical(frames[0], first)
    return canonical(pl.concat(frames, how="vertical_relaxed"), first)


def stack_frames(
    parts: Iterable[Mapping[str, pl.DataFrame]],
    *,
    keys: Callable[[str], Sequence[str]] = lambda name: (),
    ordered: bool = True,
) -> dict[str, pl.DataFrame]:
    """Frames by name from every shard, each stacked (in canonical order by `keys(name)` unless not
    `ordered`); a frame without customers (a meta row) is the same in every shard and is taken once."""
    frames = list(parts)
    out: dict[str, pl.DataFrame] = {}
    for name in frames[0]:
        pieces = [f[name] for f in frames]
        whole = (
            pieces[0]
            if len(pieces) == 1 or CUSTOMER not in pieces[0].columns
            else pl.concat(pieces, how="vertical_relaxed")
        )
        out[name] = in_canonical_order(name, whole, keys) if ordered else whole
    return out


def in_canonical_order(
    name: str, frame: pl.DataFrame, keys: Callable[[str], Sequence[str]] = lambda name: ()
) -> pl.DataFrame:
    """Frame `name` of a set in canonical order by `keys(name)`; one without customers (a meta row,
    the same in every shard) as it is."""
    return canonical(frame, keys(name)) if CUSTOMER in frame.columns else frame


def stack_series(parts: Iterable[pl.Series | None]) -> pl.Series | None:
    """Sorted customer ids from every shard (None when no shard had any: e.g. no audience rule)."""
    got = [p for p in parts if p is not None]
    if not got:
        return None
    return pl.concat(got).sort()


def add_counts(parts: Iterable[Mapping[str, int]], flags: Iterable[str] = ()) -> dict[str, int]:
    """Per-rule counts summed over the shards (keys in order of first appearance); a key in
    `flags` says something of the whole day (e.g. `not_live`), so it is taken once, not summed."""
    once = set(flags)
    out: dict[str, int] = {}
    for counts in parts:
        for key, value in counts.items():
            out[key] = max(out.get(key, 0), value) if key in once else out.get(key, 0) + value
    return out
