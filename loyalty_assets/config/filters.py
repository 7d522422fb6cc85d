"""The segment filter language: what a marketer may write under `filter:` in a segment or campaign.

A filter is a tree of `all:` (AND), `any:` (OR) and `not:` nodes over conditions such as
`{field: purchase_count, op: ge, value: 2, window: {last_days: 30}, category: dairy}`. Everything a
condition can get wrong (unknown field, operator that does not fit the field's type, a value of the
wrong type, a bad date, a parameter the field does not take) is rejected here, at load time, with the
path of the offending key, so that a run never discovers a typo at 3 a.m.

The models only describe and validate; compiling to Polars lives in `transforms/segments.py` and the
features a condition needs are derived in `transforms/features.py`. Nothing here imports Polars.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PositiveInt,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from loyalty_assets.config.errors import DefinitionError

#: Segment ids (and anything else used as a file stem or an audience key).
ID_PATTERN = re.compile(r"^[a-z0-9_]+$")


class Op(StrEnum):
    """Comparison operators; `between` includes both ends."""

    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    BETWEEN = "between"
    IN = "in"
    NOT_IN = "not_in"
    IS_SET = "is_set"
    IS_EMPTY = "is_empty"
    CONTAINS = "contains"


#: Symbols a marketer may type instead of the operator names.
OP_ALIASES: dict[str, Op] = {
    "=": Op.EQ,
    "==": Op.EQ,
    "!=": Op.NE,
    "≠": Op.NE,
    "<>": Op.NE,
    "<": Op.LT,
    "<=": Op.LE,
    "≤": Op.LE,
    ">": Op.GT,
    ">=": Op.GE,
    "≥": Op.GE,
}


class ValueType(StrEnum):
    """What a field holds, which decides the operators and the value it accepts."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"  # float, e.g. average items per check
    DECIMAL = "decimal"  # money, bonuses, quantities: compared as Decimal, never as float
    DATE = "date"
    BOOLEAN = "boolean"
    LIST = "list"  # list of strings: labels, favourite categories
    SEGMENT = "segment"  # membership in another segment
    SAMPLE = "sample"  # random_sample: no operator, no value
    DYNAMIC = "dynamic"  # attributes and extra customer columns: typed by the value written


_ORDERED = frozenset({Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE, Op.BETWEEN, Op.IN, Op.NOT_IN, Op.IS_SET, Op.IS_EMPTY})
OPS_BY_TYPE: dict[ValueType, frozenset[Op]] = {
    ValueType.STRING: frozenset({Op.EQ, Op.NE, Op.IN, Op.NOT_IN, Op.IS_SET, Op.IS_EMPTY, Op.CONTAINS}),
    ValueType.INTEGER: _ORDERED,
    ValueType.NUMBER: _ORDERED,
    ValueType.DECIMAL: _ORDERED,
    ValueType.DATE: _ORDERED,
    ValueType.BOOLEAN: frozenset({Op.EQ, Op.NE, Op.IS_SET, Op.IS_EMPTY}),
    ValueType.LIST: frozenset({Op.CONTAINS, Op.IS_SET, Op.IS_EMPTY}),
    ValueType.SEGMENT: frozenset({Op.EQ, Op.NE, Op.IN, Op.NOT_IN}),
    ValueType.SAMPLE: frozenset(),
    ValueType.DYNAMIC: frozenset(Op),
}

#: Operators that take no value.
VALUELESS_OPS = frozenset({Op.IS_SET, Op.IS_EMPTY})


@dataclass(frozen=True)
class FieldDef:
    """One field of the language: its type, the parameters it takes and the source it reads."""

    name: str
    type: ValueType
    source: str
    params: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()
    doc: str = ""


def _fields(*defs: FieldDef) -> dict[str, FieldDef]:
    return {d.name: d for d in defs}


_PURCHASE_PARAMS = frozenset({"window", "category", "product"})
_P = ValueType

