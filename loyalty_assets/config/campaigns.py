"""Typed campaign definitions: one trigger, an optional audience, settings, and a chain of steps.

The shape follows the Loymax campaign editor of the seeds: a trigger block ("Годовщина",
"Наступление даты", "Наступление даты для клиента", an event such as a purchase), then a chain of
actions ("Отфильтровать клиентов", "Ждать", "A/B", "Начислить бонусы", "Отправить письмо", ...).
A chain is a list; a filter's `else:` and an A/B split's variants hold their own lists, so the chain
is a tree. Every block is a pydantic model with a `type:` discriminator, so a YAML file either
becomes a fully valid `Campaign` or fails with the file and the field at fault.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterator
from datetime import date, time, timedelta
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from loyalty_assets.config.filters import Filter

IDENTIFIER = r"^[a-z0-9][a-z0-9_]*$"

#: Date fields a date trigger can follow. `attribute:<name>` reads a customer attribute holding a date.
BUILTIN_DATE_FIELDS = ("birth_date", "registration_date", "first_check_date", "last_check_date")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_date_field(value: str) -> str:
    if value in BUILTIN_DATE_FIELDS or re.match(r"^attribute:[A-Za-z0-9_.-]+$", value):
        return value
    raise ValueError(f"expected one of {list(BUILTIN_DATE_FIELDS)} or 'attribute:<name>', got {value!r}")


def _check_zone(value: str | None) -> str | None:
    if value is not None and value not in zoneinfo.available_timezones():
        raise ValueError(f"unknown IANA time zone {value!r}")
    return value


class Delay(_Model):
    """A delay of minutes, hours and days (added together)."""

    minutes: int = Field(default=0, ge=0)
    hours: int = Field(default=0, ge=0)
    days: int = Field(default=0, ge=0)

    @property
    def timedelta(self) -> timedelta:
        return timedelta(days=self.days, hours=self.hours, minutes=self.minutes)


# --- triggers ---------------------------------------------------------------------------------


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
    A negative offset fires before the date: `offset_days: -3` on `birth_date` is "3 days before".
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

    Either one `on_date`, or a recurring `day_of_month` (e.g. 26 at 11:00 every month; a day past
    the month's end means its last day). The time is the customer's local time unless `timezone`
    pins one zone for everybody.
    """

    type: Literal["fixed_date"]
    on_date: date | None = None
    day_of_month: int | None = Field(default=None, ge=1, le=31)
    at: time = time(10, 0)
    timezone: str | None = None
    occasion: str | None = None

    _zone_ok = field_validator("timezone")(_check_zone)

    @model_validator(mode="after")
    def _one_schedule(self) -> FixedDateTrigger:
        if (self.on_date is None) == (self.day_of_month is None):
            raise ValueError("give exactly one of on_date or day_of_month")
        return self


EventName = Literal[
    "purchase",
    "registration",
    "bonus_accrual",
    "segment_entered",
    "segment_left",
    "message_opened",
    "message_clicked",
    "bonus_expiring",
    "bonus_expired",
    "favourite_purchase",
]


