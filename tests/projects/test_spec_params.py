"""`validate_params`: the values a run of a named pipeline gets from a schedule, the API or a
form (pure Python, no database)."""

from __future__ import annotations

from typing import Any

import pytest

from apps.projects.spec import ParamError, ParamSpec, param_variables, parse_spec, validate_params

PARAMS = {
    "rows": ParamSpec("rows", "number", default=5000, minimum=1, maximum=1_000_000),
    "epochs": ParamSpec("epochs", "integer", default=3, minimum=1),
    "region": ParamSpec("region", "choice", default="eu", choices=("eu", "us")),
    "full": ParamSpec("full", "boolean", default=False),
    "note": ParamSpec("note", "string", default=""),
}


def test_defaults_fill_what_is_not_given_in_declaration_order() -> None:
    values = validate_params(PARAMS, {})
    assert values == {"rows": 5000, "epochs": 3, "region": "eu", "full": False, "note": ""}
    assert list(values) == list(PARAMS)
    assert validate_params(PARAMS, None) == values


def test_typed_values_are_kept() -> None:
    given = {"rows": 2.5, "epochs": 7, "region": "us", "full": True, "note": "hi"}
    assert validate_params(PARAMS, given) == given


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("rows", "3", 3),
        ("rows", " 2.5 ", 2.5),
        ("rows", "1e3", 1000.0),
        ("epochs", "4", 4),
        ("epochs", 4.0, 4),
        ("full", "true", True),
        ("full", "on", True),
        ("full", "Yes", True),
        ("full", "1", True),
        ("full", "false", False),
        ("full", "off", False),
        ("full", "0", False),
        ("region", "us", "us"),
        ("note", "", ""),  # an empty string is a string's value
        ("rows", "", 5000),  # an empty number field is "not given"
        ("full", "", False),
    ],
)
def test_form_strings_are_coerced(name: str, given: Any, expected: Any) -> None:
    value = validate_params(PARAMS, {name: given})[name]
    assert value == expected
    assert type(value) is type(expected)


def test_a_numeric_choice_from_a_form() -> None:
    params = {"k": ParamSpec("k", "choice", default=5, choices=(5, 10))}
    assert validate_params(params, {"k": "10"}) == {"k": 10}
    with pytest.raises(ParamError, match="must be one of: 5, 10"):
        validate_params(params, {"k": "7"})


def test_required_without_default() -> None:
    params = {"note": ParamSpec("note", "string"), "rows": ParamSpec("rows", "number")}
    assert params["note"].required and params["rows"].required
    with pytest.raises(ParamError) as caught:
        validate_params(params, {"note": "x"})
    assert (caught.value.name, caught.value.message) == ("rows", "is required")
    assert str(caught.value) == "parameter 'rows': is required"
    with pytest.raises(ParamError, match="'rows': is required"):
        validate_params(params, {"note": "x", "rows": ""})
    assert validate_params(params, {"note": "", "rows": "1"}) == {"note": "", "rows": 1}


@pytest.mark.parametrize(
    ("given", "name", "message"),
    [
        ({"rowz": 1}, "rowz", "unknown parameter (known: rows, epochs, region, full, note)"),
        ({"rows": 0}, "rows", "must be >= 1 (got 0)"),
        ({"rows": "2000000"}, "rows", "must be <= 1000000 (got 2000000)"),
        ({"rows": "many"}, "rows", "must be a number (got 'many')"),
        ({"rows": True}, "rows", "must be a number (got True)"),
        ({"rows": "nan"}, "rows", "must be a finite number (got nan)"),
        ({"epochs": "2.5"}, "epochs", "must be a whole number (got 2.5)"),
        ({"epochs": 0}, "epochs", "must be >= 1 (got 0)"),
        ({"region": "asia"}, "region", "must be one of: eu, us (got 'asia')"),
        ({"full": "maybe"}, "full", "must be true or false (got 'maybe')"),
        ({"full": 1}, "full", "must be true or false (got 1)"),
        ({"note": 5}, "note", "must be a string (got 5)"),
    ],
)
def test_errors_name_the_parameter(given: dict[str, Any], name: str, message: str) -> None:
    with pytest.raises(ParamError) as caught:
        validate_params(PARAMS, given)
    assert (caught.value.name, caught.value.message) == (name, message)
    assert isinstance(caught.value, ValueError)


def test_no_params_declared() -> None:
    assert validate_params({}, {}) == {}
    with pytest.raises(ParamError, match="unknown parameter \\(known: none\\)"):
        validate_params({}, {"x": 1})


def test_strict_refuses_strings_for_typed_values() -> None:
    with pytest.raises(ParamError, match="must be a number"):
        validate_params(PARAMS, {"rows": "3"}, strict=True)
    with pytest.raises(ParamError, match="must be true or false"):
        validate_params(PARAMS, {"full": "on"}, strict=True)


def test_params_round_trip_and_become_variables() -> None:
    parsed = parse_spec(
        "version: 1\njobs: {a: {kind: script, script: x}}\npipelines:\n  p:\n"
        "    params: {rows: {type: integer, default: 5}, full: {type: boolean, default: true},"
        " note: {type: string}}\n"
        "    jobs: {t: {kind: script, script: x}}\n"
    )
    params = parsed.pipelines["p"].params
    assert all(ParamSpec.from_dict(p.to_dict()) == p for p in params.values())
    values = validate_params(params, {"note": "hello world"})
    assert param_variables(values) == {
        "PARAM_ROWS": "5",
        "PARAM_FULL": "true",
        "PARAM_NOTE": "hello world",
    }