#: Every field a condition may name (plus `customer.<column>` for extra customer columns).
FIELDS: dict[str, FieldDef] = _fields(
    # profile: one value per customer, always present in the features frame
    FieldDef("gender", _P.STRING, "profile", doc="F / M / null"),
    FieldDef("age", _P.INTEGER, "profile", doc="full years at D"),
    FieldDef("birth_date", _P.DATE, "profile"),
    FieldDef("birth_month", _P.INTEGER, "profile", doc="1..12"),
    FieldDef("birth_day", _P.INTEGER, "profile", doc="1..31"),
    FieldDef("city", _P.STRING, "profile"),
    FieldDef("timezone", _P.STRING, "profile", doc="the customer's IANA zone as stored (null if none)"),
    FieldDef("registration_date", _P.DATE, "profile", doc="customer-local date of registered_at"),
    FieldDef("days_since_registration", _P.INTEGER, "profile", doc="D − registration_date"),
    FieldDef("email_subscribed", _P.BOOLEAN, "profile"),
    FieldDef("sms_subscribed", _P.BOOLEAN, "profile"),
    FieldDef("push_subscribed", _P.BOOLEAN, "profile"),
    FieldDef("email_valid", _P.BOOLEAN, "profile", doc="deliverability"),
    FieldDef("has_email", _P.BOOLEAN, "profile"),
    FieldDef("has_phone", _P.BOOLEAN, "profile"),
    FieldDef("has_push_token", _P.BOOLEAN, "profile"),
    FieldDef("labels", _P.LIST, "profile"),
    # purchases: aggregated over checks (and their lines when category/product is given)
    FieldDef("purchase_count", _P.INTEGER, "purchases", _PURCHASE_PARAMS, doc="number of checks"),
    FieldDef(
        "purchase_total",
        _P.DECIMAL,
        "purchases",
        _PURCHASE_PARAMS,
        doc="sum of check totals (of matching line amounts with category/product)",
    ),
    FieldDef("average_check", _P.DECIMAL, "purchases", _PURCHASE_PARAMS),
    FieldDef(
        "average_items_per_check",
        _P.NUMBER,
        "purchases",
        _PURCHASE_PARAMS,
        doc="check lines (positions) per check",
    ),
    FieldDef("first_check_date", _P.DATE, "purchases", _PURCHASE_PARAMS),
    FieldDef("last_check_date", _P.DATE, "purchases", _PURCHASE_PARAMS),
    FieldDef("days_since_first_check", _P.INTEGER, "purchases", _PURCHASE_PARAMS),
    FieldDef("days_since_last_check", _P.INTEGER, "purchases", _PURCHASE_PARAMS),
    FieldDef(
        "bought",
        _P.INTEGER,
        "purchases",
        _PURCHASE_PARAMS | {"measure"},
        doc="checks with the product/category; `measure: amount|quantity` sums lines instead",
    ),
    # bonuses
    FieldDef("bonus_balance", _P.DECIMAL, "bonuses", doc="accruals − redemptions − expiries up to D"),
    FieldDef("bonuses_accrued", _P.DECIMAL, "bonuses", frozenset({"window"})),
    FieldDef("bonuses_redeemed", _P.DECIMAL, "bonuses", frozenset({"window"})),
    FieldDef(
        "bonuses_expiring",
        _P.DECIMAL,
        "bonuses",
        frozenset({"within_days"}),
        frozenset({"within_days"}),
        doc="accruals expiring in (D, D+N], not net of redemptions",
    ),
    # attributes
    FieldDef("attribute", _P.DYNAMIC, "attributes", frozenset({"name"}), frozenset({"name"})),
    # favourite categories
    FieldDef("favourite_chosen", _P.BOOLEAN, "favourites", frozenset({"period"})),
    FieldDef("favourite_categories", _P.LIST, "favourites", frozenset({"period"})),
    FieldDef("days_since_favourite_choice", _P.INTEGER, "favourites", frozenset({"period"})),
    # communications and site
    FieldDef("message_events", _P.INTEGER, "communications", frozenset({"event", "channel", "campaign", "window"})),
    FieldDef("site_visits", _P.INTEGER, "site_visits", frozenset({"category", "url_contains", "window"})),
    # other segments and sampling
    FieldDef("segment", _P.SEGMENT, "segment"),
    FieldDef("random_sample", _P.SAMPLE, "sample", frozenset({"percent"}), frozenset({"percent"})),
)

#: Prefix giving access to any extra column of `customers`.
CUSTOMER_PREFIX = "customer."

#: Parameters a condition may carry, in declaration order on `Condition`.
PARAMS: tuple[str, ...] = (
    "window",
    "category",
    "product",
    "measure",
    "within_days",
    "name",
    "period",
    "event",
    "channel",
    "campaign",
    "url_contains",
    "percent",
)


