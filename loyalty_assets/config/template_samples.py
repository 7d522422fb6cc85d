"""Every shape a message template's variables can take, for rendering templates at validation.

A template that renders with one friendly sample can still fail for a real customer: `{{ bonus.amount
}}` fails once an occasion has no accrual (a percent-of-check accrual that rounds to 0.00 is not
written), and then every message of that step fails. So validation renders each template once per
shape its step can meet, built with the same `template_variables` the run uses:

- `bonus` present (the campaign accrues) and absent (unless a fixed-amount accrual comes before the
  step on every path to it: only then is an accrual certain);
- `check` present for purchase triggers, absent (its fields empty) otherwise;
- `event.amount` present for ledger events (`bonus_accrual`, `bonus_expiring`, `bonus_expired`),
  absent otherwise;
- `favourite_categories` with names and empty.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from loyalty_assets.config.campaigns import AccrueBonuses, Campaign, EventTrigger, FilterStep, Step
from loyalty_assets.transforms.messages import template_variables

#: Trigger events whose occasion carries an amount (`event.amount`).
AMOUNT_EVENTS = ("bonus_accrual", "bonus_expiring", "bonus_expired")

_CUSTOMER: dict[str, Any] = {
    "customer_id": 1,
    "first_name": "Анна",
    "email": "anna@example.com",
    "phone": "+70000000000",
    "city": "Москва",
    "gender": "F",
    "birth_date": date(1990, 1, 1),
}
_BONUS: dict[str, Any] = {
    "bonus_amount": Decimal("500.00"),
    "bonus_expires_at": datetime(2025, 1, 31, 7, 0, tzinfo=UTC),
    "bonus_expires_on": date(2025, 1, 31),
    "bonus_legal_entity": "X",
}
_CHECK: dict[str, Any] = {"check_id": "C1", "check_total": Decimal("1500.00")}


@dataclass(frozen=True)
class Shape:
    """One combination of present and absent variables, and how to name it in an error."""

    absent: tuple[str, ...]
    variables: dict[str, Any]

    @property
    def description(self) -> str:
        return "when " + " and ".join(self.absent) if self.absent else "with every variable present"


def step_contexts(campaign: Campaign) -> dict[str, tuple[bool, str | None]]:
    """Per step id: (an accrual is certain before it, the A/B variant it runs in)."""
    contexts: dict[str, tuple[bool, str | None]] = {}

    def walk(steps: list[Step], certain: bool, variant: str | None) -> None:
        for step in steps:
            contexts[step.id] = (certain, variant)
            if isinstance(step, AccrueBonuses) and step.amount is not None:
                certain = True
            elif isinstance(step, FilterStep):
                walk(step.else_, certain, variant)
            elif hasattr(step, "variants"):
                for v in step.variants:
                    walk(v.steps, certain, v.name)

    walk(campaign.steps, False, None)
    return contexts


def sample_shapes(campaign: Campaign, step_id: str) -> list[Shape]:
    """The variable shapes the step `step_id` of `campaign` can render with, all present first."""
    certain, variant = step_contexts(campaign).get(step_id, (False, None))
    trigger = campaign.trigger
    purchase = isinstance(trigger, EventTrigger) and trigger.event == "purchase"
    amount_event = isinstance(trigger, EventTrigger) and trigger.event in AMOUNT_EVENTS
    bonus_options = ([True] if campaign.accrual_steps() else []) + ([] if certain else [False])
    shapes: list[Shape] = []
    for bonus, favourites in itertools.product(bonus_options, (True, False)):
        row: dict[str, Any] = {
            **_CUSTOMER,
            **(_BONUS if bonus else {}),
            **(_CHECK if purchase else {}),
            "event_amount": Decimal("120.00") if amount_event else None,
            "event_date": date(2025, 1, 8),
            "favourite_categories": ["Молочные продукты"] if favourites else [],
            "variant": variant,
            "occasion": "sample:2025-01-08",
            "send_date": date(2025, 1, 1),
        }
        absent = (
            *(() if bonus else ("bonus is absent (no accrual for this occasion)",)),
            *(() if favourites else ("favourite_categories is empty",)),
            *(() if purchase else ("check is absent (not a purchase trigger)",)),
            *(() if amount_event else ("event.amount is absent (not a bonus event)",)),
        )
        shapes.append(Shape(absent=absent, variables=template_variables(campaign, row)))
    return shapes
