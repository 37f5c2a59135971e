"""What a training job's metrics file holds: the scores a model is judged by (metrics), how it
was made (params) and labels of its provenance (tags).

Two shapes are read:

- ``{"metrics": {...}, "params": {...}, "tags": {...}}``: the sections say it. A value in
  ``metrics`` that is not a score (see below) still moves out of it.
- a flat ``{name: value}`` (the old shape): each value is sorted by the rule below.

The rule, by name (case-insensitive) then by value:

1. a version or a hash — ``version``, ``*_version``, ``*_hash``, ``*_digest``, ``*_sha``,
   ``*_sha256``, ``*_fingerprint``, ``*_commit`` — is a **tag** (``sklearn_version``,
   ``dataset_hash``);
2. a seed or a size — ``seed``, ``*_seed``, ``random_state``, ``n_*`` — is a **param**;
3. a real number (not a boolean) is a **metric**;
4. anything else (strings, booleans, lists) is a **param**.
"""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

_TAG_NAME = re.compile(r"(^|_)version$|(^|_)(hash|digest|sha\d*|fingerprint|commit)$")
_PARAM_NAME = re.compile(r"(^|_)(seed|random_state)$|^n_")
SECTIONS = ("metrics", "params", "tags")


@dataclass(frozen=True)
class SplitMetrics:
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)


def is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def kind_of(name: str, value: Any) -> str:
    """``"metrics"``, ``"params"`` or ``"tags"`` for one value of a flat metrics file."""
    lowered = name.lower()
    if _TAG_NAME.search(lowered):
        return "tags"
    if _PARAM_NAME.search(lowered):
        return "params"
    return "metrics" if is_number(value) else "params"


def is_metric(name: str, value: Any) -> bool:
    """A score to judge a model by (the promotion page and the registry compare only these)."""
    return kind_of(name, value) == "metrics"


def is_sectioned(data: Mapping[str, Any]) -> bool:
    """The ``{"metrics": {...}, ...}`` shape: a ``metrics`` mapping and no other top-level key
    than the three sections."""
    return isinstance(data.get("metrics"), Mapping) and set(data) <= set(SECTIONS)


def split_metrics(
    data: Mapping[str, Any] | None,
    *,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> SplitMetrics:
    """Sort a metrics file (either shape) into metrics, params and tags; ``params`` and
    ``tags`` given beside it are kept as they are (they win over a file's value of the same
    name)."""
    data = dict(data or {})
    out: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    if is_sectioned(data):
        for name, value in (data.get("metrics") or {}).items():
            out[kind_of(str(name), value)][str(name)] = value
        for section in ("params", "tags"):
            for name, value in (data.get(section) or {}).items():
                out[section][str(name)] = value
    else:
        for name, value in data.items():
            out[kind_of(str(name), value)][str(name)] = value
    out["params"].update(params or {})
    out["tags"].update(tags or {})
    return SplitMetrics(metrics=out["metrics"], params=out["params"], tags=out["tags"])


# Scores where lower is better (the compare page's best, the chart's reading).
_LOWER_IS_BETTER = re.compile(
    r"loss|error|(^|_)err$|rmse|mse|mae|mape|latency|(^|_)ms$|(^|_)seconds$|size|bytes|"
    r"duration|perplexity|brier"
)


def lower_is_better(name: str) -> bool:
    return bool(_LOWER_IS_BETTER.search(name.lower()))