def field_def(name: str) -> FieldDef:
    """The definition of `name`, including the open-ended `customer.<column>` fields."""
    if name.startswith(CUSTOMER_PREFIX):
        return FieldDef(name, ValueType.DYNAMIC, "customer")
    return FIELDS[name]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Window(_Strict):
    """A range of customer-local days: the last N days ending with D, or fixed dates (inclusive).

    Fixed dates are still capped at D: a run never sees the future.
    """

    last_days: PositiveInt | None = None
    from_: date | None = Field(default=None, alias="from")
    to: date | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Window:
        if self.last_days is not None and (self.from_ is not None or self.to is not None):
            raise ValueError("give either last_days or from/to, not both")
        if self.last_days is None and self.from_ is None and self.to is None:
            raise ValueError("give last_days: N or from: DATE / to: DATE")
        if self.from_ is not None and self.to is not None and self.from_ > self.to:
            raise ValueError(f"from ({self.from_}) is after to ({self.to})")
        return self

    @property
    def key(self) -> str:
        """A deterministic, column-name-friendly key, e.g. `last_30d` or `from_2025_01_01_to_2025_03_31`."""
        if self.last_days is not None:
            return f"last_{self.last_days}d"
        parts = []
        if self.from_ is not None:
            parts.append(f"from_{self.from_:%Y_%m_%d}")
        if self.to is not None:
            parts.append(f"to_{self.to:%Y_%m_%d}")
        return "_".join(parts)


class Period(_Strict):
    """Which favourite-category period to look at: the one containing the 1st of `month` (YYYY-MM)."""

    month: date

    @field_validator("month", mode="before")
    @classmethod
    def _parse_month(cls, v: Any) -> Any:
        if isinstance(v, str) and re.fullmatch(r"\d{4}-\d{2}", v.strip()):
            year, month = v.strip().split("-")
            try:
                return date(int(year), int(month), 1)
            except ValueError as e:
                raise ValueError(f"expected a month YYYY-MM, got {v!r}") from e
        if isinstance(v, date):
            return v.replace(day=1)
        raise ValueError(f"expected a month YYYY-MM, got {v!r}")


def _closest(name: str, known: list[str]) -> str:
    match = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _coerce_scalar(v: Any, vtype: ValueType) -> Any:
    """Convert one YAML scalar to the Python value the field is compared with, or raise ValueError."""
    if vtype in (ValueType.STRING, ValueType.LIST, ValueType.SEGMENT):
        if isinstance(v, bool) or not isinstance(v, str | int):
            raise ValueError(f"expected a text value, got {v!r}")
        s = str(v)
        if vtype is ValueType.SEGMENT and not ID_PATTERN.match(s):
            raise ValueError(f"expected a segment id matching [a-z0-9_]+, got {v!r}")
        return s
    if vtype is ValueType.BOOLEAN:
        if not isinstance(v, bool):
            raise ValueError(f"expected true or false, got {v!r}")
        return v
    if vtype is ValueType.INTEGER:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"expected a whole number, got {v!r}")
        return v
    if vtype is ValueType.NUMBER:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"expected a number, got {v!r}")
        return float(v)
    if vtype is ValueType.DECIMAL:
        if isinstance(v, bool) or not isinstance(v, int | float | str | Decimal):
            raise ValueError(f"expected an amount, got {v!r}")
        try:
            d = Decimal(str(v).strip())  # via str: 1000.1 stays 1000.1, not its binary float expansion
        except InvalidOperation as e:
            raise ValueError(f"expected an amount, got {v!r}") from e
        if not d.is_finite():
            raise ValueError(f"expected a finite amount, got {v!r}")
        return d
    if vtype is ValueType.DATE:
        return _parse_date(v)
    if vtype is ValueType.DYNAMIC:
        if isinstance(v, bool | int | float):
            return v
        if isinstance(v, date):
            return v
        if isinstance(v, str):
            # a date-looking text is a date (and a bad one is an error, not a silent text compare)
            return _parse_date(v) if re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", v.strip()) else v
        raise ValueError(f"expected a text, number, date or boolean, got {v!r}")
    raise ValueError(f"this field takes no value, got {v!r}")


def _parse_date(v: Any) -> date:
    if isinstance(v, date) and not hasattr(v, "hour"):
        return v
    if isinstance(v, str):
        try:
            return date.fromisoformat(v.strip())
        except ValueError as e:
            raise ValueError(f"expected a date YYYY-MM-DD, got {v!r}") from e
    raise ValueError(f"expected a date YYYY-MM-DD, got {v!r}")


def _dynamic_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, date):
        return "date"
    return "text"