class EventTrigger(_Model):
    """Something a customer did or that happened to them on D, optionally after a `delay`.

    - `purchase`: a check (optionally containing `category` — sub-categories included — or
      `product`, or with a total of at least `min_total`); one occasion per check;
    - `registration`; `bonus_accrual` (an accrual in the loyalty ledger);
    - `segment_entered` / `segment_left` of a saved `segment` (compared with the day before);
    - `message_opened` / `message_clicked` (optionally of a `campaign`, on a `channel`);
    - `bonus_expiring`: accrued bonuses whose expiry falls `days_before` days after D;
    - `bonus_expired`: bonuses that expired on D.
    - `favourite_purchase`: a check with lines in the customer's favourite categories of its period;
      `event.amount` is the cashback they earn (`transforms.cashback`); one occasion per check.
    Events without an instant of their own (segment changes, expiry warnings) happen at `at`.
    """

    type: Literal["event"]
    event: EventName
    delay: Delay = Delay()
    at: time = time(10, 0)
    category: str | None = None
    product: str | None = None
    min_total: Decimal | None = Field(default=None, ge=0)
    segment: str | None = None
    campaign: str | None = None
    channel: Literal["email", "sms", "push", "viber"] | None = None
    days_before: int | None = Field(default=None, ge=1, le=365)

    @model_validator(mode="after")
    def _parameters_fit_event(self) -> EventTrigger:
        allowed = {
            "purchase": {"category", "product", "min_total"},
            "segment_entered": {"segment"},
            "segment_left": {"segment"},
            "message_opened": {"campaign", "channel"},
            "message_clicked": {"campaign", "channel"},
            "bonus_expiring": {"days_before"},
        }.get(self.event, set())
        given = {
            name
            for name in ("category", "product", "min_total", "segment", "campaign", "channel", "days_before")
            if getattr(self, name) is not None
        }
        if given - allowed:
            raise ValueError(f"event {self.event!r} does not take {sorted(given - allowed)}")
        if self.event in ("segment_entered", "segment_left") and self.segment is None:
            raise ValueError(f"event {self.event!r} needs `segment`")
        if self.event == "bonus_expiring" and self.days_before is None:
            raise ValueError("event 'bonus_expiring' needs `days_before`")
        return self


Trigger = Annotated[
    AnniversaryTrigger | DateArrivalTrigger | FixedDateTrigger | EventTrigger, Field(discriminator="type")
]


class Audience(_Model):
    """Entry condition ("Если"): members of a saved segment, an inline filter, or both (AND)."""

    segment: str | None = None
    filter: Filter | None = None


# --- steps ------------------------------------------------------------------------------------


class AccrueBonuses(_Model):
    """'Начислить бонусы': a fixed `amount` or `percent_of_check` of the triggering purchase.

    Bonuses are valid `lifetime_days` and booked on a legal entity.
    """

    type: Literal["accrue_bonuses"]
    id: str = Field(pattern=IDENTIFIER)
    amount: Decimal | None = Field(default=None, gt=0, max_digits=12, decimal_places=2)
    percent_of_check: Decimal | None = Field(default=None, gt=0, le=100, decimal_places=2)
    #: the cashback a `favourite_purchase` trigger computed: `preference` % of the favourite lines
    favourite_cashback: bool = False
    lifetime_days: int | None = Field(default=None, ge=1)
    legal_entity: str
    reason: str | None = None

    @model_validator(mode="after")
    def _one_amount(self) -> AccrueBonuses:
        given = [self.amount is not None, self.percent_of_check is not None, self.favourite_cashback]
        if sum(given) != 1:
            raise ValueError("give exactly one of amount, percent_of_check or favourite_cashback")
        return self


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


class NotifyStaff(_Model):
    """Tell a member of staff (e.g. "a customer just bought an expensive item")."""

    type: Literal["notify_staff"]
    id: str = Field(pattern=IDENTIFIER)
    recipient: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    subject: str = Field(min_length=1)
    text: str = Field(min_length=1)


class SegmentAction(_Model):
    """'Добавить в сегмент' / 'Удалить из сегмента': a manual segment kept by campaigns.

    Membership is read back with the filter `{field: segment, op: eq, value: <segment>}`, in campaign
    audiences and steps and in saved segments alike.
    """

    type: Literal["add_to_segment", "remove_from_segment"]
    id: str = Field(pattern=IDENTIFIER)
    segment: str = Field(pattern=IDENTIFIER)


class Wait(_Model):
    """'Ждать': continue after a delay, optionally at the next local `until` time after it.

    A wait may cross days: the customer is kept as pending and continues in that day's run.
    """

    type: Literal["wait"]
    id: str = Field(pattern=IDENTIFIER)
    minutes: int = Field(default=0, ge=0)
    hours: int = Field(default=0, ge=0)
    days: int = Field(default=0, ge=0)
    until: time | None = None

    @property
    def delay(self) -> timedelta:
        return timedelta(days=self.days, hours=self.hours, minutes=self.minutes)


