"""Loading segment files: what a marketer may write and the errors a mistake produces.

Every invalid definition must come back as a DefinitionError naming the file and the path of the
field at fault in that file, without stopping the other files from loading.
"""

from __future__ import annotations

import textwrap
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from loyalty_assets.config.errors import DefinitionError
from loyalty_assets.config.filters import AllOf, Condition, Not, Op, parse_filter, referenced_segments
from loyalty_assets.config.segments import load_segments

CATALOG = Path(__file__).resolve().parents[1] / "loyalty_assets" / "catalog" / "segments"


def write(folder: Path, stem: str, body: str) -> Path:
    path = folder / f"{stem}.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def only_error(folder: Path) -> DefinitionError:
    _, errors = load_segments(folder)
    assert len(errors) == 1, errors
    return errors[0]


def test_shipped_catalog_loads():
    segments, errors = load_segments(CATALOG)
    assert errors == []
    assert set(segments) == {"members_over_a_year", "women_q1_email_bonus"}
    q1 = segments["women_q1_email_bonus"]
    assert q1.export is True
    assert isinstance(q1.filter, AllOf)
    between = q1.filter.all[1]
    assert isinstance(between, Condition)
    assert between.value == (date(2025, 1, 1), date(2025, 4, 1))
    bonus = q1.filter.all[3]
    assert isinstance(bonus, Condition)
    assert bonus.value == Decimal("1000")
    assert isinstance(bonus.value, Decimal)


def test_full_language_parses(tmp_path):
    write(
        tmp_path,
        "everything",
        """\
        name: Everything at once
        labels: [a, b]
        export: true
        filter:
          all:
            - {field: gender, op: "=", value: F}
            - {field: age, op: "≥", value: 18}
            - {field: last_check_date, op: between, value: [2025-01-01, 2025-04-01]}
            - {field: purchase_count, op: ge, value: 2, window: {last_days: 30}, category: dairy}
            - {field: purchase_total, op: gt, value: 1500.50, window: {from: 2025-01-01, to: 2025-03-31}}
            - {field: bought, product: milk1, measure: amount, op: ">", value: 100}
            - {field: bonuses_expiring, within_days: 7, op: gt, value: 0}
            - {field: attribute, name: loyalty_tier, op: in, value: [gold, silver]}
            - {field: favourite_chosen, period: {month: 2025-06}, op: eq, value: true}
            - {field: message_events, event: opened, channel: email, campaign: spring, op: ge, value: 1}
            - {field: site_visits, category: aquarium_fish, url_contains: /fish, op: ge, value: 1}
            - {field: customer.card_type, op: eq, value: plastic}
            - {field: random_sample, percent: 10}
            - any:
                - {field: labels, op: contains, value: vip}
                - not: {field: city, op: is_empty}
        """,
    )
    segments, errors = load_segments(tmp_path)
    assert errors == []
    f = segments["everything"].filter
    assert isinstance(f, AllOf)
    ops = [c.op for c in f.all if isinstance(c, Condition)]
    assert ops[:3] == [Op.EQ, Op.GE, Op.BETWEEN]
    assert f.all[4].value == Decimal("1500.50")  # type: ignore[union-attr]
    assert f.all[8].period.month == date(2025, 6, 1)  # type: ignore[union-attr]
    assert isinstance(f.all[13].any[1], Not)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("filter_yaml", "field", "message"),
    [
        # unknown field, with the closest match and the known fields listed
        ("{all: [{field: gendr, op: eq, value: F}]}", "filter.all.0.field", "did you mean 'gender'"),
        ("{field: shoe_size, op: eq, value: 42}", "filter.field", "known fields: age,"),
        # operator does not fit the type
        ("{field: age, op: contains, value: 3}", "filter.op", "does not fit field 'age'"),
        ("{field: email_subscribed, op: gt, value: true}", "filter.op", "does not fit"),
        ("{field: labels, op: gt, value: vip}", "filter.op", "does not fit"),
        ("{field: age, op: like, value: 3}", "filter.op", "Input should be"),
        ("{field: age, value: 3}", "filter.op", "operator is required"),
        # value does not fit
        ("{field: age, op: between, value: [1, 2, 3]}", "filter.value", "exactly 2 values"),
        ("{field: age, op: between, value: 5}", "filter.value", "exactly 2 values"),
        ("{field: age, op: between, value: [9, 1]}", "filter.value", "above high"),
        (
            "{all: [{field: gender, op: eq, value: F}, {field: last_check_date, op: between, "
            "value: [2025-01-01, 2025-13-01]}]}",
            "filter.all.1.value",
            "expected a date",
        ),
        ("{field: registration_date, op: lt, value: yesterday}", "filter.value", "expected a date"),
        ("{field: age, op: ge, value: 1.5}", "filter.value", "whole number"),
        ("{field: purchase_total, op: gt, value: lots}", "filter.value", "amount"),
        ("{field: email_subscribed, op: eq, value: yes please}", "filter.value", "true or false"),
        ("{field: gender, op: in, value: []}", "filter.value", "non-empty list"),
        ("{field: gender, op: eq, value: [F, M]}", "filter.value", "single value"),
        ("{field: gender, op: is_set, value: F}", "filter.value", "takes no value"),
        ("{field: gender, op: eq}", "filter.value", "needs a value"),
        ("{field: attribute, name: tier, op: gt, value: gold}", "filter.value", "number or a date"),
        ("{field: attribute, name: tier, op: contains, value: 3}", "filter.value", "text value"),
        # parameters
        (
            "{field: age, op: gt, value: 3, window: {last_days: 30}}",
            "filter.window",
            "not a parameter of field 'age'",
        ),
        (
            "{field: purchase_count, op: gt, value: 3, window: {last_days: 0}}",
            "filter.window.last_days",
            "greater than 0",
        ),
        (
            "{field: purchase_count, op: gt, value: 3, window: {from: 2025-02-30}}",
            "filter.window.from",
            "date",
        ),
        (
            "{field: purchase_count, op: gt, value: 3, window: {from: 2025-03-01, to: 2025-02-01}}",
            "filter.window",
            "after to",
        ),
        ("{field: bonuses_expiring, op: gt, value: 0}", "filter", "within_days"),
        ("{field: bought, op: ge, value: 1}", "filter", "category"),
        ("{field: attribute, op: eq, value: gold}", "filter", "name"),
        ("{field: random_sample, op: eq, percent: 10}", "filter.op", "no operator"),
        ("{field: random_sample, percent: 120}", "filter.percent", "less than or equal to 100"),
        (
            "{field: favourite_chosen, op: eq, value: true, period: {month: June}}",
            "filter.period.month",
            "YYYY-MM",
        ),
        ("{field: message_events, event: read, op: ge, value: 1}", "filter.event", "Input should be"),
        ("{field: gender, op: eq, value: F, colour: red}", "filter.colour", "Extra inputs"),
        ("{not: [{field: gender, op: eq, value: F}]}", "filter.not", "valid dictionary"),
    ],
)
def test_invalid_filter_names_file_and_field(tmp_path, filter_yaml, field, message):
    path = write(tmp_path, "bad", f"name: Bad\nfilter: {filter_yaml}\n")
    error = only_error(tmp_path)
    assert error.file == str(path)
    assert error.field == field
    assert message in error.message
    assert str(path) in str(error)