class Condition(_Strict):
    """One test on one field, e.g. `{field: bonuses_accrued, op: gt, value: 1000}`.

    After validation `op` is canonical (aliases resolved) and `value` holds Python values of the
    field's type (Decimal for amounts, `date` for dates, a 2-tuple for `between`, a tuple for `in`).
    """

    # Order matters: validators of later keys read the already validated earlier ones.
    field: str
    op: Op | None = Field(default=None, validate_default=True)
    window: Window | None = None
    category: str | None = None
    product: str | None = None
    measure: Literal["checks", "amount", "quantity"] | None = None
    within_days: PositiveInt | None = None
    name: str | None = None
    period: Period | None = None
    event: Literal["sent", "delivered", "opened", "clicked", "bounced", "unsubscribed"] | None = None
    channel: Literal["email", "sms", "push", "viber"] | None = None
    campaign: str | None = None
    url_contains: str | None = None
    percent: float | None = Field(default=None, gt=0, le=100)
    value: Any = Field(default=None, validate_default=True)

    @field_validator("field")
    @classmethod
    def _known_field(cls, v: str) -> str:
        if v.startswith(CUSTOMER_PREFIX):
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v[len(CUSTOMER_PREFIX) :]):
                raise ValueError(f"expected customer.<column name>, got {v!r}")
            return v
        if v not in FIELDS:
            known = sorted(FIELDS)
            raise ValueError(
                f"unknown field {v!r}{_closest(v, known)}; known fields: {', '.join(known)}, customer.<column>"
            )
        return v

    @field_validator("op", mode="before")
    @classmethod
    def _alias(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip()
            return OP_ALIASES.get(v, v.lower())
        return v

    @field_validator("op")
    @classmethod
    def _op_fits(cls, v: Op | None, info: ValidationInfo) -> Op | None:
        name = info.data.get("field")
        if name is None:
            return v
        fd = field_def(name)
        allowed = OPS_BY_TYPE[fd.type]
        if fd.type is ValueType.SAMPLE:
            if v is not None:
                raise ValueError("random_sample takes no operator: write {field: random_sample, percent: N}")
            return v
        if v is None:
            raise ValueError(f"an operator is required; for {name!r} one of {', '.join(sorted(allowed))}")
        if v not in allowed:
            raise ValueError(
                f"operator {v.value!r} does not fit field {name!r} ({fd.type.value}); "
                f"use one of {', '.join(sorted(allowed))}"
            )
        return v

    @field_validator(*PARAMS)
    @classmethod
    def _param_applies(cls, v: Any, info: ValidationInfo) -> Any:
        name = info.data.get("field")
        if name is None or v is None:
            return v
        fd = field_def(name)
        if info.field_name not in fd.params:
            takes = ", ".join(sorted(fd.params)) or "none"
            raise ValueError(f"{info.field_name!r} is not a parameter of field {name!r} (its parameters: {takes})")
        return v

    @field_validator("value")
    @classmethod
    def _value_fits(cls, v: Any, info: ValidationInfo) -> Any:
        name = info.data.get("field")
        if name is None or "op" not in info.data:
            return v  # the field or operator is already reported
        op: Op | None = info.data["op"]
        vtype = _value_type(field_def(name), info.data.get("measure"))
        if vtype is ValueType.SAMPLE or op in VALUELESS_OPS:
            if v is not None:
                what = "random_sample" if op is None else f"operator {op.value!r}"
                raise ValueError(f"{what} takes no value")
            return None
        if v is None:
            raise ValueError(f"operator {op.value if op else op!r} needs a value")
        if op is Op.BETWEEN:
            if not isinstance(v, list | tuple) or len(v) != 2:
                raise ValueError(f"between needs exactly 2 values [low, high], got {v!r}")
            low, high = (_coerce_scalar(x, vtype) for x in v)
            if vtype is ValueType.DYNAMIC:
                kinds = {_dynamic_kind(low), _dynamic_kind(high)}
                if kinds not in ({"number"}, {"date"}):
                    raise ValueError(f"between needs two numbers or two dates, got {v!r}")
            if low > high:
                raise ValueError(f"between: low {low} is above high {high}")
            return (low, high)
        if op in (Op.IN, Op.NOT_IN):
            if not isinstance(v, list | tuple) or not v:
                raise ValueError(f"{op.value} needs a non-empty list of values, got {v!r}")
            return tuple(_coerce_scalar(x, vtype) for x in v)
        assert op is not None  # only random_sample (returned above) has no operator
        if isinstance(v, list | tuple | dict):
            raise ValueError(f"operator {op.value!r} needs a single value, got {v!r}")
        value = _coerce_scalar(v, vtype)
        if vtype is ValueType.DYNAMIC:
            kind = _dynamic_kind(value)
            if op is Op.CONTAINS and kind != "text":
                raise ValueError(f"contains needs a text value, got {v!r}")
            if op in (Op.LT, Op.LE, Op.GT, Op.GE) and kind not in ("number", "date"):
                raise ValueError(f"operator {op.value!r} needs a number or a date, got {v!r}")
        return value

    @model_validator(mode="after")
    def _required_params(self) -> Condition:
        fd = field_def(self.field)
        missing = sorted(p for p in fd.required if getattr(self, p) is None)
        if missing:
            raise ValueError(f"field {self.field!r} needs parameter(s): {', '.join(missing)}")
        if self.field == "bought" and self.category is None and self.product is None:
            raise ValueError("field 'bought' needs `category:` or `product:`")
        if self.category is not None and self.product is not None:
            raise ValueError("give `category:` or `product:`, not both")
        return self

    @property
    def value_type(self) -> ValueType:
        """The type the field's value has (depends on `measure` for `bought`)."""
        return _value_type(field_def(self.field), self.measure)


def _value_type(fd: FieldDef, measure: str | None) -> ValueType:
    if fd.name == "bought" and measure in ("amount", "quantity"):
        return ValueType.DECIMAL
    return fd.type


class AllOf(_Strict):
    """AND of the listed filters (an empty list is true)."""

    all: list[Filter]


class AnyOf(_Strict):
    """OR of the listed filters (an empty list is false)."""

    any: list[Filter]


class Not(_Strict):
    """Negation of one filter. A condition on a missing value is false, so `not` of it is true."""

    not_: Filter = Field(alias="not")


def _node_kind(v: Any) -> str:
    if isinstance(v, dict):
        for key, tag in (("all", "AllOf"), ("any", "AnyOf"), ("not", "Not")):
            if key in v:
                return tag
        return "Condition"
    return type(v).__name__ if isinstance(v, AllOf | AnyOf | Not | Condition) else "Condition"


#: Tags pydantic inserts in error locations for the union below; stripped when reporting.
_UNION_TAGS = frozenset({"AllOf", "AnyOf", "Not", "Condition"})

Filter = Annotated[
    Annotated[AllOf, Tag("AllOf")]
    | Annotated[AnyOf, Tag("AnyOf")]
    | Annotated[Not, Tag("Not")]
    | Annotated[Condition, Tag("Condition")],
    Discriminator(_node_kind),
]

AllOf.model_rebuild()
AnyOf.model_rebuild()
Not.model_rebuild()


def iter_conditions(f: Filter, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], Condition]]:
    """Every condition of a filter tree with its path (e.g. `('all', 1)`), in document order."""
    if isinstance(f, Condition):
        return [(path, f)]
    if isinstance(f, AllOf):
        return [c for i, sub in enumerate(f.all) for c in iter_conditions(sub, (*path, "all", i))]
    if isinstance(f, AnyOf):
        return [c for i, sub in enumerate(f.any) for c in iter_conditions(sub, (*path, "any", i))]
    return iter_conditions(f.not_, (*path, "not"))


