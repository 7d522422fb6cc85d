"""Compiled templates give exactly the bytes of Jinja2's sandbox, row by row, errors included.

Every shipped template (HTML bodies from `catalog/templates/`, subjects and SMS texts from
`catalog/campaigns/*.yaml`) and a set of snippets using each supported construct are rendered both
ways over hostile variables (markup, quotes, `{{ }}` in names, NULLs, empty strings, Cyrillic,
Decimal edge values, years before 1000) and compared. The reference is always the sandbox's own
`render()` on the nested dicts a template sees.
"""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty_assets.config.campaigns import NotifyStaff, SendEmail, SendText
from loyalty_assets.config.catalog import DEFAULT_CATALOG, load_catalog
from loyalty_assets.transforms.messages import template_frame, template_variables
from loyalty_assets.transforms.template_compiler import CompiledTemplate, sample_variables, variables_to_dicts
from loyalty_assets.transforms.templates import TemplateRenderer
from tests.engine_fixtures import campaign as make_campaign
from tests.engine_fixtures import money, ts

NAMES = [
    "Анна",
    "<b>Ann</b>",
    'O\'Neil "Q" & co',
    "{{ customer.email }}",
    "{% if x %}",
    None,
    "",
    " ",
    "анна-мария ivanova (junior)",
    "straße",
    "ǆemal",
    "🐟 fish",
]
BONUSES: list[dict[str, Any] | None] = [
    {
        "amount": Decimal("500.00"),
        "expires_at": datetime(2025, 7, 1, 9, 0, tzinfo=UTC),
        "expires_on": date(2025, 7, 1),
        "legal_entity": "X",
    },
    None,
    {
        "amount": Decimal("0.00"),
        "expires_at": datetime(2025, 1, 31, 10, 0, 0, 123, tzinfo=UTC),
        "expires_on": None,
        "legal_entity": "<X&Y>",
    },
    {"amount": Decimal("-0.40"), "expires_at": None, "expires_on": date(999, 1, 2), "legal_entity": None},
    {
        "amount": Decimal("999999999999.99"),
        "expires_at": datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        "expires_on": date(9999, 12, 31),
        "legal_entity": "",
    },
    {"amount": Decimal("2.50"), "expires_at": None, "expires_on": date(2024, 2, 29), "legal_entity": "X"},
]
FAVOURITES: list[list[str | None]] = [[], ["Молочные продукты"], ["<script>", "a & b", None], ["", "Рыбы"]]
EVENTS: list[dict[str, Any]] = [
    {"amount": Decimal("120.00"), "date": date(2025, 7, 1)},
    {"amount": None, "date": None},
    {"amount": Decimal("0.01"), "date": date(1, 1, 1)},
]


#: The cashback block of the reminder templates: nothing chosen, a whole and a fractional percent.
FAVOURITE_PERIODS: list[dict[str, Any]] = [
    {"earned": None, "percent": None, "period_end": None, "days_left": None, "could_earn_per_1000": None},
    {
        "earned": Decimal("11.50"),
        "percent": Decimal("5.00"),
        "period_end": date(2025, 6, 30),
        "days_left": 5,
        "could_earn_per_1000": Decimal("50.00"),
    },
    {
        "earned": Decimal("0.00"),
        "percent": Decimal("7.50"),
        "period_end": date(2025, 2, 28),
        "days_left": 1,
        "could_earn_per_1000": Decimal("75.00"),
    },
]


def hostile_rows() -> list[dict[str, Any]]:
    """Variables as a template sees them: every name × bonus, favourites and events cycled."""
    rows = []
    others = itertools.cycle(itertools.product(FAVOURITES, EVENTS, ["email", None, "sms"]))
    for i, (name, bonus) in enumerate(itertools.product(NAMES, BONUSES)):
        favourites, event, variant = next(others)
        rows.append(
            {
                "customer": {
                    "customer_id": i,
                    "first_name": name,
                    "email": "ann@example.com" if i % 2 else None,
                    "phone": "+79990000001",
                    "city": name,
                    "gender": "F" if i % 3 else None,
                    "birth_date": date(1990, 2, 28) if i % 4 else None,
                },
                "bonus": bonus,
                "check": {"check_id": "C<1>" if i % 2 else None, "total": Decimal("1234.50") if i % 3 else None},
                "event": event,
                "favourite_categories": favourites,
                "favourite": FAVOURITE_PERIODS[i % len(FAVOURITE_PERIODS)],
                "campaign": {"id": "fish&chips", "name": 'Fish "<chain>"'},
                "variant": variant,
                "occasion": f"purchase:C{i}",
                "event_date": date(2025, 6, 26),
                "send_date": date(2025, 6, 26) if i % 5 else None,
            }
        )
    return rows


