"""Small builders for the campaign-engine tests (journeys, triggers, entry, messages, A/B, gates).

Campaigns are built from plain dicts, as YAML would give them. Frames are built from row dicts with
only the columns that matter; every other column of the engine's schema is null. The program zone
is Europe/Moscow (UTC+3 all year, no DST), so 10:00 Moscow is 07:00 UTC; Asia/Vladivostok is UTC+10
and Europe/London is UTC+1 in June (BST).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from loyalty_assets.config.campaigns import Campaign
from loyalty_assets.transforms.entry import HISTORY_SCHEMA
from loyalty_assets.transforms.journey import ACTION_SCHEMA, TOKEN_SCHEMA
from loyalty_assets.transforms.templates import TemplateRenderer
from loyalty_assets.transforms.triggers import TRIGGERED_SCHEMA
from tests.segment_fixtures import customers, d, frames, money, table, ts

MSK = "Europe/Moscow"
VLAT = "Asia/Vladivostok"
LONDON = "Europe/London"

__all__ = [
    "LONDON",
    "MSK",
    "VLAT",
    "actions",
    "campaign",
    "customers",
    "d",
    "fired",
    "frames",
    "history",
    "money",
    "renderer",
    "rows_of",
    "table",
    "tokens",
    "ts",
]


def campaign(steps: list[dict[str, Any]], **fields: Any) -> Campaign:
    """A campaign `test` with a purchase trigger unless `trigger=` is given; other fields as in YAML."""
    definition: dict[str, Any] = {
        "id": "test",
        "name": "Test campaign",
        "trigger": {"type": "event", "event": "purchase"},
        "steps": steps,
    }
    definition.update(fields)
    return Campaign.model_validate(definition)


def _frame(rows: list[dict[str, Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """A frame of `schema` from row dicts; columns not given are null."""
    return pl.DataFrame([{c: r.get(c) for c in schema} for r in rows], schema=schema, orient="row")


def tokens(*rows: dict[str, Any]) -> pl.DataFrame:
    """Journey tokens (`TOKEN_SCHEMA`); occasion defaults to `purchase:c<id>`, event_date to 2025-06-10."""
    filled = [{"occasion": f"purchase:c{r['customer_id']}", "event_date": date(2025, 6, 10), **r} for r in rows]
    return _frame(filled, TOKEN_SCHEMA)


def fired(*rows: dict[str, Any]) -> pl.DataFrame:
    """Trigger hits (`TRIGGERED_SCHEMA`)."""
    return _frame(list(rows), TRIGGERED_SCHEMA)


def history(*rows: dict[str, Any]) -> pl.DataFrame:
    """Earlier entrants as read from `triggered_customers` (`customer_id, occasion, partition_date`)."""
    return _frame(list(rows), HISTORY_SCHEMA)


def actions(*rows: dict[str, Any]) -> pl.DataFrame:
    """Executed journey actions (`ACTION_SCHEMA`); `event_date` defaults to 2025-06-10."""
    return _frame([{"event_date": date(2025, 6, 10), **r} for r in rows], ACTION_SCHEMA)


def renderer(folder: Path, templates: dict[str, str]) -> TemplateRenderer:
    """A renderer over `folder` after writing the given template files into it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in templates.items():
        (folder / name).write_text(text, encoding="utf-8")
    return TemplateRenderer(folder)


def rows_of(frame: pl.DataFrame, *columns: str) -> list[tuple[Any, ...]]:
    """The frame's `columns` as a list of tuples, in frame order (for compact assertions)."""
    return list(frame.select(columns).iter_rows())