class FilterStep(_Model):
    """'Отфильтровать клиентов': matching customers go on; the others take `else` (or leave).

    Evaluated on the day the customer reaches the step, so a filter after a wait is refreshed.
    `segment:` is a shortcut for a saved segment's members ("Выбрать клиентов из сегмента").
    """

    type: Literal["filter"]
    id: str = Field(pattern=IDENTIFIER)
    filter: Filter | None = None
    segment: str | None = None
    else_: list[Step] = Field(default_factory=list, alias="else")

    @model_validator(mode="after")
    def _something_to_test(self) -> FilterStep:
        if self.filter is None and self.segment is None:
            raise ValueError("give a filter, a segment, or both")
        return self


class AdaptiveSplit(_Model):
    """Loymax-style split: the first `first_n` entrants are split evenly; `decide_after_days` after
    the n-th entered, later entrants all go to the variant that won on `metric`."""

    first_n: int = Field(ge=2)
    decide_after_days: int = Field(ge=0)
    metric: Literal["opens", "clicks", "checks"]


class Variant(_Model):
    name: str = Field(pattern=IDENTIFIER)
    weight: Decimal = Field(default=Decimal(1), gt=0)
    steps: list[Step] = Field(default_factory=list)


class ABSplit(_Model):
    """A/B split: named variants with weights, stable per campaign and customer."""

    type: Literal["ab_split"]
    id: str = Field(pattern=IDENTIFIER)
    variants: list[Variant] = Field(min_length=2)
    adaptive: AdaptiveSplit | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> ABSplit:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        return self


Step = Annotated[
    AccrueBonuses | SendEmail | SendText | NotifyStaff | SegmentAction | Wait | FilterStep | ABSplit,
    Field(discriminator="type"),
]

MessageStep = SendEmail | SendText | NotifyStaff


class QuietHours(_Model):
    """No sending in the customer's local night: a message due then waits for `end`."""

    start: time = time(21, 0)
    end: time = time(9, 0)
    channels: tuple[Literal["email", "sms", "push"], ...] = ("sms", "push")


TouchEvent = Literal["sent", "delivered", "opened", "clicked"]


class AttributionFrom(_Model):
    """Per channel, the message event from which a check counts for the message (Loymax's rule:
    email and push once opened, SMS once delivered). `attribution_from: sent` counts every channel
    from the send."""

    email: TouchEvent = "opened"
    push: TouchEvent = "opened"
    sms: TouchEvent = "delivered"
    viber: TouchEvent = "delivered"

    @model_validator(mode="before")
    @classmethod
    def _one_for_all(cls, value: object) -> object:
        if isinstance(value, str):
            return {channel: value for channel in ("email", "push", "sms", "viber")}
        return value

    def as_dict(self) -> dict[str, str]:
        return {"email": self.email, "push": self.push, "sms": self.sms, "viber": self.viber}


class Gates(_Model):
    """Fail-closed limits: a campaign does not send when its inputs look wrong.

    `max_audience_jump`: today's entrants may be at most this factor of yesterday's (ignored when
    yesterday had fewer than `min_audience_for_jump`); `override_dates`: dates on which a failed
    gate is accepted after a human looked at it.
    """

    max_audience_jump: Decimal | None = Field(default=Decimal(10), gt=1)
    min_audience_for_jump: int = Field(default=20, ge=0)
    override_dates: tuple[date, ...] = ()


