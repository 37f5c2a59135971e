"""The published JSON Schema (`schema.json`) and its errors in plain words.

`schema.json` is the single source of the spec's shape: the API serves it to editors
(`/api/v1/pipeline-spec/schema.json`) and the parser validates every spec against it. Its
`x-message` entries give the wording for patterns; `_message` words everything else.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from apps.projects.spec.loader import NodeIndex
from apps.projects.spec.parsed import JsonPath, SpecIssue

SCHEMA_PATH = Path(__file__).with_name("schema.json")


@functools.cache
def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def load_schema() -> dict[str, Any]:
    """A fresh copy of the published JSON Schema."""
    return copy.deepcopy(_schema())


@functools.cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(_schema())


@functools.cache
def _kind_forbidden_keys() -> dict[str, frozenset[str]]:
    """kind -> job keys the schema forbids for it (read from the schema's if/then rules)."""
    rules = _schema()["$defs"]["job"]["allOf"]
    return {
        rule["if"]["properties"]["kind"]["const"]: frozenset(rule["then"].get("properties", {}))
        for rule in rules
    }


def _kinds_allowing(key: str) -> list[str]:
    return [kind for kind, keys in _kind_forbidden_keys().items() if key not in keys]


# --------------------------------------------------------------------------- schema errors

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true/false)",
    "null": "null",
}


def _yaml_type(value: Any) -> str:
    for python_type, name in (
        (bool, "boolean"),
        (int, "integer"),
        (float, "number"),
        (str, "string"),
        (list, "list"),
        (dict, "mapping"),
        (type(None), "null"),
    ):
        if isinstance(value, python_type):
            return name
    return type(value).__name__


def did_you_mean(word: Any, choices: list[str]) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


def schema_issues(data: dict[str, Any], index: NodeIndex) -> list[SpecIssue]:
    issues: list[SpecIssue] = []
    for error in _validator().iter_errors(data):
        issues.extend(_translate(error, data, index))
    return issues


def _translate(error: ValidationError, data: Any, index: NodeIndex) -> list[SpecIssue]:
    path: JsonPath = tuple(error.absolute_path)
    schema_path = list(error.relative_schema_path)
    if "propertyNames" in schema_path:
        return [_name_issue(error, path, index)]
    if error.validator == "additionalProperties":
        return _unknown_key_issues(error, path, index)
    if error.validator == "required":
        return _required_issues(error, path, index)
    if error.validator == "not" and "then" in schema_path:
        return [_wrong_kind_issue(path, index, data)]
    return [index.issue(path, _message(error))]


def _name_issue(error: ValidationError, path: JsonPath, index: NodeIndex) -> SpecIssue:
    name = error.instance
    detail = error.schema.get("x-message") if isinstance(error.schema, dict) else None
    return index.issue((*path, name), f"invalid name {name!r}: {detail or error.message}")


def _unknown_key_issues(
    error: ValidationError, path: JsonPath, index: NodeIndex
) -> list[SpecIssue]:
    instance: dict[Any, Any] = error.instance
    allowed = list(error.schema.get("properties", {}))
    kind = instance.get("kind")
    forbidden = _kind_forbidden_keys().get(kind, frozenset()) if isinstance(kind, str) else ()
    if "kind" in allowed:
        allowed = [key for key in allowed if key not in forbidden]
    issues = []
    for key in instance:
        if key in error.schema.get("properties", {}):
            continue
        hint = did_you_mean(key, allowed)
        listing = f"allowed: {', '.join(allowed)}" if allowed else "no keys allowed"
        message = f"unknown key {key!r} ({hint + ' ' if hint else ''}{listing})"
        issues.append(index.issue((*path, key), message))
    return issues


def _required_issues(error: ValidationError, path: JsonPath, index: NodeIndex) -> list[SpecIssue]:
    instance = error.instance
    missing = [key for key in error.validator_value if key not in instance]
    suffix = ""
    if "then" in error.relative_schema_path:
        suffix = f" for kind '{instance.get('kind')}' jobs"
    return [index.issue(path, f"'{key}' is required{suffix}") for key in missing]


def _wrong_kind_issue(path: JsonPath, index: NodeIndex, data: Any) -> SpecIssue:
    key = path[-1]
    job = _get(data, path[:-1])
    kind = job.get("kind") if isinstance(job, dict) else None
    kinds = ", ".join(_kinds_allowing(str(key)))
    return index.issue(path, f"key '{key}' is not allowed for kind '{kind}' jobs (only: {kinds})")


def _get(data: Any, path: JsonPath) -> Any:
    for part in path:
        data = data[part]
    return data


def _message(error: ValidationError) -> str:
    validator, expected, instance = error.validator, error.validator_value, error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    if validator == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_TYPE_NAMES.get(name, name) for name in names)
        return f"must be {wanted} (got {_yaml_type(instance)})"
    if validator == "enum":
        hint = did_you_mean(instance, [str(choice) for choice in expected])
        got = f"got {instance!r}" + (f"; {hint}" if hint else "")
        return f"must be one of: {', '.join(map(str, expected))} ({got})"
    if validator == "const":
        return f"must be {expected!r} (got {instance!r})"
    if validator == "pattern":
        return schema.get("x-message") or f"must match the pattern {expected}"
    if validator in ("minItems", "minLength", "minProperties") and expected == 1:
        return "must not be empty"
    simple = {
        "minItems": f"must have at least {expected} items",
        "maxItems": f"must have at most {expected} items",
        "minLength": f"must be at least {expected} characters long",
        "maxLength": f"must be at most {expected} characters long",
        "minProperties": f"must have at least {expected} entries",
        "maxProperties": f"must have at most {expected} entries",
        "minimum": f"must be >= {expected} (got {instance!r})",
        "maximum": f"must be <= {expected} (got {instance!r})",
        "exclusiveMinimum": f"must be > {expected} (got {instance!r})",
        "exclusiveMaximum": f"must be < {expected} (got {instance!r})",
        "uniqueItems": "must not contain duplicates",
    }
    if validator in simple:
        return simple[validator]
    if validator == "dependentRequired":
        pairs = [
            f"'{need}' is required when '{key}' is set"
            for key, needs in expected.items()
            if key in instance
            for need in needs
            if need not in instance
        ]
        return "; ".join(pairs) or error.message
    return error.message
