"""Typed campaign definitions: one trigger, an optional audience, settings, and a chain of steps.

The shape follows the Loymax campaign editor of the seeds: a trigger block ("Годовщина",
"Наступление даты", "Наступление даты для клиента"), then actions ("Начислить бонусы",
"Отправить письмо", ...). Every block is a pydantic model with a `type:` discriminator, so a YAML
file either becomes a fully valid `Campaign` or fails with the file and the field at fault.
"""

from __future__ import annotations

import re
from datetime import date, time
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from loyalty_assets.config.filters import Filter

IDENTIFIER = r"^[a-z0-9][a-z0-9_]*$"

#: Date fields a date trigger can follow. `attribute:<name>` reads a customer attribute holding a date.
BUILTIN_DATE_FIELDS = ("birth_date", "registration_date", "first_check_date", "last_check_date")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_date_field(value: str) -> str:
    if value in BUILTIN_DATE_FIELDS or re.match(r"^attribute:[A-Za-z0-9_.-]+$", value):
        return value
    raise ValueError(f"expected one of {list(BUILTIN_DATE_FIELDS)} or 'attribute:<name>', got {value!r}")


class AnniversaryTrigger(_Model):
    """'Годовщина': every N years (or months) after a date field, shifted by `offset_days`.

    `offset_days: -7` fires a week before the anniversary. `missing_day` says where an anniversary
    that does not exist in the target month goes (29 February in a non-leap year, the 31st in a
    30-day month): `next_day` (1 March, the default) or `last_day` (28 February).
    """

    type: Literal["anniversary"]
    field: str = "birth_date"
    every_years: int | None = Field(default=None, ge=1)
    every_months: int | None = Field(default=None, ge=1)
    offset_days: int = Field(default=0, ge=-366, le=366)
    at: time = time(10, 0)
    missing_day: Literal["next_day", "last_day"] = "next_day"
    occasion: str | None = Field(default=None, description="prefix of the occasion key; default from field")

    _field_ok = field_validator("field")(_check_date_field)

    @model_validator(mode="after")
    def _one_interval(self) -> AnniversaryTrigger:
        if self.every_years is not None and self.every_months is not None:
            raise ValueError("give either every_years or every_months, not both")
        return self

    @property
    def interval_months(self) -> int:
        if self.every_months is not None:
            return self.every_months
        return 12 * (self.every_years or 1)


class DateArrivalTrigger(_Model):
    """'Наступление даты для клиента': the customer's date field plus `offset_days` is today.

    `repeat: yearly` (default) fires on the date's day and month every year, as a birthday does;
    `repeat: once` fires only on the exact date (e.g. an attribute holding a contract end date).
    """

    type: Literal["date_arrival"]
    field: str = "birth_date"
    offset_days: int = Field(default=0, ge=-366, le=366)
    repeat: Literal["yearly", "once"] = "yearly"
    at: time = time(10, 0)
    missing_day: Literal["next_day", "last_day"] = "next_day"
    occasion: str | None = None

    _field_ok = field_validator("field")(_check_date_field)


class FixedDateTrigger(_Model):
    """'Наступление даты': the campaign starts for its whole audience at a date and time.

    Either one `on_date`, or a recurring `day_of_month` (e.g. 26 at 11:00 every month). The time is
    the customer's local time unless `timezone` pins one zone for everybody.
    """

    type: Literal["fixed_date"]
    on_date: date | None = None
    day_of_month: int | None = Field(default=None, ge=1, le=31)
    at: time = time(10, 0)
    timezone: str | None = None
    occasion: str | None = None

    @model_validator(mode="after")
    def _one_schedule(self) -> FixedDateTrigger:
        if (self.on_date is None) == (self.day_of_month is None):
            raise ValueError("give exactly one of on_date or day_of_month")
        return self


Trigger = Annotated[AnniversaryTrigger | DateArrivalTrigger | FixedDateTrigger, Field(discriminator="type")]


class Audience(_Model):
    """Who may enter: members of a saved segment, customers matching an inline filter, or both."""

    segment: str | None = None
    filter: Filter | None = None


class AccrueBonuses(_Model):
    """'Начислить бонусы': a fixed amount, valid `lifetime_days`, booked on a legal entity."""

    type: Literal["accrue_bonuses"]
    id: str = Field(pattern=IDENTIFIER)
    amount: Decimal = Field(gt=0, max_digits=12, decimal_places=2)
    lifetime_days: int | None = Field(default=None, ge=1)
    legal_entity: str
    reason: str | None = None


class SendEmail(_Model):
    """'Отправить письмо': subject (a template string) and an HTML body template file."""

    type: Literal["send_email"]
    id: str = Field(pattern=IDENTIFIER)
    subject: str = Field(min_length=1)
    template: str = Field(min_length=1, description="file name under the catalog's templates/ folder")


class SendText(_Model):
    """'Отправить SMS / пуш': a plain-text template (inline `text` or a template file)."""

    type: Literal["send_sms", "send_push"]
    id: str = Field(pattern=IDENTIFIER)
    text: str | None = None
    template: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SendText:
        if (self.text is None) == (self.template is None):
            raise ValueError("give exactly one of text or template")
        return self


Step = Annotated[AccrueBonuses | SendEmail | SendText, Field(discriminator="type")]


class Settings(_Model):
    """Campaign-wide settings from the seed's 'стартовые настройки'."""

    control_group_percent: Decimal = Field(default=Decimal(0), ge=0, le=100)
    reentry_days: int | None = Field(default=None, ge=0, description="no re-entry within N days")
    max_messages_per_hour: int | None = Field(default=None, ge=1)


class Campaign(_Model):
    """One campaign file."""

    id: str = Field(pattern=IDENTIFIER)
    name: str
    description: str | None = None
    status: Literal["active", "paused", "archived"] = "active"
    start_date: date | None = None
    end_date: date | None = None
    trigger: Trigger
    audience: Audience | None = None
    settings: Settings = Settings()
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Campaign:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        ids = [s.id for s in self.steps]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"step ids must be unique, repeated: {duplicates}")
        return self

    def is_live_on(self, day: date) -> bool:
        """Active, and `day` within [start_date, end_date] (both ends included)."""
        if self.status != "active":
            return False
        if self.start_date and day < self.start_date:
            return False
        return not (self.end_date and day > self.end_date)

    def accrual_steps(self) -> list[AccrueBonuses]:
        return [s for s in self.steps if isinstance(s, AccrueBonuses)]

    def message_steps(self) -> list[SendEmail | SendText]:
        return [s for s in self.steps if isinstance(s, SendEmail | SendText)]


class Program(_Model):
    """Program-wide settings (`program.yaml` in the catalog folder)."""

    timezone: str = "Europe/Moscow"
    partitions_start: date = date(2024, 1, 1)
    daily_run_at: time = time(6, 0)
    sample_date: date = date(2025, 6, 26)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        import zoneinfo

        if value not in zoneinfo.available_timezones():
            raise ValueError(f"unknown IANA time zone {value!r}")
        return value