def sandbox_reference(template: CompiledTemplate, frame: pl.DataFrame) -> list[tuple[str | None, str | None]]:
    """(text, error) per row from Jinja2's sandbox directly."""
    out: list[tuple[str | None, str | None]] = []
    for context in variables_to_dicts(frame):
        try:
            out.append((template.sandbox.render(**context), None))
        except Exception as exc:
            out.append((None, f"{type(exc).__name__}: {exc}"))
    return out


def shipped_templates() -> list[tuple[str, CompiledTemplate]]:
    """Every template the shipped catalog sends: bodies, subjects, SMS texts, staff notifications."""
    catalog = load_catalog(DEFAULT_CATALOG)
    assert not catalog.errors
    renderer = catalog.renderer()
    found: list[tuple[str, CompiledTemplate]] = []
    for campaign in catalog.campaigns.values():
        for step in campaign.message_steps():
            where = f"{campaign.id}.{step.id}"
            if isinstance(step, SendEmail):
                found += [
                    (f"{where}.template", renderer.compiled_file(step.template)),
                    (f"{where}.subject", renderer.compiled_text(step.subject)),
                ]
            elif isinstance(step, SendText):
                body = (
                    renderer.compiled_file(step.template) if step.template else renderer.compiled_text(step.text or "")
                )
                found.append((f"{where}.text", body))
            elif isinstance(step, NotifyStaff):
                found += [
                    (f"{where}.subject", renderer.compiled_text(step.subject)),
                    (f"{where}.text", renderer.compiled_text(step.text)),
                ]
    for path in sorted((DEFAULT_CATALOG / "templates").iterdir()):
        found.append((path.name, renderer.compiled_file(path.name)))
    return found


SHIPPED = shipped_templates()

#: Every supported construct, outside the shipped templates too.
SNIPPETS = [
    "{{ customer.first_name | default('friend') | upper }} / {{ customer.city | lower }}",
    "{{ customer.first_name | title }}|{{ customer.first_name | capitalize }}|{{ customer.first_name | trim }}",
    "{{ customer.nickname | default('friend') }} {{ customer.first_name | d('x', true) }}",
    "{{ bonus.amount | default('no bonus') }} {{ bonus.legal_entity | default('?', boolean=true) }}",
    "{{ bonus.amount | round }} {{ bonus.amount | round(1) }} {{ bonus.amount | round(3) }}",
    "{% if bonus.amount > 100 %}big{% elif bonus %}small {{ bonus.amount }}{% else %}none{% endif %}",
    "{% if bonus and bonus.amount %}{{ bonus.amount }}{% endif %}{% if not bonus %}-{% endif %}",
    "{{ favourite_categories | join(', ') }} ({{ favourite_categories | length }})",
    "{%- for c in favourite_categories %}{{ loop.index }}/{{ loop.length }} {{ c }}"
    "{% if not loop.last %}, {% endif %}{% else %}nothing{% endfor %}",
    "{% for c in favourite_categories %}{{ c | upper }}{{ customer.first_name or '' }}{% endfor %}",
    "{{ customer.birth_date.strftime('%d %B %Y (%a)') if customer.birth_date else 'no birthday' }}",
    "{{ bonus.expires_at }} {{ bonus.expires_on }} {{ event.date }} {{ send_date }}",
    "{{ customer.customer_id ~ '/' ~ occasion }} {{ customer.customer_id > 10 }}",
    "{{ 'sms' if variant == 'sms' else 'other' }} {{ variant != 'email' }} {{ variant is none }}",
    "{{ check.total or 0 }} {{ check.total or check.check_id }} {{ event.amount or 'nothing' }}",
    "{{ bonus is defined }} {{ bonus.amount is defined }} {{ customer.first_name | length }}",
    "{{ event.amount >= 100 }}",
    "{{ campaign.id }}: {{ campaign.name }} <a href=\"?c={{ campaign.id }}\">{{ '<&>' }}</a>",
    "{{ customer.first_name and customer.city }} {{ customer.gender == 'F' }} {{ None }} {{ 0 or '' }}",
    "{{ event.date.strftime('%d.%m.%y %H:%M:%S %j %%') }}",
    "{{ '%.2f' | format(bonus.amount) }} {{ '%d%%' | format(check.total) }} {{ 'n=%s' | format(variant) }}",
    "{{ '%.4f' | format(event.amount) }} {{ '%.3f' | format(customer.customer_id) }} {{ '%i' | format(bonus.amount) }}",
]