class Settings(_Model):
    """Campaign-wide settings from the seed's 'стартовые настройки'."""

    control_group_percent: Decimal = Field(default=Decimal(0), ge=0, le=100)
    reentry_days: int | None = Field(default=None, ge=0, description="no re-entry within N days")
    once_per_customer: bool = False
    max_messages_per_hour: int | None = Field(default=None, ge=1)
    attribution_days: int = Field(default=7, ge=0, description="checks within N days of a message count for it")
    attribution_from: AttributionFrom = Field(default_factory=lambda: AttributionFrom())
    confidence: Decimal = Field(
        default=Decimal("0.95"), gt=0, lt=1, description="confidence level of intervals and of A/B winners"
    )
    quiet_hours: QuietHours | None = None
    exclude_global_control: bool = True
    priority: int = Field(default=100, description="lower runs first under the frequency cap")
    gates: Gates = Gates()


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
        ids = [s.id for s in self.all_steps()]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"step ids must be unique in the whole chain, repeated: {duplicates}")
        if any(isinstance(s, AccrueBonuses) and s.percent_of_check for s in self.all_steps()) and not (
            isinstance(self.trigger, EventTrigger) and self.trigger.event == "purchase"
        ):
            raise ValueError("percent_of_check needs a purchase trigger (there is no check otherwise)")
        if any(isinstance(s, AccrueBonuses) and s.favourite_cashback for s in self.all_steps()) and not (
            isinstance(self.trigger, EventTrigger) and self.trigger.event == "favourite_purchase"
        ):
            raise ValueError("favourite_cashback needs a favourite_purchase trigger (it computes the cashback)")
        splits = [s for s in self.all_steps() if isinstance(s, ABSplit)]
        if len(splits) > 1:
            raise ValueError("at most one ab_split per campaign (a customer has one variant)")
        return self

    def all_steps(self) -> Iterator[Step]:
        """Every step of the chain, branches included, depth first."""
        yield from _walk(self.steps)

    def is_live_on(self, day: date) -> bool:
        """Active, and `day` within [start_date, end_date] (both ends included)."""
        if self.status != "active":
            return False
        if self.start_date and day < self.start_date:
            return False
        return not (self.end_date and day > self.end_date)

    def accrual_steps(self) -> list[AccrueBonuses]:
        return [s for s in self.all_steps() if isinstance(s, AccrueBonuses)]

    def message_steps(self) -> list[SendEmail | SendText | NotifyStaff]:
        return [s for s in self.all_steps() if isinstance(s, SendEmail | SendText | NotifyStaff)]

    def ab_split(self) -> ABSplit | None:
        return next((s for s in self.all_steps() if isinstance(s, ABSplit)), None)


def _walk(steps: list[Step]) -> Iterator[Step]:
    for step in steps:
        yield step
        if isinstance(step, FilterStep):
            yield from _walk(step.else_)
        elif isinstance(step, ABSplit):
            for variant in step.variants:
                yield from _walk(variant.steps)


class GlobalControlGroup(_Model):
    """N percent of the whole base held out of all campaigns, re-drawn every M months from `start`."""

    percent: Decimal = Field(gt=0, le=50)
    reform_every_months: int = Field(default=6, ge=1)
    start: date = date(2024, 1, 1)


class FrequencyCap(_Model):
    """At most `max_messages` per customer in any rolling `days` days, across campaigns."""

    max_messages: int = Field(ge=1)
    days: int = Field(default=7, ge=1)
    channels: tuple[Literal["email", "sms", "push"], ...] = ("email", "sms", "push")


class Program(_Model):
    """Program-wide settings (`program.yaml` in the catalog folder)."""

    timezone: str = "Europe/Moscow"
    partitions_start: date = date(2024, 1, 1)
    daily_run_at: time = time(6, 0)
    closing_run_at: time = time(0, 30)
    sample_date: date = date(2025, 6, 26)
    global_control_group: GlobalControlGroup | None = None
    frequency_cap: FrequencyCap | None = None
    min_checks_ratio: Decimal | None = Field(
        default=Decimal("0.3"), ge=0, le=1, description="gate: yesterday's checks vs the 28-day median"
    )
    gate_override_dates: tuple[date, ...] = ()
    #: The daily and closing schedules start STOPPED (a UI opened on sample data must not launch runs
    #: for today); `true` in production makes them start running when the code location loads.
    schedules_running: bool = False
    #: The day's per-customer work in this many customer shards, run in turn (`transforms.shards`):
    #: the same outputs for any count; more shards, less memory at a time.
    shards: int = Field(default=1, ge=1, le=4096)

    _zone_ok = field_validator("timezone")(_check_zone)


FilterStep.model_rebuild()
Variant.model_rebuild()
ABSplit.model_rebuild()
Campaign.model_rebuild()
