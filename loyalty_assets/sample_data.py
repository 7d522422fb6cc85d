"""Seeded synthetic sample data for the nine source tables of the data contract.

Why it exists: `make run`, the tests, the Dagster UI and the benchmark all need believable input that
exercises the contract's hard cases (29 February birthdays, customers without a time zone, late checks,
bonus expiries, favourite categories, a category tree, rows quarantine must set aside) without anyone
shipping real customer data. One seeded function makes every one of those data sets, from a few hundred
customers for a unit test to the benchmark's 1,000,000 customers and ~20 million check lines.

    python -m loyalty_assets.sample_data --out data --customers 5000 --days 400 \
        --end-date 2025-06-30 --seed 42 [--format csv] [--no-bad-rows] [--if-absent]

Layout of `out_dir`:

- `NAME.parquet` for every table; `check_items` becomes a folder of parts `check_items/part-0000.parquet`
  … when the run needs more than one chunk of customers (more than `CHUNK_CUSTOMERS`), so neither the
  generator nor a reader has to hold 20 million lines as one file.
- `--format csv` writes `NAME.csv` (UTF-8, header row) for every table, `check_items` included, as one
  file appended chunk by chunk. The `labels` list column is written as its items joined by `|`
  (`vip|employee`; an empty list is an empty field), which is what `sources.readers` splits back.
- Each run replaces any earlier copy of the nine tables in `out_dir`, in either format, so a reader can
  never mix two generations. Files are written to a staging folder first and moved into place at the
  end, `customers` last, so a crashed run never leaves a `customers` file that `--if-absent` would
  mistake for a complete data set.

Determinism: every random draw comes from `numpy.random.default_rng((seed, stream, chunk))` with a fixed
stream number per table and a fixed chunk size, and nothing reads the wall clock, so the same arguments
give byte-identical files on any machine. `bad_rows` only appends rows drawn from their own stream: the
good rows are the same with or without them.

Conventions a reader of the data needs:

- All timestamps are UTC. Human activity (registrations, checks, visits, message sends) happens in
  daytime in the customer's own time zone (the program zone `Europe/Moscow` when the customer has none),
  converted with that zone's real UTC offset on that day. Nothing happens after the end of `end_date`
  in the program zone, except `checks.loaded_at` and `bonus_transactions.expires_at`.
- `checks` has one extra column, `loaded_at`: when the check reached the warehouse. Normally a minute to a
  few hours after `ts`; about 1% arrive one to three days late, so a run for a date can miss a check that
  a later backfill of the same date sees.
- `checks.total` is exactly the sum of the check's `check_items.amount`; `discount` (≤ 15% of the total)
  and `bonus_spent` are parts of it, never more than it.
- `bonus_transactions.amount` is always positive; `kind` gives the direction: `accrual` adds to the
  balance, `redemption` and `expiry` take away. Purchase accruals are 1-5% of the check total (per
  customer rate), expire after 180 days, and their `legal_entity` is that of the store (`LE-Partner` for
  the partner stores S37-S40, `LE-Main` otherwise); promo accruals (`source = promo`, 100-1000 bonuses)
  expire after 30 days. A redemption is a check's `bonus_spent`. An accrual that reached its `expires_at`
  before the end gets an `expiry` row for the share of it that the customer did not spend overall (a
  proportional approximation of a FIFO ledger: redemptions never exceed what was accrued before them,
  and redemptions plus expiries never exceed accruals). `source` is the check the bonuses came from or
  were spent on, or `promo`.
- `customer_attributes` holds `loyalty_tier` (bronze/silver/gold) from registration on, with 0-3 changes,
  and `pet_type` (cat/dog/fish) for about a quarter of customers; a closed version's `valid_to` is the
  next version's `valid_from`, the current one's is null.
- `favourite_categories` covers the four calendar months up to `end_date`'s; the eligible categories mix
  leaves (`coffee_tea`) and inner nodes of the tree (`dairy`), so a reader must roll categories up.
- `communications` are fortnightly newsletters (`camp_newsletter_YYYY_MM_DD`), each to ~7% of the
  customers registered by then, on a channel they are subscribed to; events follow the message (sent,
  then delivered or bounced, opened, clicked). An `unsubscribed` event is the last email of a customer
  who is no longer `email_subscribed`; nobody still subscribed has one.
- 1% of the customers registered in a sign-up drive 1 year and 4 days before `end_date` (26 June 2024 for
  the default end) and started shopping later, so the sample date has enough membership anniversaries
  to show a control group.
- Check ids `C000000001…` increase with time within each chunk of customers, not across chunks.

Bad rows (`bad_rows=True`, the default): about 0.05% of each kind, at least one of each, every one easy to
spot. Their checks have ids starting with `BAD-` and carry consistent items and totals:

- `BAD-NULLCUST-…`: a check with a null `customer_id`;
- `BAD-UNKCUST-…`: a check of customer 99999999, who does not exist;
- `BAD-NEGQTY-…`: a check whose single line has quantity -1.000;
- `BAD-DUP-…`: a check id that appears twice in `checks` (the copy is 5 minutes later);
- customers 90000001…: customers with the unknown time zone `Mars/Olympus`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO, Literal
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from loyalty_assets.sources.schemas import MONEY, QUANTITY, SCHEMAS, UTC_TS

Format = Literal["parquet", "csv"]

#: Customers generated together; fixed (never derived from the machine) so output is identical anywhere.
CHUNK_CUSTOMERS = 50_000
#: The program's zone, used for customers without one (matches `sources.frames.AsOf`).
PROGRAM_TZ = "Europe/Moscow"
#: Checks' extra column: when the row arrived in the warehouse.
CHECKS_COLUMNS: dict[str, pl.DataType] = {**SCHEMAS["checks"].columns, "loaded_at": UTC_TS}
#: Write order; `customers` is moved into place last (see the module docstring).
TABLES = (
    "categories",
    "checks",
    "check_items",
    "customer_attributes",
    "favourite_categories",
    "bonus_transactions",
    "communications",
    "site_visits",
    "customers",
)
BAD_CUSTOMER_ID_BASE = 90_000_000
UNKNOWN_CUSTOMER_ID = 99_999_999
BAD_TIMEZONE = "Mars/Olympus"

_US = 1_000_000
_DAY_S = 86_400
_EPOCH = date(1970, 1, 1)
_STAGING = ".sample_data_staging"

# Random streams: one per table so adding draws to one table never shifts another's data.
_S_CATALOG, _S_POPULATION, _S_CHECKS, _S_BONUS, _S_VISITS = 0, 1, 2, 3, 4
_S_ATTRIBUTES, _S_FAVOURITES, _S_COMMS, _S_BAD = 5, 6, 7, 8
_S_DRIVE = 9

#: A sign-up drive (a store opening's promotion) 1 year and 4 days before `end_date` — 26 June 2024 for
#: the default end 2025-06-30 — registered this share of the customers. The sample date 2025-06-26 is then
#: their first membership anniversary, so the A/B channel campaign (contract scenario 8, triggered on the
#: registration anniversary, 10% control) shows its control group in `make run`: ~15 customers a day
#: have an anniversary otherwise, too few for a 10% control group to be seen reliably on one date.
_DRIVE_SHARE = 0.01
_DRIVE_DAYS_BEFORE_END = 365 + 4

# ---------------------------------------------------------------------------------------------------
# Reference data
# ---------------------------------------------------------------------------------------------------

#: (zone, share of customers, cities in that zone). The remaining ~5% have no zone (and no city).
_ZONES: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("Europe/Moscow", 0.68, ("Москва", "Санкт-Петербург", "Казань", "Нижний Новгород", "Ростов-на-Дону")),
    ("Asia/Yekaterinburg", 0.09, ("Екатеринбург", "Челябинск", "Пермь", "Тюмень", "Уфа")),
    ("Asia/Novosibirsk", 0.07, ("Новосибирск", "Бердск")),
    ("Asia/Vladivostok", 0.05, ("Владивосток", "Хабаровск")),
    ("Europe/Kaliningrad", 0.06, ("Калининград", "Советск")),
)
_NO_ZONE = len(_ZONES)

#: Store numbers per zone (S01..S40); S37-S40 are partner stores in the Moscow zone.
_ZONE_STORES: tuple[tuple[int, ...], ...] = (
    (*range(1, 25), *range(37, 41)),
    tuple(range(25, 29)),
    tuple(range(29, 32)),
    tuple(range(32, 34)),
    tuple(range(34, 37)),
)
_PARTNER_STORES = frozenset(range(37, 41))
_LEGAL_ENTITIES = ("LE-Main", "LE-Partner")

_FEMALE_NAMES = (
    "Анна", "Мария", "Елена", "Ольга", "Наталья", "Татьяна", "Ирина", "Екатерина", "Светлана", "Юлия",
    "Анастасия", "Дарья", "Алина", "Ксения", "Виктория", "Полина", "Марина", "Людмила", "Вера", "Софья",
)  # fmt: skip
_MALE_NAMES = (
    "Александр", "Сергей", "Дмитрий", "Андрей", "Алексей", "Максим", "Иван", "Михаил", "Николай", "Евгений",
    "Владимир", "Павел", "Артём", "Денис", "Игорь", "Роман", "Олег", "Кирилл", "Никита", "Юрий",
)  # fmt: skip

#: The category tree: (category_id, name, parent_id).
_CATEGORY_TREE: tuple[tuple[str, str, str | None], ...] = (
    ("food", "Продукты питания", None),
    ("dairy", "Молочные продукты", "food"),
    ("milk", "Молоко", "dairy"),
    ("cheese", "Сыры", "dairy"),
    ("yogurt", "Йогурты и десерты", "dairy"),
    ("butter_eggs", "Масло и яйца", "dairy"),
    ("bakery", "Хлеб и выпечка", "food"),
    ("bread", "Хлеб", "bakery"),
    ("pastry", "Выпечка и торты", "bakery"),
    ("produce", "Овощи и фрукты", "food"),
    ("fruits", "Фрукты", "produce"),
    ("vegetables", "Овощи", "produce"),
    ("meat_fish", "Мясо и рыба", "food"),
    ("meat", "Мясо и птица", "meat_fish"),
    ("fish_seafood", "Рыба и морепродукты", "meat_fish"),
    ("grocery", "Бакалея", "food"),
    ("cereals_pasta", "Крупы и макароны", "grocery"),
    ("coffee_tea", "Чай и кофе", "grocery"),
    ("sweets", "Сладости", "grocery"),
    ("drinks", "Напитки", "food"),
    ("water_juice", "Вода и соки", "drinks"),
    ("kids", "Детские товары", None),
    ("baby_food", "Детское питание", "kids"),
    ("diapers", "Подгузники", "kids"),
    ("toys", "Игрушки", "kids"),
    ("pets", "Зоотовары", None),
    ("pet_food", "Корма для животных", "pets"),
    ("aquarium_fish", "Аквариумные рыбки", "pets"),
    ("pet_accessories", "Товары для животных", "pets"),
    ("household", "Хозяйственные товары", None),
    ("household_chemicals", "Бытовая химия", "household"),
    ("paper_goods", "Бумажная продукция", "household"),
    ("beauty", "Красота и здоровье", None),
    ("cosmetics", "Косметика", "beauty"),
    ("personal_care", "Гигиена", "beauty"),
    ("electronics", "Электроника", None),
    ("phone_accessories", "Аксессуары для телефонов", "electronics"),
    ("small_appliances", "Мелкая бытовая техника", "electronics"),
    ("batteries", "Батарейки", "electronics"),
    ("home", "Дом и сад", None),
    ("kitchenware", "Посуда", "home"),
    ("home_textiles", "Домашний текстиль", "home"),
    ("garden", "Сад и огород", "home"),
)

#: Leaf categories, the only ones on check lines: (popularity, median price in roubles, sold by weight).
_LEAVES: dict[str, tuple[float, int, bool]] = {
    "milk": (10.0, 95, False),
    "cheese": (6.0, 260, False),
    "yogurt": (7.0, 70, False),
    "butter_eggs": (5.0, 180, False),
    "bread": (9.0, 55, False),
    "pastry": (4.0, 180, False),
    "fruits": (8.0, 190, True),
    "vegetables": (8.0, 120, True),
    "meat": (6.0, 550, True),
    "fish_seafood": (3.0, 800, True),
    "cereals_pasta": (5.0, 110, False),
    "coffee_tea": (4.0, 420, False),
    "sweets": (6.0, 150, False),
    "water_juice": (6.0, 90, False),
    "baby_food": (2.0, 120, False),
    "diapers": (1.0, 1300, False),
    "toys": (1.0, 900, False),
    "pet_food": (3.0, 350, False),
    "aquarium_fish": (0.4, 250, False),
    "pet_accessories": (0.6, 450, False),
    "household_chemicals": (3.0, 320, False),
    "paper_goods": (2.0, 200, False),
    "cosmetics": (1.5, 600, False),
    "personal_care": (3.0, 220, False),
    "phone_accessories": (0.5, 900, False),
    "small_appliances": (0.2, 3500, False),
    "batteries": (0.5, 300, False),
    "kitchenware": (0.8, 600, False),
    "home_textiles": (0.5, 900, False),
    "garden": (0.5, 400, False),
}

#: Categories a customer may choose as monthly favourites (cashback categories): leaves and inner nodes.
_FAVOURITE_ELIGIBLE = (
    "dairy",
    "bakery",
    "produce",
    "coffee_tea",
    "sweets",
    "pet_food",
    "household_chemicals",
    "cosmetics",
)
_PETS = ("cat", "dog", "fish")
_TIERS = ("bronze", "silver", "gold")
_CHANNELS = ("email", "sms", "push", "viber")
_EVENTS = ("sent", "delivered", "opened", "clicked", "bounced", "unsubscribed")
_BONUS_KINDS = ("accrual", "redemption", "expiry")
_OTHER_URLS = ("/", "/promo", "/account/bonuses", "/cart", "/stores")

#: Local hours of human activity 08..21 and their relative weights (lunch and evening peaks).
_DAY_HOURS = np.arange(8, 22)
_DAY_HOUR_WEIGHTS = np.array([2, 3, 4, 5, 6, 6, 5, 5, 6, 8, 9, 8, 6, 3], dtype=float)

# Volumes. Checks and lines are calibrated to ~5 checks and ~20 lines per customer per 400 days.
_CHECKS_PER_CUSTOMER_400D = 5.0
_MAX_LINES = 40
_VISITS_PER_CUSTOMER_400D = 2.5
_NEWSLETTER_EVERY_DAYS = 14
_NEWSLETTER_REACH = 0.07
_BAD_SHARE = 0.0005


# ---------------------------------------------------------------------------------------------------
# Small vectorised helpers
# ---------------------------------------------------------------------------------------------------


def _day_number(d: date) -> int:
    return (d - _EPOCH).days


def _ts(us: np.ndarray) -> pl.Series:
    """Microseconds since the epoch (int64) as the contract's UTC timestamp."""
    return pl.Series(np.asarray(us, dtype=np.int64)).cast(UTC_TS)