def both_ways(template: CompiledTemplate, frame: pl.DataFrame) -> None:
    compiled = template.render(frame)
    assert list(compiled.iter_rows()) == sandbox_reference(template, frame)


@pytest.mark.parametrize(("where", "template"), SHIPPED, ids=[w for w, _ in SHIPPED])
def test_every_shipped_template_is_compiled_and_byte_identical(where: str, template: CompiledTemplate) -> None:
    assert template.plan is not None, template.reason
    both_ways(template, sample_variables(hostile_rows()))


@pytest.mark.parametrize("autoescape", [True, False], ids=["html", "text"])
@pytest.mark.parametrize("source", SNIPPETS)
def test_each_construct_is_compiled_and_byte_identical(tmp_path: Path, source: str, autoescape: bool) -> None:
    renderer = TemplateRenderer(tmp_path)
    (tmp_path / "t.html").write_text(source, encoding="utf-8")
    template = renderer.compiled_file("t.html") if autoescape else renderer.compiled_text(source)
    assert template.plan is not None, template.reason
    assert template.autoescape is autoescape
    both_ways(template, sample_variables(hostile_rows()))


def test_missing_accrual_is_an_error_for_that_row_only() -> None:
    template = dict(SHIPPED)["birthday_invite.html"]
    rows = hostile_rows()[:2]  # Анна with a bonus, Анна without one
    out = template.render(sample_variables(rows))
    assert out.get_column("error").to_list() == [None, "UndefinedError: 'None' has no attribute 'amount'"]
    assert "<strong>500.00</strong>" in out.get_column("text")[0] and out.get_column("text")[1] is None


def test_outside_the_subset_falls_back_to_the_sandbox_with_a_logged_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = "{{ customer.first_name | reverse }}{% set x = 1 %}"
    with caplog.at_level(logging.WARNING, logger="loyalty_assets.transforms.template_compiler"):
        template = TemplateRenderer(tmp_path).compiled_text(source)
    assert template.plan is None and template.reason == "filter 'reverse'"
    assert "rendered in the sandbox per row (not compiled: filter 'reverse')" in caplog.text
    frame = sample_variables(hostile_rows()[:3])
    assert template.render(frame).get_column("text").to_list() == ["аннА", "аннА", "аннА"]
    both_ways(template, frame)


def test_string_and_replace_of_constants_are_compiled(tmp_path: Path) -> None:
    """`x | string | replace('.00', '')` (the cashback reminder's percent) is compiled, escaped or not."""
    frame = sample_variables(hostile_rows())
    for escape in (False, True):
        renderer = TemplateRenderer(tmp_path)
        source = "{{ customer.first_name | replace('н', 'м') }} {{ bonus.amount | string | replace('.00', '') }}"
        if escape:
            (tmp_path / "r.html").write_text(source, encoding="utf-8")
            template = renderer.compiled_file("r.html")
        else:
            template = renderer.compiled_text(source)
        assert template.plan is not None, template.reason
        both_ways(template, frame)


def test_rows_the_compiler_cannot_promise_go_to_the_sandbox(tmp_path: Path) -> None:
    """Case mappings outside Latin/Greek/Cyrillic and years before 1000 are flagged per row."""
    template = TemplateRenderer(tmp_path).compiled_text(
        "{{ customer.first_name | upper }} {{ bonus.expires_on.strftime('%Y') if bonus.expires_on else '' }}"
    )
    assert template.plan is not None
    rows = hostile_rows()
    rows[0]["customer"]["first_name"] = "ǆ ﬁ 中"
    rows[0]["bonus"] = BONUSES[3]  # expires 2 Jan 999: Python prints "999", chrono "0999"
    out = template.render(sample_variables(rows[:1]))
    assert out.get_column("text").to_list() == ["Ǆ FI 中 999"]


def test_the_variables_frame_round_trips_to_the_dicts_templates_see() -> None:
    rows = hostile_rows()
    assert variables_to_dicts(sample_variables(rows)) == [
        {**r, "favourite_categories": list(r["favourite_categories"])} for r in rows
    ]


# --- property: any generated values ----------------------------------------------------------------

