"""All nine source tables as of one date, without Dagster (for previews, dry runs and benchmarks).

The same read → validate → cut sequence as the source assets, in the same dependency order:
customers first (for the unknown-customer rule), then checks with their lines, then the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from loyalty_assets.sources.frames import AsOf, SourceFrames
from loyalty_assets.sources.readers import RawTable
from loyalty_assets.sources.schemas import SCHEMAS
from loyalty_assets.sources.validation import ValidationResult, validate

CUSTOMER_TABLES = (
    "customer_attributes",
    "favourite_categories",
    "bonus_transactions",
    "communications",
    "site_visits",
)


@dataclass(frozen=True)
class Snapshot:
    frames: SourceFrames
    results: dict[str, ValidationResult]


def validate_checks(
    read: Callable[[str], RawTable], as_of: AsOf, *, now: datetime, known_customers: pl.Series
) -> tuple[ValidationResult, ValidationResult]:
    """Checks and their lines: a line is visible exactly when its check is, and a line whose check
    is absent or was quarantined is set aside itself."""
    checks = validate(SCHEMAS["checks"], read("checks"), as_of, now=now, known_customers=known_customers)
    items = validate(
        SCHEMAS["check_items"],
        read("check_items"),
        as_of,
        now=now,
        visible_keys=checks.kept.select("check_id"),
        parent_keys=pl.concat([checks.kept, checks.not_yet_visible]).select("check_id"),
    )
    return checks, items


def load_snapshot(
    read: Callable[[str], RawTable],
    as_of: AsOf,
    *,
    now: datetime | None = None,
    own_accruals: pl.DataFrame | None = None,
) -> Snapshot:
    """Validated, point-in-time frames of every source table; `read(table)` supplies the raw table."""
    now = now or datetime.now(UTC)
    results: dict[str, ValidationResult] = {}
    results["customers"] = validate(SCHEMAS["customers"], read("customers"), as_of, now=now)
    known = results["customers"].kept.get_column("customer_id")
    results["categories"] = validate(SCHEMAS["categories"], read("categories"), as_of, now=now)
    results["checks"], results["check_items"] = validate_checks(read, as_of, now=now, known_customers=known)
    for table in CUSTOMER_TABLES:
        results[table] = validate(SCHEMAS[table], read(table), as_of, now=now, known_customers=known)
    tables = {name: result.kept for name, result in results.items()}
    if own_accruals is not None:
        tables["own_accruals"] = own_accruals
    return Snapshot(frames=SourceFrames.from_tables(tables), results=results)
