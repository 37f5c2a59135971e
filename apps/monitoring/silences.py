"""Silence matchers, as Alertmanager has them: ``{"name", "op", "value"}`` with op ``=``,
``!=``, ``=~`` or ``!~``; every matcher of a silence must match the alert's labels. A label
the alert does not carry matches as the empty string, and regular expressions are anchored
(``=~ "prod.*"`` does not match ``"preprod"``)."""

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from apps.core.exceptions import ServiceError

from .choices import MatchOp

LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_MATCHERS = 20


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(rf"^(?:{pattern})$")


def matcher_matches(matcher: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    value = str(labels.get(matcher["name"], ""))
    op, wanted = matcher["op"], matcher["value"]
    if op == MatchOp.EQUAL:
        return value == wanted
    if op == MatchOp.NOT_EQUAL:
        return value != wanted
    if op == MatchOp.REGEX:
        return _compiled(wanted).match(value) is not None
    if op == MatchOp.NOT_REGEX:
        return _compiled(wanted).match(value) is None
    raise ValueError(f"unknown matcher op {op!r}")


def matchers_match(matchers: Iterable[Mapping[str, str]], labels: Mapping[str, str]) -> bool:
    return all(matcher_matches(m, labels) for m in matchers)


def matchers_clean(raw: Any) -> list[dict[str, str]]:
    """Check matchers as a user or the API gives them; ServiceError naming the first bad one."""
    if not isinstance(raw, list) or not raw:
        raise ServiceError("A silence needs at least one matcher.", code="matchers")
    if len(raw) > MAX_MATCHERS:
        raise ServiceError(f"At most {MAX_MATCHERS} matchers.", code="matchers")
    cleaned = []
    for i, m in enumerate(raw, 1):
        if not isinstance(m, Mapping):
            raise ServiceError(f"Matcher {i}: expected name, op and value.", code="matchers")
        name, op, value = (str(m.get(k, "")).strip() for k in ("name", "op", "value"))
        if not LABEL_NAME.match(name):
            raise ServiceError(f"Matcher {i}: {name!r} is not a label name.", code="matchers")
        if op not in MatchOp.values:
            raise ServiceError(
                f"Matcher {i}: op must be one of {', '.join(MatchOp.values)}.", code="matchers"
            )
        if op in (MatchOp.REGEX, MatchOp.NOT_REGEX):
            try:
                _compiled(value)
            except re.error as exc:
                raise ServiceError(
                    f"Matcher {i}: {value!r} is not a regular expression ({exc}).",
                    code="matchers",
                ) from exc
        cleaned.append({"name": name, "op": op, "value": value})
    # Like Alertmanager: a silence whose matchers all match an alert without labels would
    # silence everything.
    if all(matcher_matches(m, {}) for m in cleaned):
        raise ServiceError(
            "At least one matcher must not match an empty label (it would silence everything).",
            code="matchers",
        )
    return cleaned


def matchers_from_labels(labels: Mapping[str, str], names: Iterable[str] = ()) -> list[dict]:
    """Equality matchers for an alert's labels (``names``: only these, in this order)."""
    keys = list(names) or sorted(labels)
    return [{"name": k, "op": MatchOp.EQUAL, "value": str(labels[k])} for k in keys if k in labels]


def matchers_text(matchers: Iterable[Mapping[str, str]]) -> str:
    """``alertname="x", environment=~"prod.*"`` as Alertmanager prints them."""
    return ", ".join(f'{m["name"]}{m["op"]}"{m["value"]}"' for m in matchers)


def matchers_parse(text: str) -> list[dict[str, str]]:
    """The form's text (one matcher a line, ``name op value``; quotes optional) → matchers."""
    out = []
    for i, line in enumerate((t.strip() for t in text.splitlines()), 1):
        if not line:
            continue
        found = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*)$", line)
        if not found:
            raise ServiceError(
                f"Line {i}: expected name=value, name!=value, name=~regex or name!~regex.",
                code="matchers",
            )
        name, op, value = found.groups()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        out.append({"name": name, "op": op, "value": value})
    return out