def referenced_segments(f: Filter) -> set[str]:
    """Ids of the segments a filter refers to with `field: segment`."""
    refs: set[str] = set()
    for _, c in iter_conditions(f):
        if c.field == "segment":
            refs.update(c.value if isinstance(c.value, tuple) else (c.value,))
    return refs


def error_location(loc: tuple[str | int, ...]) -> str:
    """A pydantic error location as the marketer sees it in the file, e.g. `filter.all.1.value`."""
    parts = [str(p) for p in loc if p not in _UNION_TAGS]
    return ".".join(parts) or "<root>"


def definition_error(file: Path | str, error: ValidationError) -> DefinitionError:
    """One DefinitionError naming the first faulty field (without union tags), listing all problems."""
    problems = error.errors()
    lines = []
    for p in problems:
        msg = str(p["msg"]).removeprefix("Value error, ")
        lines.append(f"{error_location(p['loc'])}: {msg}")
    return DefinitionError(file, error_location(problems[0]["loc"]), "; ".join(lines))


_FILTER_ADAPTER: TypeAdapter[Filter] = TypeAdapter(Filter)


def parse_filter(data: Any) -> Filter:
    """Validate a filter given as plain data (e.g. a campaign's inline `filter:`); raises ValidationError."""
    return _FILTER_ADAPTER.validate_python(data)