def _money(cents: np.ndarray) -> pl.Series:
    """Integer cents as an exact `Decimal(14, 2)`: integer arithmetic only, never a binary float."""
    raw = pl.Series(np.asarray(cents, dtype=np.int64)).cast(pl.Decimal(18, 0))
    return (raw * pl.Series([Decimal("0.01")], dtype=pl.Decimal(3, 2))).cast(MONEY)


def _quantity(thousandths: np.ndarray) -> pl.Series:
    """Integer thousandths as an exact `Decimal(14, 3)`."""
    raw = pl.Series(np.asarray(thousandths, dtype=np.int64)).cast(pl.Decimal(18, 0))
    return (raw * pl.Series([Decimal("0.001")], dtype=pl.Decimal(4, 3))).cast(QUANTITY)


def _codes(values: Sequence[str | None], codes: np.ndarray) -> pl.Series:
    """Labels looked up by integer code (a gather, not a per-row loop)."""
    return pl.Series(list(values), dtype=pl.String()).gather(np.asarray(codes, dtype=np.int64))


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    """`prefix` + zero-padded numbers, e.g. `C000000123`."""
    digits = pl.Series(np.asarray(numbers, dtype=np.int64)).cast(pl.String()).str.zfill(width)
    return (prefix + digits).alias("id")


def _null_where(series: pl.Series, mask: np.ndarray) -> pl.Series:
    """`series` with nulls where `mask` is true."""
    nulls = pl.repeat(None, len(series), dtype=series.dtype, eager=True)
    return series.zip_with(pl.Series(~np.asarray(mask, dtype=bool)), nulls).alias(series.name)