texts = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["<", "&amp;", "'\"", "{{ x }}", "Ёж", ""]))
amounts = st.one_of(
    st.none(),
    st.decimals(min_value=Decimal("-99999999.99"), max_value=Decimal("999999999999.99"), places=2, allow_nan=False),
)
dates = st.one_of(st.none(), st.dates())
bonuses = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "amount": amounts,
            "expires_at": st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))),
            "expires_on": dates,
            "legal_entity": texts,
        }
    ),
)
contexts = st.fixed_dictionaries(
    {
        "customer": st.fixed_dictionaries(
            {
                "customer_id": st.integers(-(2**63), 2**63 - 1),
                "first_name": texts,
                "email": texts,
                "phone": texts,
                "city": texts,
                "gender": st.sampled_from(["F", "M", None]),
                "birth_date": dates,
            }
        ),
        "bonus": bonuses,
        "check": st.fixed_dictionaries({"check_id": texts, "total": amounts}),
        "event": st.fixed_dictionaries({"amount": amounts, "date": dates}),
        "favourite_categories": st.lists(texts, max_size=4),
        "campaign": st.fixed_dictionaries({"id": texts, "name": texts}),
        "variant": texts,
        "occasion": texts,
        "event_date": dates,
        "send_date": dates,
    }
)
ALL_TEMPLATES = [t for _, t in SHIPPED]


@pytest.fixture(scope="module")
def snippet_templates(tmp_path_factory: pytest.TempPathFactory) -> list[CompiledTemplate]:
    """Every snippet compiled once, HTML-escaped and plain."""
    folder = tmp_path_factory.mktemp("snippets")
    renderer = TemplateRenderer(folder)
    compiled: list[CompiledTemplate] = []
    for i, source in enumerate(SNIPPETS):
        (folder / f"s{i}.html").write_text(source, encoding="utf-8")
        compiled += [renderer.compiled_file(f"s{i}.html"), renderer.compiled_text(source)]
    return compiled


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(rows=st.lists(contexts, min_size=1, max_size=8))
def test_property_compiled_equals_sandbox_for_any_values(
    snippet_templates: list[CompiledTemplate], rows: list[dict[str, Any]]
) -> None:
    frame = sample_variables(rows)
    for template in [*ALL_TEMPLATES, *snippet_templates]:
        both_ways(template, frame)


def test_compiled_templates_never_call_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hot path: with the sandbox's render() broken, every shipped template still renders."""
    # without the rows flagged for the sandbox (years before 1000)
    frame = sample_variables(
        [r for r in hostile_rows() if r["bonus"] is not BONUSES[3] and r["event"] is not EVENTS[2]]
    )
    expected = {where: template.render(frame) for where, template in SHIPPED}

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("the sandbox was asked to render a compiled template's row")

    monkeypatch.setattr(jinja2.environment.Template, "render", refuse)
    for where, template in SHIPPED:
        assert template.render(frame).equals(expected[where]), where


def test_the_frame_build_messages_renders_holds_the_documented_variables() -> None:
    """`template_frame` (columns) and `template_variables` (the dicts of the README) agree row by row."""
    c = make_campaign([{"type": "send_sms", "id": "s", "text": "x"}], id="fish", name="Fish <&>")
    people = pl.DataFrame(
        {
            "customer_id": [1, 2],
            "first_name": ["<b>Ann</b>", None],
            "email": ["a@example.com", None],
            "phone": [None, "+7999"],
            "city": ["Москва", ""],
            "gender": ["F", None],
            "birth_date": [date(1992, 2, 29), None],
            "bonus_amount": [money("61.73"), None],
            "bonus_expires_at": [ts("2025-07-10T09:00"), None],
            "bonus_expires_on": [date(2025, 7, 10), None],
            "bonus_legal_entity": ["X", None],
            "check_id": ["c1", None],
            "check_total": [money("1234.50"), None],
            "event_amount": [None, money("0.01")],
            "event_date": [date(2025, 6, 10), date(2025, 6, 11)],
            "favourite_categories": [["Молоко", "Рыбы"], None],
            "variant": ["sms", None],
            "occasion": ["purchase:c1", "birthday:2025-06-11"],
            "send_date": [date(2025, 6, 10), None],
        }
    )
    expected = [template_variables(c, row) for row in people.iter_rows(named=True)]
    assert variables_to_dicts(template_frame(c, people)) == expected
    assert expected[1]["bonus"] is None and expected[1]["favourite_categories"] == []


def test_the_written_out_whitespace_is_every_character_python_calls_space() -> None:
    from loyalty_assets.transforms.template_compiler import _PY_SPACE

    assert "".join(chr(c) for c in range(0x110000) if chr(c).isspace()) == _PY_SPACE
