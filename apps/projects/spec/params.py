"""Typed parameters of a named pipeline: their declaration (`ParamSpec`) and the check that turns
what a caller gives (a schedule, the API, an HTML form) into the values a run gets.

`validate_params` fills defaults, coerces form strings ("3", "true", "on") to the declared type
and raises `ParamError` naming the first parameter that is unknown, missing or wrong. Values
reach jobs as `PARAM_<NAME>` variables (`param_variables`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

PARAM_TYPES = ("string", "number", "integer", "boolean", "choice")
# What an HTML checkbox or a text field may send for a boolean.
_TRUE = {"true", "on", "yes", "1"}
_FALSE = {"false", "off", "no", "0"}
_INTEGER = re.compile(r"^[+-]?[0-9]+$")


class ParamError(ValueError):
    """A parameter value that cannot be used; `name` is the parameter, `message` says why."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        self.message = message
        super().__init__(f"parameter '{name}': {message}")


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str
    default: Any = None
    # None: required exactly when there is no default (a declared `default` makes it optional).
    required: bool | None = None
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.required is None:
            object.__setattr__(self, "required", self.default is None)
        object.__setattr__(self, "choices", tuple(self.choices))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["choices"] = list(self.choices)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParamSpec:
        return cls(**{**data, "choices": tuple(data.get("choices", ()))})

    @classmethod
    def from_raw(cls, name: str, raw: Mapping[str, Any]) -> ParamSpec:
        """From the spec's mapping (`{type, default, choices, minimum, maximum, description}`)."""
        return cls(
            name=name,
            type=raw["type"],
            default=raw.get("default"),
            required="default" not in raw,
            choices=tuple(raw.get("choices", ())),
            minimum=raw.get("minimum"),
            maximum=raw.get("maximum"),
            description=raw.get("description", ""),
        )


def _got(value: Any) -> str:
    return f"got {value!r}"


def _number(param: ParamSpec, value: Any, *, strict: bool) -> int | float:
    if isinstance(value, str) and not strict:
        text = value.strip()
        try:
            value = int(text) if _INTEGER.match(text) else float(text)
        except ValueError:
            raise ParamError(param.name, f"must be a number ({_got(value)})") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParamError(param.name, f"must be a number ({_got(value)})")
    if not math.isfinite(value):
        raise ParamError(param.name, f"must be a finite number ({_got(value)})")
    if param.type == "integer":
        if value != int(value):
            raise ParamError(param.name, f"must be a whole number ({_got(value)})")
        value = int(value)
    if param.minimum is not None and value < param.minimum:
        raise ParamError(param.name, f"must be >= {param.minimum} ({_got(value)})")
    if param.maximum is not None and value > param.maximum:
        raise ParamError(param.name, f"must be <= {param.maximum} ({_got(value)})")
    return value


def _boolean(param: ParamSpec, value: Any, *, strict: bool) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and not strict:
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ParamError(param.name, f"must be true or false ({_got(value)})")


def _choice(param: ParamSpec, value: Any, *, strict: bool) -> Any:
    for choice in param.choices:
        if value == choice and isinstance(value, bool) == isinstance(choice, bool):
            return choice
    if isinstance(value, str) and not strict:  # a form sends "3" for the choice 3
        for choice in param.choices:
            if not isinstance(choice, bool) and str(choice) == value.strip():
                return choice
    listing = ", ".join(str(choice) for choice in param.choices)
    raise ParamError(param.name, f"must be one of: {listing} ({_got(value)})")


def coerce_value(param: ParamSpec, value: Any, *, strict: bool = False) -> Any:
    """The value as the parameter's type; `strict` (typed YAML) refuses strings for numbers."""
    if param.type in ("number", "integer"):
        return _number(param, value, strict=strict)
    if param.type == "boolean":
        return _boolean(param, value, strict=strict)
    if param.type == "choice":
        return _choice(param, value, strict=strict)
    if param.type == "string":
        if not isinstance(value, str):
            raise ParamError(param.name, f"must be a string ({_got(value)})")
        return value
    raise ParamError(param.name, f"has an unknown type {param.type!r}")


def _is_blank(param: ParamSpec, value: Any) -> bool:
    """An empty form field means "not given", except for a string, where "" is a value."""
    if value is None:
        return True
    return param.type != "string" and isinstance(value, str) and not value.strip()


def validate_params(
    params: Mapping[str, ParamSpec], given: Mapping[str, Any] | None, *, strict: bool = False
) -> dict[str, Any]:
    """Every declared parameter's value, in declaration order: the given one coerced to its
    type, else its default. Raises `ParamError` for an unknown name, a missing required value
    or a value of the wrong type, not among the choices or out of range."""
    given = given or {}
    for name in given:
        if name not in params:
            known = ", ".join(params) or "none"
            raise ParamError(str(name), f"unknown parameter (known: {known})")
    values: dict[str, Any] = {}
    for name, param in params.items():
        value = given.get(name)
        if _is_blank(param, value):
            if param.required:
                raise ParamError(name, "is required")
            values[name] = param.default
        else:
            values[name] = coerce_value(param, value, strict=strict)
    return values


def _variable_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def param_variables(values: Mapping[str, Any]) -> dict[str, str]:
    """`{"rows": 5000, "full": True}` -> `{"PARAM_ROWS": "5000", "PARAM_FULL": "true"}`."""
    return {f"PARAM_{name.upper()}": _variable_text(value) for name, value in values.items()}