def test_one_bad_file_does_not_stop_the_others(tmp_path):
    write(tmp_path, "good", "name: Good\nfilter: {field: age, op: ge, value: 18}\n")
    write(tmp_path, "broken_yaml", "name: [unclosed\n")
    write(tmp_path, "bad_type", "name: Bad\nfilter: {field: age, op: contains, value: 1}\n")
    segments, errors = load_segments(tmp_path)
    assert list(segments) == ["good"]
    assert sorted((Path(e.file).name, e.field) for e in errors) == [
        ("bad_type.yaml", "filter.op"),
        ("broken_yaml.yaml", "line 2"),  # where the parser gave up
    ]


def test_id_must_match_file_and_pattern(tmp_path):
    write(tmp_path, "women", "id: men\nname: X\nfilter: {field: age, op: ge, value: 1}\n")
    assert only_error(tmp_path).field == "id"
    (tmp_path / "women.yaml").unlink()
    write(tmp_path, "Women", "name: X\nfilter: {field: age, op: ge, value: 1}\n")
    error = only_error(tmp_path)
    assert (error.field, "lower-case" in error.message) == ("id", True)


def test_export_needs_a_label(tmp_path):
    write(tmp_path, "s", "name: X\nexport: true\nfilter: {field: age, op: ge, value: 1}\n")
    error = only_error(tmp_path)
    assert error.field == "labels"
    assert "at least one label" in error.message


def test_unknown_referenced_segment(tmp_path):
    write(tmp_path, "adults", "name: A\nfilter: {field: age, op: ge, value: 18}\n")
    path = write(
        tmp_path,
        "women_adults",
        """\
        name: W
        filter:
          all:
            - {field: segment, op: eq, value: adults}
            - {field: segment, op: eq, value: grownups}
        """,
    )
    segments, errors = load_segments(tmp_path)
    assert list(segments) == ["adults"]
    assert len(errors) == 1
    assert (errors[0].file, errors[0].field) == (str(path), "filter.all.1.value")
    assert "unknown segment 'grownups'" in errors[0].message
    assert "adults" in errors[0].message  # lists the known ones


def test_reference_cycle_and_its_dependants(tmp_path):
    write(tmp_path, "a", "name: A\nfilter: {field: segment, op: eq, value: b}\n")
    write(tmp_path, "b", "name: B\nfilter: {not: {field: segment, op: eq, value: a}}\n")
    write(tmp_path, "c", "name: C\nfilter: {field: segment, op: ne, value: a}\n")
    write(tmp_path, "d", "name: D\nfilter: {field: age, op: ge, value: 1}\n")
    segments, errors = load_segments(tmp_path)
    assert list(segments) == ["d"]
    found = {(Path(e.file).stem, e.field): e.message for e in errors}
    assert set(found) == {("a", "filter.value"), ("b", "filter.not.value"), ("c", "filter.value")}
    assert "cycle: a -> b -> a" in found[("a", "filter.value")]
    assert "whose definition is invalid" in found[("c", "filter.value")]


def test_reference_to_a_broken_file(tmp_path):
    write(tmp_path, "broken", "name: B\nfilter: {field: nope, op: eq, value: 1}\n")
    write(tmp_path, "user", "name: U\nfilter: {field: segment, op: eq, value: broken}\n")
    segments, errors = load_segments(tmp_path)
    assert segments == {}
    assert sorted((Path(e.file).stem, e.field) for e in errors) == [
        ("broken", "filter.field"),
        ("user", "filter.value"),
    ]


def test_parse_filter_aliases_and_references():
    f = parse_filter(
        {
            "any": [
                {"field": "segment", "op": "=", "value": "vip"},
                {"field": "segment", "op": "in", "value": ["a", "b"]},
            ]
        }
    )
    assert referenced_segments(f) == {"vip", "a", "b"}
    with pytest.raises(ValidationError):
        parse_filter({"field": "age", "op": "≈", "value": 1})