def _daytime_seconds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds after local midnight for human activity, 08:00-21:59 with lunch and evening peaks."""
    hours = rng.choice(_DAY_HOURS, size=n, p=_DAY_HOUR_WEIGHTS / _DAY_HOUR_WEIGHTS.sum())
    return hours * 3600 + rng.integers(0, 3600, n)


def _group_starts(keys: np.ndarray) -> np.ndarray:
    """For rows sorted by `keys`, the index of the first row of each row's group."""
    n = keys.size
    first = np.ones(n, dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    return np.maximum.accumulate(np.where(first, np.arange(n), 0))


def _cumsum_before(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For rows sorted by `keys`: the running sum of `values` within the group, excluding the row."""
    if values.size == 0:
        return values.copy()
    cs = np.cumsum(values)
    gs = _group_starts(keys)
    before: np.ndarray = cs - values - (cs[gs] - values[gs])
    return before


def _bad_count(n: int) -> int:
    return max(1, round(n * _BAD_SHARE))


class _Calendar:
    """Local day + time in one of the zones -> UTC microseconds, with each day's real UTC offset.

    The offsets come from `zoneinfo` once per (zone, day) over the whole generated period, a table of a
    few thousand entries, so conversions of millions of rows are one array lookup.
    """

    def __init__(self, end_date: date, days: int) -> None:
        self.end_day = _day_number(end_date)
        self.first_day = self.end_day - max(3 * 366, days) - 62
        n_days = self.end_day - self.first_day + 3
        zones = [z for z, _, _ in _ZONES]
        self.offsets = np.empty((len(zones), n_days), dtype=np.int64)
        for zi, zone in enumerate(zones):
            tz = ZoneInfo(zone)
            for di in range(n_days):
                noon = datetime.combine(_EPOCH + timedelta(days=self.first_day + di), time(12), tz)
                offset = noon.utcoffset()
                self.offsets[zi, di] = int(offset.total_seconds()) if offset else 0
        #: The end of `end_date` in the program zone: nothing (but loading and expiry) happens after it.
        self.end_us = int(self.to_utc_us(np.array([self.end_day + 1]), np.array([0]), np.array([0]))[0])

    def to_utc_us(self, day: np.ndarray, seconds: np.ndarray, zone: np.ndarray) -> np.ndarray:
        """UTC microseconds of local `day` (day number) + `seconds` in zone index `zone`."""
        offset = self.offsets[zone, day - self.first_day]
        utc_us: np.ndarray = (day * _DAY_S + seconds - offset) * _US
        return utc_us


# ---------------------------------------------------------------------------------------------------
# Catalog and population: generated once, used by every chunk
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Catalog:
    """Leaf categories, products and stores as arrays indexed by leaf / product / store position."""

    leaf_ids: pl.Series
    leaf_cum: np.ndarray  # cumulative popularity, for inverse-CDF draws
    leaf_weighted: np.ndarray  # sold by weight (fractional quantities)
    prod_start: np.ndarray  # first product position of each leaf
    prod_count: np.ndarray
    prod_price: np.ndarray  # cents (per kg for weighted leaves)
    product_ids: pl.Series
    store_ids: pl.Series  # position i -> S{i+1:02d}
    zone_store_start: np.ndarray
    zone_store_count: np.ndarray
    zone_stores: np.ndarray  # store positions, zone by zone
    store_partner: np.ndarray  # store position -> 1 when LE-Partner

    def leaf_index(self, category_id: str) -> int:
        return self.leaf_ids.to_list().index(category_id)


def _make_catalog(seed: int) -> _Catalog:
    """Products per leaf (more for popular shelves) with log-normal shelf prices around the leaf's median."""
    rng = np.random.default_rng((seed, _S_CATALOG))
    leaves = list(_LEAVES)
    popularity = np.array([_LEAVES[c][0] for c in leaves])
    counts = (20 + popularity * 20).astype(np.int64)
    starts = np.cumsum(counts) - counts
    median = np.repeat(np.array([_LEAVES[c][1] for c in leaves], dtype=float), counts)
    roubles = np.maximum(1, np.rint(median * rng.lognormal(0.0, 0.45, counts.sum()))).astype(np.int64)
    prices = roubles * 100 - 10  # shelf prices end in .90
    zone_stores = np.concatenate([np.array(s, dtype=np.int64) - 1 for s in _ZONE_STORES])
    zone_count = np.array([len(s) for s in _ZONE_STORES], dtype=np.int64)
    partner = np.zeros(40, dtype=np.int64)
    partner[[s - 1 for s in _PARTNER_STORES]] = 1
    return _Catalog(
        leaf_ids=pl.Series(leaves, dtype=pl.String()),
        leaf_cum=np.cumsum(popularity) / popularity.sum(),
        leaf_weighted=np.array([_LEAVES[c][2] for c in leaves]),
        prod_start=starts,
        prod_count=counts,
        prod_price=prices,
        product_ids=_ids("P", np.arange(1, counts.sum() + 1), 5),
        store_ids=_ids("S", np.arange(1, 41), 2),
        zone_store_start=np.cumsum(zone_count) - zone_count,
        zone_store_count=zone_count,
        zone_stores=zone_stores,
        store_partner=partner,
    )


def _draw_leaves(rng: np.random.Generator, cat: _Catalog, pref: np.ndarray, share_pref: float) -> np.ndarray:
    """One leaf per row of `pref` (n x 3 preferred leaves): a preferred one with `share_pref`, else any."""
    n = pref.shape[0]
    preferred = pref[np.arange(n), rng.integers(0, pref.shape[1], n)]
    anything = np.minimum(np.searchsorted(cat.leaf_cum, rng.random(n), side="right"), cat.leaf_cum.size - 1)
    leaves: np.ndarray = np.where(rng.random(n) < share_pref, preferred, anything)
    return leaves


@dataclass(frozen=True)
class _Population:
    """Per-customer traits (index i is customer_id i + 1) that tie the tables together."""

    n: int
    frame: pl.DataFrame  # the customers table
    reg_day: np.ndarray
    reg_us: np.ndarray
    zone: np.ndarray  # zone index used for local time (the program zone when the customer has none)
    email_subscribed: np.ndarray
    email_unsub_day: np.ndarray  # day a former subscriber opted out, -1 for everyone else
    email_valid: np.ndarray
    sms_subscribed: np.ndarray
    push_subscribed: np.ndarray
    pet: np.ndarray  # 0 none, 1 cat, 2 dog, 3 fish
    pref: np.ndarray  # n x 3 preferred leaf positions
    basket: np.ndarray  # mean lines per check
    start_day: np.ndarray  # first possible day of a check / visit
    active_days: np.ndarray  # days with possible checks (0: never buys)
    visit_days: np.ndarray
    buyer: np.ndarray  # has at least one check
    lam: np.ndarray  # expected number of checks
    bonus_bp: np.ndarray  # accrual rate in basis points
    home_store: np.ndarray  # position in _Catalog.zone_stores


def _make_population(seed: int, n: int, days: int, cal: _Calendar, cat: _Catalog) -> _Population:
    """The customers table and the habits behind every other table, drawn once for all chunks.

    Check frequencies are normalised over the whole base so the total is ~5 checks per customer per
    400 days whatever the registration and lapse dates, which is why this is not done per chunk.
    """
    rng = np.random.default_rng((seed, _S_POPULATION))
    end_day = cal.end_day
    end_date = _EPOCH + timedelta(days=end_day)
    ids = np.arange(1, n + 1, dtype=np.int64)

    # Time zone and city. Customers without a zone live by the program zone and have no city.
    zone_p = [p for _, p, _ in _ZONES]
    tz_code = rng.choice(len(_ZONES) + 1, size=n, p=[*zone_p, 1.0 - sum(zone_p)])
    zone = np.where(tz_code == _NO_ZONE, 0, tz_code)
    city_lists = [cities for _, _, cities in _ZONES]
    city_names = [c for cities in city_lists for c in cities] + [None]
    city_start = np.cumsum([0] + [len(c) for c in city_lists])
    city_count = np.array([len(c) for c in city_lists] + [1])
    city_code = np.where(
        (tz_code == _NO_ZONE) | (rng.random(n) < 0.02),
        len(city_names) - 1,
        city_start[np.minimum(tz_code, _NO_ZONE - 1)]
        + (rng.random(n) ** 1.8 * city_count[tz_code]).astype(np.int64),  # the zone's first city is biggest
    )

    # Registration over the three years before the end, in local daytime.
    reg_day = end_day - rng.integers(0, 3 * 365 + 1, n)
    # Shopping starts after the drawn registration day; the sign-up drive only moves the registration of
    # some later joiners back to the drive day (they signed up then and started shopping later). It draws
    # from its own stream, so every other draw, the checks of everyone included, is the same without it.
    shop_from_day = reg_day.copy()
    drive_day = end_day - _DRIVE_DAYS_BEFORE_END
    later = np.flatnonzero(reg_day > drive_day)
    drive_rng = np.random.default_rng((seed, _S_DRIVE))
    reg_day[drive_rng.choice(later, size=min(later.size, int(np.ceil(n * _DRIVE_SHARE))), replace=False)] = drive_day
    reg_us = cal.to_utc_us(reg_day, _daytime_seconds(rng, n), zone)

    # Birth dates for ages 18-80, ~1% unknown, plus a guaranteed share of 29 February birthdays.
    birth_day = end_day - rng.integers(18 * 366, 80 * 365, n)
    birth_null = rng.random(n) < 0.01
    n_leap = min(n, max(3, int(np.ceil(n * 0.004))))
    leap_who = rng.choice(n, size=n_leap, replace=False)
    leap_years = [
        y
        for y in range(end_date.year - 81, end_date.year - 17)
        if _is_leap(y) and 18 <= end_date.year - y - ((end_date.month, end_date.day) < (2, 29)) <= 80
    ]
    leap_days = np.array([_day_number(date(y, 2, 29)) for y in leap_years], dtype=np.int64)
    birth_day[leap_who] = leap_days[rng.integers(0, leap_days.size, n_leap)]
    birth_null[leap_who] = False

    gender = rng.choice(3, size=n, p=[0.5335, 0.4365, 0.03])  # F, M, unknown: 55/45 among known
    names = [*_FEMALE_NAMES, *_MALE_NAMES]
    nf, nm = len(_FEMALE_NAMES), len(_MALE_NAMES)
    name_code = np.select(
        [gender == 0, gender == 1],
        [rng.integers(0, nf, n), nf + rng.integers(0, nm, n)],
        rng.integers(0, nf + nm, n),
    )
    name_code = np.where(rng.random(n) < 0.005, len(names), name_code)

    has_email = rng.random(n) < 0.90
    email_valid = has_email & (rng.random(n) < 0.92)
    email_subscribed = has_email & (rng.random(n) < 0.83)
    # Some of the unsubscribed were subscribers who opted out from a newsletter on this day (else -1).
    former = has_email & ~email_subscribed & (rng.random(n) < 0.15)
    email_unsub_day = np.where(former, end_day - rng.integers(0, max(days, 1), n), -1)
    domain = rng.choice(3, size=n, p=[0.7, 0.2, 0.1])
    has_phone = rng.random(n) < 0.85
    phone_digits = rng.integers(0, 1_000_000_000, n)
    sms_subscribed = has_phone & (rng.random(n) < 0.70)
    has_push = rng.random(n) < 0.40
    push_bytes = rng.bytes(16 * n)
    push_subscribed = has_push & (rng.random(n) < 0.85)
    label_code = rng.choice(4, size=n, p=[0.97, 0.02, 0.008, 0.002])

    # Shopping habits: preferred categories (pet owners buy for their pet), basket size, frequency.
    pet = rng.choice(4, size=n, p=[0.75, 0.12, 0.10, 0.03])
    pref = np.minimum(np.searchsorted(cat.leaf_cum, rng.random((n, 3)), side="right"), cat.leaf_cum.size - 1)
    pref[:, 2] = np.select(
        [pet == 3, pet > 0], [cat.leaf_index("aquarium_fish"), cat.leaf_index("pet_food")], pref[:, 2]
    )
    basket = np.minimum(1.0 + rng.gamma(2.0, 1.5, n), 15.0)
    window_start = end_day - days + 1
    start_day = np.maximum(window_start, shop_from_day + 1)
    visit_days = np.maximum(end_day - start_day + 1, 0)
    lapsed = rng.random(n) < 0.15  # stopped buying at some point: their last check is in the past
    stop_day = np.where(lapsed, start_day + (rng.random(n) * visit_days).astype(np.int64), end_day)
    active_days = np.where(visit_days > 0, stop_day - start_day + 1, 0)
    # ~7.5% never shop; the others shop at least once (most sign up at a till) at a customer rate
    # growing less than linearly with the time they had, since newcomers shop more eagerly.
    buyer = (rng.random(n) >= 0.075) & (active_days > 0)
    rate = np.where(buyer, rng.gamma(2.5, 1.0, n) * active_days**0.7, 0.0)
    target = _CHECKS_PER_CUSTOMER_400D * n * days / 400
    lam = rate * (target / rate.sum()) if rate.sum() > 0 else rate
    bonus_bp = rng.choice(np.array([100, 200, 300, 500]), size=n, p=[0.3, 0.35, 0.2, 0.15])
    home_store = cat.zone_store_start[zone] + (rng.random(n) * cat.zone_store_count[zone]).astype(np.int64)

    zone_names = [z for z, _, _ in _ZONES] + [None]
    push_tokens = pl.Series(
        pa.Array.from_buffers(pa.binary(16), n, [None, pa.py_buffer(push_bytes)]).cast(pa.binary())
    ).bin.encode("hex")
    frame = pl.DataFrame(
        {
            "customer_id": ids,
            "registered_at": _ts(reg_us),
            "birth_date": _null_where(pl.Series(birth_day.astype(np.int32)).cast(pl.Date()), birth_null),
            "gender": _codes(["F", "M", None], gender),
            "first_name": _codes([*names, None], name_code),
            "email": _null_where(
                "user"
                + pl.Series(ids).cast(pl.String())
                + "@"
                + _codes(["example.com", "example.org", "example.net"], domain),
                ~has_email,
            ),
            "phone": _null_where("+79" + pl.Series(phone_digits).cast(pl.String()).str.zfill(9), ~has_phone),
            "push_token": _null_where(push_tokens, ~has_push),
            "email_subscribed": email_subscribed,
            "sms_subscribed": sms_subscribed,
            "push_subscribed": push_subscribed,
            "email_valid": email_valid,
            "timezone": _codes(zone_names, tz_code),
            "city": _codes(city_names, city_code),
            "labels": _codes(["", "vip", "employee", "vip|employee"], label_code),
        }
    ).with_columns(
        pl.when(pl.col("labels") == "")
        .then(pl.lit([], dtype=pl.List(pl.String())))
        .otherwise(pl.col("labels").str.split("|"))
        .alias("labels")
    )
    return _Population(
        n=n,
        frame=_conform(frame, SCHEMAS["customers"].columns),
        reg_day=reg_day,
        reg_us=reg_us,
        zone=zone,
        email_subscribed=email_subscribed,
        email_unsub_day=email_unsub_day,
        email_valid=email_valid,
        sms_subscribed=sms_subscribed,
        push_subscribed=push_subscribed,
        pet=pet,
        pref=pref,
        basket=basket,
        start_day=start_day,
        active_days=active_days,
        visit_days=visit_days,
        buyer=buyer,
        lam=lam,
        bonus_bp=bonus_bp,
        home_store=home_store,
    )


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _conform(frame: pl.DataFrame, columns: dict[str, pl.DataType]) -> pl.DataFrame:
    """Exactly the contract's columns, in its order, with its types."""
    return frame.select([pl.col(c).cast(t) for c, t in columns.items()])


def _categories_frame() -> pl.DataFrame:
    return _conform(
        pl.DataFrame(
            {
                "category_id": [c for c, _, _ in _CATEGORY_TREE],
                "name": [nm for _, nm, _ in _CATEGORY_TREE],
                "parent_id": [p for _, _, p in _CATEGORY_TREE],
            },
            schema={"category_id": pl.String(), "name": pl.String(), "parent_id": pl.String()},
        ),
        SCHEMAS["categories"].columns,
    )


# ---------------------------------------------------------------------------------------------------
# Per-chunk generators. Each takes customers [c0, c1) and its own random stream.
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ChecksChunk:
    checks: pl.DataFrame
    items: pl.DataFrame
    # Arrays the bonus ledger needs, one entry per check of the chunk.
    cust: np.ndarray
    ts: np.ndarray
    acc: np.ndarray
    spent: np.ndarray
    partner: np.ndarray
    check_ids: pl.Series


def _checks_chunk(
    seed: int, chunk: int, c0: int, c1: int, pop: _Population, cat: _Catalog, cal: _Calendar, first_no: int
) -> _ChecksChunk:
    """Checks and their lines for customers [c0, c1), with ids from `first_no` on.

    Totals are summed from integer cents of the lines, so `total` equals the sum of `amount` exactly.
    """
    rng = np.random.default_rng((seed, _S_CHECKS, chunk))
    n_checks = np.where(pop.buyer[c0:c1], 1 + rng.poisson(np.maximum(pop.lam[c0:c1] - 1.0, 0.0)), 0)
    cust = np.repeat(np.arange(c0, c1), n_checks)
    m = cust.size
    day = pop.start_day[cust] + (rng.random(m) * pop.active_days[cust]).astype(np.int64)
    ts = cal.to_utc_us(day, _daytime_seconds(rng, m), pop.zone[cust])
    order = np.argsort(ts, kind="stable")  # check ids follow time within the chunk
    cust, ts = cust[order], ts[order]

    zone = pop.zone[cust]
    elsewhere = cat.zone_store_start[zone] + (rng.random(m) * cat.zone_store_count[zone]).astype(np.int64)
    store = cat.zone_stores[np.where(rng.random(m) < 0.85, pop.home_store[cust], elsewhere)]

    # Lines: 1 + Poisson around the customer's usual basket size, from the customer's favourite shelves.
    n_lines = np.minimum(1 + rng.poisson(pop.basket[cust] - 1.0), _MAX_LINES)
    starts = np.cumsum(n_lines) - n_lines
    n_total = int(n_lines.sum())
    line_check = np.repeat(np.arange(m), n_lines)
    line_no = np.arange(n_total) - starts[line_check] + 1
    leaf = _draw_leaves(rng, cat, pop.pref[cust[line_check]], 0.55)
    product = cat.prod_start[leaf] + (rng.random(n_total) * cat.prod_count[leaf]).astype(np.int64)
    pieces = rng.choice(np.arange(1, 6), size=n_total, p=[0.72, 0.18, 0.06, 0.03, 0.01]) * 1000
    quantity = np.where(cat.leaf_weighted[leaf], rng.integers(150, 2501, n_total), pieces)
    amount = np.maximum((cat.prod_price[product] * quantity + 500) // 1000, 1)
    total = np.add.reduceat(amount, starts) if m else np.zeros(0, dtype=np.int64)

    discount = np.where(rng.random(m) < 0.2, total * rng.choice(np.array([5, 10, 15]), size=m) // 100, 0).astype(
        np.int64
    )
    acc = total * pop.bonus_bp[cust] // 10_000
    # Redemptions only from what the customer had accrued before (in customer, time order).
    by_customer = np.lexsort((ts, cust))
    keys = cust[by_customer]
    before = np.empty(m, dtype=np.int64)
    before[by_customer] = _cumsum_before(acc[by_customer], keys)
    want = (before * rng.uniform(0.1, 0.25, m)).astype(np.int64)
    spent = np.minimum(want, (total - discount) * 3 // 10) // 100 * 100
    spent = np.where((rng.random(m) < 0.12) & (before >= 5000), spent, 0)
    spent_sorted = spent[by_customer]
    over = _cumsum_before(spent_sorted, keys) + spent_sorted > before[by_customer]
    spent_sorted[over] = 0
    spent[by_customer] = spent_sorted

    delay_s = 60 + np.minimum(rng.exponential(1800.0, m), 6 * 3600).astype(np.int64)
    delay_s = np.where(rng.random(m) < 0.01, rng.integers(_DAY_S, 3 * _DAY_S + 1, m), delay_s)

    check_ids = _ids("C", np.arange(first_no, first_no + m), 9)
    checks = pl.DataFrame(
        {
            "check_id": check_ids,
            "customer_id": (cust + 1).astype(np.int64),
            "ts": _ts(ts),
            "store_id": cat.store_ids.gather(store),
            "total": _money(total),
            "discount": _money(discount),
            "bonus_spent": _money(spent),
            "loaded_at": _ts(ts + delay_s * _US),
        }
    )
    items = pl.DataFrame(
        {
            "check_id": check_ids.gather(line_check),
            "line_no": line_no.astype(np.int64),
            "product_id": cat.product_ids.gather(product),
            "category_id": cat.leaf_ids.gather(leaf),
            "quantity": _quantity(quantity),
            "amount": _money(amount),
        }
    )
    return _ChecksChunk(
        checks=_conform(checks, CHECKS_COLUMNS),
        items=_conform(items, SCHEMAS["check_items"].columns),
        cust=cust,
        ts=ts,
        acc=acc,
        spent=spent,
        partner=cat.store_partner[store],
        check_ids=check_ids,
    )


def _bonus_chunk(
    seed: int, chunk: int, c0: int, c1: int, ck: _ChecksChunk, pop: _Population, cal: _Calendar, first_no: int
) -> pl.DataFrame:
    """The loyalty ledger of the chunk's customers: purchase and promo accruals, redemptions, expiries."""
    rng = np.random.default_rng((seed, _S_BONUS, chunk))
    m = ck.cust.size
    # Purchase accruals, a few minutes after the check; redemptions at the check.
    a = np.flatnonzero(ck.acc > 0)
    acc_ts = ck.ts[a] + rng.integers(5, 300, a.size) * _US
    r = np.flatnonzero(ck.spent > 0)
    # Promo accruals for ~15% of customers (some twice), after registration, within the window.
    nc = c1 - c0
    n_promo = (rng.random(nc) < 0.12).astype(np.int64) + (rng.random(nc) < 0.03)
    promo_cust = np.repeat(np.arange(c0, c1), n_promo * (pop.visit_days[c0:c1] > 0))
    promo_day = pop.start_day[promo_cust] + (rng.random(promo_cust.size) * pop.visit_days[promo_cust]).astype(np.int64)
    promo_ts = cal.to_utc_us(promo_day, _daytime_seconds(rng, promo_cust.size), pop.zone[promo_cust])
    promo_amt = rng.choice(np.array([100, 200, 300, 500, 1000]), size=promo_cust.size, p=[0.25, 0.25, 0.2, 0.2, 0.1])

    acc_cust = np.concatenate([ck.cust[a], promo_cust])
    acc_amt = np.concatenate([ck.acc[a], promo_amt * 100])
    acc_at = np.concatenate([acc_ts, promo_ts])
    acc_exp = acc_at + np.concatenate(
        [np.full(a.size, 180 * _DAY_S * _US), np.full(promo_cust.size, 30 * _DAY_S * _US)]
    ).astype(np.int64)
    acc_src = np.concatenate([a, np.full(promo_cust.size, -1)])
    acc_le = np.concatenate([ck.partner[a], np.zeros(promo_cust.size, dtype=np.int64)])

    # Expiry of the unspent share of every accrual that reached its end before the end of the data.
    # bincount sums in float64, exact here: integer cents far below 2**53.
    accrued = np.bincount(acc_cust - c0, weights=acc_amt, minlength=nc).astype(np.int64)
    redeemed = np.bincount(ck.cust[r] - c0, weights=ck.spent[r], minlength=nc).astype(np.int64)
    e = np.flatnonzero(acc_exp < cal.end_us)
    e_cust = acc_cust[e] - c0
    e_amt = acc_amt[e] * (accrued[e_cust] - redeemed[e_cust]) // np.maximum(accrued[e_cust], 1)
    e = e[e_amt > 0]
    e_amt = e_amt[e_amt > 0]

    na, nr, ne = acc_cust.size, r.size, e.size
    cust = np.concatenate([acc_cust, ck.cust[r], acc_cust[e]])
    ts = np.concatenate([acc_at, ck.ts[r], acc_exp[e]])
    kind = np.repeat(np.array([0, 1, 2]), [na, nr, ne])
    amount = np.concatenate([acc_amt, ck.spent[r], e_amt])
    expires = np.concatenate([acc_exp, np.zeros(nr + ne, dtype=np.int64)])
    legal = np.concatenate([acc_le, ck.partner[r], acc_le[e]])
    src = np.concatenate([acc_src, r, acc_src[e]])
    order = np.lexsort((kind, ts))
    cust, ts, kind, amount, expires, legal, src = (x[order] for x in (cust, ts, kind, amount, expires, legal, src))
    source = ck.check_ids.gather(np.maximum(src, 0)) if m else pl.repeat("", src.size, eager=True)
    frame = pl.DataFrame(
        {
            "txn_id": _ids("T", np.arange(first_no, first_no + cust.size), 10),
            "customer_id": (cust + 1).astype(np.int64),
            "ts": _ts(ts),
            "kind": _codes(_BONUS_KINDS, kind),
            "amount": _money(amount),
            "expires_at": _null_where(_ts(expires), kind != 0),
            "legal_entity": _codes(_LEGAL_ENTITIES, legal),
            "source": source.zip_with(pl.Series(src >= 0), pl.repeat("promo", src.size, eager=True)),
        }
    )
    return _conform(frame, SCHEMAS["bonus_transactions"].columns)


def _visits_chunk(
    seed: int, chunk: int, c0: int, c1: int, pop: _Population, cat: _Catalog, cal: _Calendar
) -> pl.DataFrame:
    """Site visits: catalog pages of the customer's favourite shelves mostly, some other pages."""
    rng = np.random.default_rng((seed, _S_VISITS, chunk))
    nc = c1 - c0
    web = rng.random(nc) < 0.55
    mean = _VISITS_PER_CUSTOMER_400D / 0.55 * pop.visit_days[c0:c1] / 400
    n_visits = rng.poisson(np.where(web, rng.gamma(1.5, 1 / 1.5, nc) * mean, 0.0))
    cust = np.repeat(np.arange(c0, c1), n_visits)
    v = cust.size
    day = pop.start_day[cust] + (rng.random(v) * pop.visit_days[cust]).astype(np.int64)
    ts = cal.to_utc_us(day, _daytime_seconds(rng, v), pop.zone[cust]) + rng.integers(0, _US, v)
    leaf = _draw_leaves(rng, cat, pop.pref[cust], 0.6)
    product = cat.prod_start[leaf] + (rng.random(v) * cat.prod_count[leaf]).astype(np.int64)
    on_category = rng.random(v) < 0.7
    on_product = rng.random(v) < 0.5
    other = rng.integers(0, len(_OTHER_URLS), v)
    order = np.lexsort((ts, cust))
    frame = (
        pl.DataFrame(
            {
                "customer_id": (cust + 1).astype(np.int64),
                "ts": _ts(ts),
                "leaf": cat.leaf_ids.gather(leaf),
                "product": cat.product_ids.gather(product),
                "on_category": on_category,
                "on_product": on_product,
                "other": _codes(_OTHER_URLS, other),
            }
        )[order]
        .with_columns(
            url=pl.when(~pl.col("on_category"))
            .then(pl.col("other"))
            .when(pl.col("on_product"))
            .then(pl.concat_str(pl.lit("/catalog/"), pl.col("leaf"), pl.lit("/"), pl.col("product")))
            .otherwise(pl.concat_str(pl.lit("/catalog/"), pl.col("leaf"), pl.lit("/"))),
            category_id=pl.when(pl.col("on_category")).then(pl.col("leaf")),
        )
        .unique(subset=["customer_id", "ts"], keep="first", maintain_order=True)
    )
    return _conform(frame, SCHEMAS["site_visits"].columns)


def _attributes_chunk(seed: int, chunk: int, c0: int, c1: int, pop: _Population, cal: _Calendar) -> pl.DataFrame:
    """Versioned attributes: loyalty tier since registration with 0-3 changes, and pet type for some."""
    rng = np.random.default_rng((seed, _S_ATTRIBUTES, chunk))
    nc = c1 - c0
    reg = pop.reg_us[c0:c1]
    span = cal.end_us - reg - 60 * _US
    # Tier: versions at registration and at sorted random later instants (+j s keeps them distinct).
    n_changes = rng.choice(4, size=nc, p=[0.5, 0.3, 0.15, 0.05])
    moments = np.sort(rng.random((nc, 3)), axis=1)
    at = np.column_stack([reg, *((reg + (moments[:, j] * span).astype(np.int64) + (j + 1) * _US) for j in range(3))])
    tier = np.zeros((nc, 4), dtype=np.int64)
    for j in range(1, 4):  # a loop over versions, vectorised over customers
        step = np.where(rng.random(nc) < 0.75, 1, -1)
        moved = tier[:, j - 1] + step
        tier[:, j] = np.where((moved < 0) | (moved > 2), tier[:, j - 1] - step, moved)
    exists = np.arange(4)[None, :] <= n_changes[:, None]
    nxt_exists = np.column_stack([exists[:, 1:], np.zeros(nc, dtype=bool)])
    nxt_at = np.column_stack([at[:, 1:], np.zeros(nc, dtype=np.int64)])
    rows = exists.ravel()
    t_cust = np.repeat(np.arange(c0, c1), 4)[rows]
    t_from = at.ravel()[rows]
    t_to = nxt_at.ravel()[rows]
    t_open = ~nxt_exists.ravel()[rows]
    t_val = tier.ravel()[rows]

    # Pet type: from some time after registration; 5% later switch to another pet.
    has_pet = pop.pet[c0:c1] > 0
    p_first = reg + (rng.random(nc) * span * 0.5).astype(np.int64) + _US
    p_second = p_first + (rng.random(nc) * (cal.end_us - 60 * _US - p_first)).astype(np.int64) + _US
    switches = has_pet & (rng.random(nc) < 0.05)
    first_pet = pop.pet[c0:c1] - 1
    second_pet = (first_pet + rng.integers(1, 3, nc)) % 3
    p1 = np.flatnonzero(has_pet)
    p2 = np.flatnonzero(switches)
    p_cust = np.concatenate([p1, p2]) + c0
    p_from = np.concatenate([p_first[p1], p_second[p2]])
    p_to = np.concatenate([p_second[p1], np.zeros(p2.size, dtype=np.int64)])
    p_open = np.concatenate([~switches[p1], np.ones(p2.size, dtype=bool)])
    p_val = np.concatenate([first_pet[p1], second_pet[p2]])

    name = np.repeat(np.array([0, 1]), [t_cust.size, p_cust.size])
    cust = np.concatenate([t_cust, p_cust])
    valid_from = np.concatenate([t_from, p_from])
    order = np.lexsort((valid_from, name, cust))
    value_code = np.concatenate([t_val, p_val + len(_TIERS)])[order]
    frame = pl.DataFrame(
        {
            "customer_id": (cust[order] + 1).astype(np.int64),
            "name": _codes(["loyalty_tier", "pet_type"], name[order]),
            "value": _codes([*_TIERS, *_PETS], value_code),
            "valid_from": _ts(valid_from[order]),
            "valid_to": _null_where(_ts(np.concatenate([t_to, p_to])[order]), np.concatenate([t_open, p_open])[order]),
        }
    )
    return _conform(frame, SCHEMAS["customer_attributes"].columns)


def _favourites_chunk(seed: int, chunk: int, c0: int, c1: int, pop: _Population, cal: _Calendar) -> pl.DataFrame:
    """Monthly favourite (cashback) categories for the four months up to the end month."""
    rng = np.random.default_rng((seed, _S_FAVOURITES, chunk))
    end_date = _EPOCH + timedelta(days=cal.end_day)
    parts: list[pl.DataFrame] = []
    for back in range(3, -1, -1):  # four months: a loop over months, vectorised over customers
        y, mth = divmod(end_date.year * 12 + end_date.month - 1 - back, 12)
        start = date(y, mth + 1, 1)
        nxt = date(y + (mth + 1) // 12, (mth + 1) % 12 + 1, 1)
        ps, pe = _day_number(start), _day_number(nxt) - 1
        nc = c1 - c0
        chooses = (rng.random(nc) < 0.35) & (pop.reg_day[c0:c1] < ps - 5)
        k = rng.choice(np.array([1, 2, 3]), size=nc, p=[0.5, 0.3, 0.2])
        ranks = np.argsort(rng.random((nc, len(_FAVOURITE_ELIGIBLE))), axis=1)[:, :3]
        day = ps - 5 + rng.integers(0, 25, nc)
        chosen = cal.to_utc_us(day, _daytime_seconds(rng, nc), pop.zone[c0:c1]) + rng.integers(0, _US, nc)
        pct = rng.choice(2, size=(nc, 3), p=[0.6, 0.4])
        keep = chooses[:, None] & (np.arange(3)[None, :] < k[:, None]) & (chosen < cal.end_us)[:, None]
        rows_cust = np.repeat(np.arange(c0, c1)[:, None], 3, axis=1)[keep]
        n_rows = rows_cust.size
        parts.append(
            pl.DataFrame(
                {
                    "customer_id": (rows_cust + 1).astype(np.int64),
                    "period_start": pl.Series(np.full(n_rows, ps, dtype=np.int32)).cast(pl.Date()),
                    "period_end": pl.Series(np.full(n_rows, pe, dtype=np.int32)).cast(pl.Date()),
                    "category_id": _codes(_FAVOURITE_ELIGIBLE, ranks[keep]),
                    "chosen_at": _ts(np.repeat(chosen[:, None], 3, axis=1)[keep]),
                    "preference": _codes(["5", "10"], pct[keep]),
                }
            )
        )
    return _conform(pl.concat(parts), SCHEMAS["favourite_categories"].columns)


def _newsletter_days(cal: _Calendar, days: int) -> list[int]:
    """Past newsletter dates: every two weeks back from four days before the end, inside the window."""
    first = cal.end_day - days + 1
    return list(range(cal.end_day - 4, first - 1, -_NEWSLETTER_EVERY_DAYS))[::-1]


def _communications_chunk(
    seed: int, chunk: int, c0: int, c1: int, pop: _Population, cal: _Calendar, days: int, first_no: int
) -> pl.DataFrame:
    """Newsletter messages and their event chains: sent, then delivered or bounced, opened, clicked…"""
    rng = np.random.default_rng((seed, _S_COMMS, chunk))
    camp_days = np.array(_newsletter_days(cal, days), dtype=np.int64)
    camp_ids = pl.Series(
        [f"camp_newsletter_{(_EPOCH + timedelta(days=int(d))):%Y_%m_%d}" for d in camp_days],
        dtype=pl.String(),
    )  # one label per campaign (a few dozen), not per row
    nc = c1 - c0
    picked = (rng.random((nc, camp_days.size)) < _NEWSLETTER_REACH) & (pop.reg_day[c0:c1, None] < camp_days[None, :])
    who, camp = np.nonzero(picked)
    cust = who + c0
    channel = rng.choice(4, size=cust.size, p=[0.75, 0.1, 0.1, 0.05])
    # Email goes to subscribers, and to former subscribers until the newsletter they opted out from.
    was_email_subscriber = pop.email_unsub_day[cust] >= camp_days[camp]
    reachable = np.select(
        [channel == 0, channel == 1, channel == 2],
        [
            pop.email_subscribed[cust] | was_email_subscriber,
            pop.sms_subscribed[cust],
            pop.push_subscribed[cust],
        ],
        pop.sms_subscribed[cust],
    )
    cust, camp, channel = cust[reachable], camp[reachable], channel[reachable]
    n = cust.size
    sent = cal.to_utc_us(camp_days[camp], 10 * 3600 + rng.integers(0, 3600, n), pop.zone[cust])
    # The opt-out: the last email a former subscriber received, which therefore cannot bounce.
    former_mail = (channel == 0) & ~pop.email_subscribed[cust]
    by_customer = np.lexsort((sent, cust, ~former_mail))
    last_of_customer = np.ones(n, dtype=bool)
    last_of_customer[by_customer[:-1]] = (cust[by_customer[1:]] != cust[by_customer[:-1]]) | (
        former_mail[by_customer[1:]] != former_mail[by_customer[:-1]]
    )
    opt_out = former_mail & last_of_customer
    order = np.lexsort((cust, sent))
    cust, camp, channel, sent, opt_out = cust[order], camp[order], channel[order], sent[order], opt_out[order]

    bounced = (((channel == 0) & ~pop.email_valid[cust]) | (rng.random(n) < 0.02)) & ~opt_out
    delivered = ~bounced
    delivered_at = sent + rng.integers(5, 600, n) * _US
    open_p = np.array([0.30, 0.0, 0.15, 0.40])[channel]
    opened = delivered & (rng.random(n) < open_p)
    opened_at = delivered_at + (rng.exponential(3 * 3600, n) * _US).astype(np.int64)
    clicked = (opened & (rng.random(n) < 0.2)) | (delivered & (channel == 1) & (rng.random(n) < 0.03))
    clicked_at = np.where(opened, opened_at, delivered_at) + rng.integers(5, 1800, n) * _US
    unsubscribed = opt_out
    last_seen = np.where(clicked, clicked_at, np.where(opened, opened_at, delivered_at))
    unsubscribed_at = last_seen + rng.integers(10, 2 * _DAY_S, n) * _US
    bounced_at = sent + rng.integers(1, 300, n) * _US

    msg = np.arange(n)
    masks = (np.ones(n, dtype=bool), delivered, opened, clicked, bounced, unsubscribed)
    times = (sent, delivered_at, opened_at, clicked_at, bounced_at, unsubscribed_at)
    ev_msg = np.concatenate([msg[mk] for mk in masks])
    ev_code = np.repeat(np.arange(len(_EVENTS)), [int(mk.sum()) for mk in masks])
    ev_at = np.concatenate([t[mk] for t, mk in zip(times, masks, strict=True)])
    keep = ev_at < cal.end_us
    ev_msg, ev_code, ev_at = ev_msg[keep], ev_code[keep], ev_at[keep]
    order = np.lexsort((ev_at, ev_msg))
    ev_msg, ev_code, ev_at = ev_msg[order], ev_code[order], ev_at[order]
    frame = pl.DataFrame(
        {
            "message_id": _ids("M", first_no + ev_msg, 10),
            "customer_id": (cust[ev_msg] + 1).astype(np.int64),
            "campaign_id": camp_ids.gather(camp[ev_msg]),
            "channel": _codes(_CHANNELS, channel[ev_msg]),
            "sent_at": _ts(sent[ev_msg]),
            "event": _codes(_EVENTS, ev_code),
            "event_at": _ts(ev_at),
        }
    )
    return _conform(frame, SCHEMAS["communications"].columns)


# ---------------------------------------------------------------------------------------------------
# Bad rows
# ---------------------------------------------------------------------------------------------------


def _bad_rows(
    seed: int, n_customers: int, n_checks: int, pop: _Population, cat: _Catalog, cal: _Calendar, days: int
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Rows that break contract rules, for quarantine to set aside: (checks, check_items, customers)."""
    rng = np.random.default_rng((seed, _S_BAD))
    k = _bad_count(n_checks)
    kinds = ("NULLCUST", "UNKCUST", "NEGQTY", "DUP")
    kind = np.repeat(np.arange(len(kinds)), k)
    m = kind.size
    number = np.tile(np.arange(1, k + 1), len(kinds))
    check_ids = _codes([f"BAD-{x}-" for x in kinds], kind) + pl.Series(number).cast(pl.String()).str.zfill(6)
    cust = rng.integers(0, n_customers, m)
    day = np.clip(cal.end_day - rng.integers(0, days, m), pop.reg_day[cust] + 1, cal.end_day)
    ts = cal.to_utc_us(day, _daytime_seconds(rng, m), pop.zone[cust])
    leaf = np.minimum(np.searchsorted(cat.leaf_cum, rng.random(m), side="right"), cat.leaf_cum.size - 1)
    product = cat.prod_start[leaf] + (rng.random(m) * cat.prod_count[leaf]).astype(np.int64)
    amount = cat.prod_price[product]
    quantity = np.where(kind == 2, -1000, 1000)
    customer_id = np.where(kind == 1, UNKNOWN_CUSTOMER_ID, cust + 1)
    store = cat.zone_stores[pop.home_store[cust]]
    checks = pl.DataFrame(
        {
            "check_id": check_ids,
            "customer_id": _null_where(pl.Series(customer_id.astype(np.int64)), kind == 0),
            "ts": _ts(ts),
            "store_id": cat.store_ids.gather(store),
            "total": _money(amount),
            "discount": _money(np.zeros(m, dtype=np.int64)),
            "bonus_spent": _money(np.zeros(m, dtype=np.int64)),
            "loaded_at": _ts(ts + 600 * _US),
        }
    )
    dup = checks.filter(pl.col("check_id").str.starts_with("BAD-DUP-")).with_columns(
        pl.col("ts") + pl.duration(minutes=5), pl.col("loaded_at") + pl.duration(minutes=5)
    )
    items = pl.DataFrame(
        {
            "check_id": check_ids,
            "line_no": np.ones(m, dtype=np.int64),
            "product_id": cat.product_ids.gather(product),
            "category_id": cat.leaf_ids.gather(leaf),
            "quantity": _quantity(quantity),
            "amount": _money(amount),
        }
    )
    kc = _bad_count(n_customers)
    source_rows = rng.integers(0, n_customers, kc)
    customers = pop.frame[source_rows].with_columns(
        customer_id=pl.Series(np.arange(BAD_CUSTOMER_ID_BASE + 1, BAD_CUSTOMER_ID_BASE + kc + 1)),
        email=pl.concat_str(
            pl.lit("user"),
            pl.Series(np.arange(BAD_CUSTOMER_ID_BASE + 1, BAD_CUSTOMER_ID_BASE + kc + 1)).cast(pl.String()),
            pl.lit("@example.com"),
        ),
        timezone=pl.lit(BAD_TIMEZONE),
        city=pl.lit(None, dtype=pl.String()),
    )
    return (
        _conform(pl.concat([checks, dup]), CHECKS_COLUMNS),
        _conform(items, SCHEMAS["check_items"].columns),
        _conform(customers, SCHEMAS["customers"].columns),
    )


# ---------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------


class _Sink:
    """Streams one table's chunks to `NAME.parquet` (row groups), `NAME/part-NNNN.parquet` or `NAME.csv`."""

    def __init__(self, stage: Path, name: str, fmt: Format, columns: dict[str, pl.DataType], parts: bool) -> None:
        self.name, self.fmt, self.columns = name, fmt, columns
        self.parts = parts and fmt == "parquet"
        self.rows = 0
        self._n_written = 0
        self._writer: pq.ParquetWriter | None = None
        self._csv: BinaryIO | None = None
        if self.parts:
            self.path = stage / name
            self.path.mkdir()
        else:
            self.path = stage / f"{name}.{fmt}"

    def write(self, frame: pl.DataFrame) -> None:
        if frame.height == 0 and self._n_written > 0:
            return
        self.rows += frame.height
        if self.fmt == "csv":
            if "labels" in frame.columns:
                frame = frame.with_columns(pl.col("labels").list.join("|"))
            if self._csv is None:
                self._csv = self.path.open("wb")
            frame.write_csv(self._csv, include_header=self._n_written == 0)
        elif self.parts:
            frame.write_parquet(self.path / f"part-{self._n_written:04d}.parquet", compression="zstd")
        else:
            table = frame.to_arrow()
            if self._writer is None:
                self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
            self._writer.write_table(table)
        self._n_written += 1

    def close(self) -> int:
        if self._n_written == 0:
            self.write(pl.DataFrame(schema=self.columns))
        if self._writer is not None:
            self._writer.close()
        if self._csv is not None:
            self._csv.close()
        return self.rows


def _remove_table(out_dir: Path, name: str) -> None:
    """Remove any earlier copy of `name` in either format (file or folder of parts)."""
    for path in (out_dir / f"{name}.parquet", out_dir / f"{name}.csv"):
        path.unlink(missing_ok=True)
    folder = out_dir / name
    if folder.is_dir():
        for part in folder.glob("*.parquet"):
            part.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()


def existing_customers_file(out_dir: Path) -> Path | None:
    """The customers file of an earlier run in `out_dir`, if any (what `--if-absent` looks for)."""
    for candidate in (out_dir / "customers.parquet", out_dir / "customers.csv"):
        if candidate.is_file():
            return candidate
    return None


# ---------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------


def generate(
    out_dir: Path,
    *,
    customers: int = 5000,
    days: int = 400,
    end_date: date = date(2025, 6, 30),
    seed: int = 42,
    fmt: Format = "parquet",
    bad_rows: bool = True,
    progress: bool = True,
) -> dict[str, int]:
    """Write the nine source tables (plus `checks.loaded_at`) to `out_dir`; return rows per table.

    Customers are processed in chunks of `CHUNK_CUSTOMERS`; every table except `customers` and
    `categories` is streamed to disk chunk by chunk, so memory stays flat as the customer count grows.
    """
    if customers < 1 or days < 1 or seed < 0:
        raise ValueError("customers and days must be positive and seed non-negative")
    if customers >= BAD_CUSTOMER_ID_BASE:
        raise ValueError(f"customers must be below {BAD_CUSTOMER_ID_BASE} (ids above are the bad rows')")
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"unknown format {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = out_dir / _STAGING
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()

    n_chunks = -(-customers // CHUNK_CUSTOMERS)
    bar = tqdm(total=n_chunks + 3, desc="sample data", unit="step", disable=not progress, file=sys.stderr)
    cal = _Calendar(end_date, days)
    cat = _make_catalog(seed)
    pop = _make_population(seed, customers, days, cal, cat)
    bar.set_postfix_str("customers")
    bar.update()

    columns = {name: SCHEMAS[name].columns for name in TABLES} | {"checks": CHECKS_COLUMNS}
    sinks = {
        name: _Sink(stage, name, fmt, columns[name], parts=name == "check_items" and n_chunks > 1) for name in TABLES
    }
    sinks["categories"].write(_categories_frame())
    counters = {"checks": 1, "bonus": 1, "messages": 1}
    for chunk in range(n_chunks):
        c0, c1 = chunk * CHUNK_CUSTOMERS, min(customers, (chunk + 1) * CHUNK_CUSTOMERS)
        ck = _checks_chunk(seed, chunk, c0, c1, pop, cat, cal, counters["checks"])
        counters["checks"] += ck.checks.height
        sinks["checks"].write(ck.checks)
        sinks["check_items"].write(ck.items)
        bonus = _bonus_chunk(seed, chunk, c0, c1, ck, pop, cal, counters["bonus"])
        counters["bonus"] += bonus.height
        sinks["bonus_transactions"].write(bonus)
        comms = _communications_chunk(seed, chunk, c0, c1, pop, cal, days, counters["messages"])
        counters["messages"] += comms["message_id"].n_unique()
        sinks["communications"].write(comms)
        sinks["site_visits"].write(_visits_chunk(seed, chunk, c0, c1, pop, cat, cal))
        sinks["customer_attributes"].write(_attributes_chunk(seed, chunk, c0, c1, pop, cal))
        sinks["favourite_categories"].write(_favourites_chunk(seed, chunk, c0, c1, pop, cal))
        bar.set_postfix_str(f"{sinks['check_items'].rows:,} check lines")
        bar.update()

    customers_frame = pop.frame
    if bad_rows:
        bad_checks, bad_items, bad_customers = _bad_rows(seed, customers, counters["checks"] - 1, pop, cat, cal, days)
        sinks["checks"].write(bad_checks)
        sinks["check_items"].write(bad_items)
        customers_frame = pl.concat([customers_frame, bad_customers])
    sinks["customers"].write(customers_frame)
    bar.set_postfix_str("writing")
    bar.update()

    rows = {name: sinks[name].close() for name in TABLES}
    # Old customers first and new customers last: its presence means the set is complete.
    _remove_table(out_dir, "customers")
    for name in TABLES:
        _remove_table(out_dir, name)
        sinks[name].path.rename(out_dir / sinks[name].path.name)
    shutil.rmtree(stage)
    bar.set_postfix_str("done")
    bar.update()
    bar.close()
    return {name: rows[name] for name in SCHEMAS}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loyalty_assets.sample_data",
        description="Write seeded synthetic sample data for the nine source tables.",
    )
    parser.add_argument("--out", type=Path, default=Path("data"), help="output folder (default: data)")
    parser.add_argument("--customers", type=int, default=5000, help="number of customers (default: 5000)")
    parser.add_argument("--days", type=int, default=400, help="days of history before --end-date (default: 400)")
    parser.add_argument(
        "--end-date",
        type=date.fromisoformat,
        default=date(2025, 6, 30),
        help="last day of data (default: 2025-06-30)",
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet", dest="fmt")
    parser.add_argument("--no-bad-rows", action="store_true", help="leave out the rows that break contract rules")
    parser.add_argument(
        "--if-absent", action="store_true", help="do nothing when OUT already holds customers.parquet or .csv"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI; returns the process exit code."""
    args = _parse_args(argv)
    if args.if_absent:
        found = existing_customers_file(args.out)
        if found is not None:
            print(f"sample data already present ({found}); nothing to do (--if-absent)")
            return 0
    rows = generate(
        args.out,
        customers=args.customers,
        days=args.days,
        end_date=args.end_date,
        seed=args.seed,
        fmt=args.fmt,
        bad_rows=not args.no_bad_rows,
        progress=not args.no_progress,
    )
    width = max(len(name) for name in rows)
    print(f"sample data written to {args.out} ({args.fmt}, seed {args.seed}):")
    for name, count in rows.items():
        print(f"  {name:<{width}}  {count:>12,}")
    print(f"  {'total':<{width}}  {sum(rows.values()):>12,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
