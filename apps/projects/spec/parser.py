"""Parse and validate `.controlplane.yml`, the pipeline spec kept in a project's repository."""

from __future__ import annotations

import copy
import difflib
import functools
import heapq
import json
import math
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

import yaml
from croniter import croniter
from jsonschema import Draft202012Validator, ValidationError

SPEC_FILENAME = ".controlplane.yml"
SCHEMA_PATH = Path(__file__).with_name("schema.json")
MAX_SPEC_BYTES = 256 * 1024
# Aliases let a small document expand into a huge tree ("billion laughs"); cap the walk.
MAX_NODES = 50_000
MAX_DEPTH = 32

JOB_KINDS = ("test", "build", "reproducibility", "train", "deploy", "monitor", "script")
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "build": {"dockerfile": "Dockerfile", "context": ".", "model": None, "metrics": None},
    "reproducibility": {
        "command": None,
        "input": None,
        "expected": None,
        "tolerance": 1e-6,
        "in_image": None,
    },
    "train": {"model": None, "metrics": None, "gate": None},
    "deploy": {"environment": None},
}
GATE_DEFAULTS: dict[str, Any] = {"direction": "max", "min_delta": 0.0}
CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
DURATION_UNITS = {"m": 60, "h": 3600, "d": 86400}

_TAG = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null", "seq", "map")}
_MERGE_TAG = _TAG + "merge"
_STR_TAG = _TAG + "str"
# Timestamps would turn `2024-01-01` into date objects and `=` has no safe constructor;
# without these resolvers both stay plain strings.
_DROPPED_RESOLVERS = {_TAG + "timestamp", _TAG + "value"}

JsonPath = tuple[str | int, ...]


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class SpecIssue:
    path: str
    line: int | None
    column: int | None
    message: str

    def __str__(self) -> str:
        location = SPEC_FILENAME if self.line is None else f"{SPEC_FILENAME}:{self.line}"
        if self.path:
            return f"{location}: {self.path}: {self.message}"
        return f"{location}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _issue_sort_key(issue: SpecIssue) -> tuple[bool, int, int, str]:
    return (issue.line is None, issue.line or 0, issue.column or 0, issue.path)


class SpecError(Exception):
    """Raised by `parse_spec`; `issues` holds every problem found, sorted by line."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        unique = list(dict.fromkeys(issues))
        self.issues: list[SpecIssue] = sorted(unique, key=_issue_sort_key)
        super().__init__("\n".join(str(issue) for issue in self.issues))

    def to_list(self) -> list[dict[str, Any]]:
        return [issue.to_dict() for issue in self.issues]


# --------------------------------------------------------------------------- result types


@dataclass(frozen=True)
class JobSpec:
    name: str
    kind: str
    needs: tuple[str, ...] = ()
    runner: str = "local"
    image: str | None = None
    script: tuple[str, ...] = ()
    timeout: int = 3600
    retries: int = 0
    artifacts: tuple[str, ...] = ()
    reports: dict[str, str] = field(default_factory=dict)
    cache: tuple[str, ...] = ()
    variables: dict[str, str] = field(default_factory=dict)
    when: str = "on_success"
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        tuples = ("needs", "script", "artifacts", "cache")
        return cls(**{k: tuple(v) if k in tuples else v for k, v in data.items()})


@dataclass(frozen=True)
class ServeSpec:
    command: str
    health: str = "/healthz"
    port: int = 8080


@dataclass(frozen=True)
class EnvironmentSpec:
    name: str
    auto_deploy: bool = False
    required_approvals: int = 0
    allow_self_approval: bool = False
    approval_ttl_hours: int | None = None  # None: the default approval time (72 h)


@dataclass(frozen=True)
class MonitorSpec:
    reference: str
    features: tuple[str, ...] = ()  # empty: every column of the reference data
    method: str = "psi"
    threshold: float = 0.2
    every: str = "1h"
    every_seconds: int = 3600
    on_drift: str = "alert"


@dataclass(frozen=True)
class RefFilter:
    only: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()  # the `except:` key

    def matches(self, name: str) -> bool:
        if self.only and not any(fnmatchcase(name, pattern) for pattern in self.only):
            return False
        return not any(fnmatchcase(name, pattern) for pattern in self.exclude)

    def to_dict(self) -> dict[str, list[str]]:
        return {"only": list(self.only), "except": list(self.exclude)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RefFilter:
        return cls(only=tuple(data.get("only", ())), exclude=tuple(data.get("except", ())))


@dataclass(frozen=True)
class PipelineSpec:
    version: int
    jobs: dict[str, JobSpec]
    serve: ServeSpec | None = None
    environments: dict[str, EnvironmentSpec] = field(default_factory=dict)
    monitor: MonitorSpec | None = None
    schedules: dict[str, str] = field(default_factory=dict)  # macros expanded to 5 fields
    variables: dict[str, str] = field(default_factory=dict)
    branches: RefFilter | None = None
    tags: RefFilter | None = None
    cancel_previous: bool = False
    raw: dict[str, Any] = field(default_factory=dict)

    def topological_order(self) -> list[str]:
        """Dependencies first; among ready jobs the earliest declared goes first."""
        position = {name: index for index, name in enumerate(self.jobs)}
        pending = {name: len(job.needs) for name, job in self.jobs.items()}
        dependents: dict[str, list[str]] = {name: [] for name in self.jobs}
        for name, job in self.jobs.items():
            for need in job.needs:
                dependents[need].append(name)
        ready = [(position[name], name) for name, count in pending.items() if count == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            _, name = heapq.heappop(ready)
            order.append(name)
            for child in dependents[name]:
                pending[child] -= 1
                if pending[child] == 0:
                    heapq.heappush(ready, (position[child], child))
        return order

    def job_variables(self, name: str) -> dict[str, str]:
        """Global variables overlaid with the job's own."""
        return {**self.variables, **self.jobs[name].variables}

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "jobs": {name: job.to_dict() for name, job in self.jobs.items()},
            "serve": asdict(self.serve) if self.serve else None,
            "environments": {name: asdict(env) for name, env in self.environments.items()},
            "monitor": _jsonable(asdict(self.monitor)) if self.monitor else None,
            "schedules": dict(self.schedules),
            "variables": dict(self.variables),
            "branches": self.branches.to_dict() if self.branches else None,
            "tags": self.tags.to_dict() if self.tags else None,
            "cancel_previous": self.cancel_previous,
            "raw": copy.deepcopy(self.raw),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineSpec:
        """Rebuild from `to_dict()` output (e.g. as stored on a PipelineRun); no validation."""
        monitor = data.get("monitor")
        return cls(
            version=data["version"],
            jobs={name: JobSpec.from_dict(job) for name, job in data["jobs"].items()},
            serve=ServeSpec(**data["serve"]) if data.get("serve") else None,
            environments={
                name: EnvironmentSpec(**env) for name, env in data.get("environments", {}).items()
            },
            monitor=(
                MonitorSpec(**{**monitor, "features": tuple(monitor["features"])})
                if monitor
                else None
            ),
            schedules=dict(data.get("schedules", {})),
            variables=dict(data.get("variables", {})),
            branches=RefFilter.from_dict(data["branches"]) if data.get("branches") else None,
            tags=RefFilter.from_dict(data["tags"]) if data.get("tags") else None,
            cancel_previous=bool(data.get("cancel_previous", False)),
            raw=data.get("raw", {}),
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def ref_matches(spec: PipelineSpec, ref_type: Literal["branch", "tag"], name: str) -> bool:
    """Whether a push to this branch/tag should trigger a pipeline (no filter: always)."""
    if ref_type == "branch":
        ref_filter, prefix = spec.branches, "refs/heads/"
    elif ref_type == "tag":
        ref_filter, prefix = spec.tags, "refs/tags/"
    else:
        raise ValueError(f"ref_type must be 'branch' or 'tag', not {ref_type!r}")
    name = name.removeprefix(prefix)
    return ref_filter is None or ref_filter.matches(name)


# --------------------------------------------------------------------------- schema


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


# --------------------------------------------------------------------------- YAML loading


_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SpecLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    pass


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED_RESOLVERS]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


def _decode(text: str | bytes) -> str:
    size = len(text.encode("utf-8", "surrogatepass")) if isinstance(text, str) else len(text)
    if size > MAX_SPEC_BYTES:
        raise SpecError(
            [SpecIssue("", None, None, f"spec is too large ({size} bytes; limit {MAX_SPEC_BYTES})")]
        )
    if isinstance(text, str):
        return text.removeprefix("\ufeff")
    try:
        return text.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = text[: exc.start].count(b"\n") + 1
        raise SpecError([SpecIssue("", line, None, "file is not valid UTF-8")]) from None


def _reader_issue(exc: yaml.reader.ReaderError, source: str) -> SpecIssue:
    line = source[: max(exc.position, 0)].count("\n") + 1
    if isinstance(exc.character, int):
        problem = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
    else:
        problem = str(exc.reason)
    return SpecIssue("", line, None, f"YAML syntax error: {problem}")


def _yaml_issue(exc: yaml.YAMLError, prefix: str = "YAML syntax error") -> SpecIssue:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    if context and problem.startswith("but "):
        message = f"{prefix}: {context}, {problem}"
    else:
        message = f"{prefix}: {problem}" + (f" ({context})" if context else "")
    if mark is None:
        return SpecIssue("", None, None, message)
    return SpecIssue("", mark.line + 1, mark.column + 1, message)


def _compose(source: str) -> tuple[yaml.Node, _SpecLoader]:
    try:
        loader = _SpecLoader(source)  # the pure-Python reader already rejects bad characters
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as exc:
        raise SpecError([_reader_issue(exc, source)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([_yaml_issue(exc)]) from None
    except RecursionError:
        raise SpecError([SpecIssue("", None, None, "document is nested too deeply")]) from None
    if root is None:
        raise SpecError([SpecIssue("", 1, 1, "spec is empty")])
    if not isinstance(root, yaml.MappingNode):
        line, column = _pos(root)
        raise SpecError([SpecIssue("", line, column, "top level must be a mapping")])
    return root, loader


def _construct(root: yaml.Node, loader: _SpecLoader) -> dict[str, Any]:
    try:
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise SpecError([_yaml_issue(exc, "cannot load value")]) from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise SpecError([SpecIssue("", None, None, f"cannot load value: {exc}")]) from None


# --------------------------------------------------------------------------- node index

Position = tuple[int, int]


def _pos(node: yaml.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _NodeIndex:
    """JSON path -> source position of keys and values, plus structural YAML problems."""

    def __init__(self) -> None:
        self.keys: dict[JsonPath, Position] = {}
        self.values: dict[JsonPath, Position] = {}
        self.issues: list[SpecIssue] = []
        self.fatal = False
        self._visited = 0
        self._stack: set[int] = set()

    @classmethod
    def build(cls, root: yaml.Node) -> _NodeIndex:
        index = cls()
        index._walk(root, ())
        return index

    def locate(self, path: JsonPath) -> Position | None:
        """Position of the key naming `path` (else its value), falling back to ancestors."""
        while True:
            found = self.keys.get(path) or self.values.get(path)
            if found or not path:
                return found
            path = path[:-1]

    def issue(self, path: JsonPath, message: str) -> SpecIssue:
        line, column = self.locate(path) or (None, None)
        return SpecIssue(format_path(path), line, column, message)

    def _add(self, node: yaml.Node, path: JsonPath, message: str, fatal: bool = False) -> None:
        line, column = _pos(node)
        self.issues.append(SpecIssue(format_path(path), line, column, message))
        self.fatal = self.fatal or fatal

    def _enter(self, node: yaml.Node, path: JsonPath) -> bool:
        """Count the node and refuse alias bombs, recursion and absurd nesting."""
        self._visited += 1
        if self._visited > MAX_NODES:
            message = f"document too complex (over {MAX_NODES} nodes once aliases are expanded)"
        elif id(node) in self._stack:
            message = "recursive YAML alias is not allowed"
        elif len(path) > MAX_DEPTH:
            message = f"nested too deeply (more than {MAX_DEPTH} levels)"
        elif node.tag not in _ALLOWED_TAGS:
            message = f"unsupported YAML tag '{_short_tag(node.tag)}'"
        else:
            return True
        self._add(node, path, message, fatal=True)
        return False

    def _walk(self, node: yaml.Node, path: JsonPath) -> None:
        if self.fatal or not self._enter(node, path):
            return
        self.values.setdefault(path, _pos(node))
        self._stack.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self._walk_mapping(node, path)
        elif isinstance(node, yaml.SequenceNode):
            for position, item in enumerate(node.value):
                self._walk(item, (*path, position))
        self._stack.discard(id(node))

    def _walk_mapping(self, node: yaml.MappingNode, path: JsonPath) -> None:
        seen: dict[str, yaml.Node] = {}
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged += self._merged_entries(value_node, path)
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in seen:
                first = seen[key].start_mark.line + 1
                message = f"duplicate key '{key}' (first defined on line {first})"
                self._add(key_node, (*path, key), message)
            seen[key] = key_node
            self.keys[(*path, key)] = _pos(key_node)
            self._walk(value_node, (*path, key))
        for key_node, value_node in merged:  # explicit keys win, then the first merge source
            key = self._key(key_node, path)
            if key is not None and (*path, key) not in self.keys:
                self.keys[(*path, key)] = _pos(key_node)
                self._walk(value_node, (*path, key))

    def _key(self, node: yaml.Node, path: JsonPath) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG:
            return node.value
        if isinstance(node, yaml.ScalarNode):
            message = f"key {node.value!r} is read as {_short_tag(node.tag)}; quote it"
        else:
            message = "keys must be plain strings"
            self.fatal = True  # a list or mapping key cannot even be constructed
        self._add(node, path, message)
        return None

    def _merged_entries(self, node: yaml.Node, path: JsonPath) -> list[tuple[yaml.Node, yaml.Node]]:
        """Key/value pairs pulled in by `<<: *anchor`, highest priority first."""
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        entries: list[tuple[yaml.Node, yaml.Node]] = []
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self._add(
                    source, path, "merge key '<<' needs a mapping or list of mappings", fatal=True
                )
            if self.fatal or not self._enter(source, path):
                return []
            self._stack.add(id(source))
            own = [(k, v) for k, v in source.value if k.tag != _MERGE_TAG]
            nested = [
                entry
                for k, v in source.value
                if k.tag == _MERGE_TAG
                for entry in self._merged_entries(v, path)
            ]
            self._stack.discard(id(source))
            entries += own + nested
        return entries


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def format_path(path: JsonPath) -> str:
    """('jobs', 'build', 'needs', 0) -> 'jobs.build.needs[0]'."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


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


def _did_you_mean(word: Any, choices: list[str]) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


def _schema_issues(data: dict[str, Any], index: _NodeIndex) -> list[SpecIssue]:
    issues: list[SpecIssue] = []
    for error in _validator().iter_errors(data):
        issues.extend(_translate(error, data, index))
    return issues


def _translate(error: ValidationError, data: Any, index: _NodeIndex) -> list[SpecIssue]:
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


def _name_issue(error: ValidationError, path: JsonPath, index: _NodeIndex) -> SpecIssue:
    name = error.instance
    detail = error.schema.get("x-message") if isinstance(error.schema, dict) else None
    return index.issue((*path, name), f"invalid name {name!r}: {detail or error.message}")


def _unknown_key_issues(
    error: ValidationError, path: JsonPath, index: _NodeIndex
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
        hint = _did_you_mean(key, allowed)
        listing = f"allowed: {', '.join(allowed)}" if allowed else "no keys allowed"
        message = f"unknown key {key!r} ({hint + ' ' if hint else ''}{listing})"
        issues.append(index.issue((*path, key), message))
    return issues


def _required_issues(error: ValidationError, path: JsonPath, index: _NodeIndex) -> list[SpecIssue]:
    instance = error.instance
    missing = [key for key in error.validator_value if key not in instance]
    suffix = ""
    if "then" in error.relative_schema_path:
        suffix = f" for kind '{instance.get('kind')}' jobs"
    return [index.issue(path, f"'{key}' is required{suffix}") for key in missing]


def _wrong_kind_issue(path: JsonPath, index: _NodeIndex, data: Any) -> SpecIssue:
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
        hint = _did_you_mean(instance, [str(choice) for choice in expected])
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


# --------------------------------------------------------------------------- semantic checks


def _semantic_issues(data: dict[str, Any], index: _NodeIndex) -> list[SpecIssue]:
    jobs = data.get("jobs")
    jobs = (
        {name: job for name, job in jobs.items() if isinstance(job, dict)}
        if isinstance(jobs, dict)
        else {}
    )
    issues = list(_non_finite_issues(data, (), index))
    issues += _needs_issues(jobs, index)
    issues += _cycle_issues(jobs, index)
    issues += _schedule_issues(data.get("schedules"), index)
    issues += _job_option_issues(jobs, data.get("environments"), index)
    issues += _monitor_issues(data.get("monitor"), jobs, index)
    return issues


def _non_finite_issues(value: Any, path: JsonPath, index: _NodeIndex) -> Iterator[SpecIssue]:
    if isinstance(value, float) and not math.isfinite(value):
        yield index.issue(path, f"must be a finite number (got {value})")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite_issues(item, (*path, key), index)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from _non_finite_issues(item, (*path, position), index)


def _needs_of(job: dict[str, Any]) -> list[Any]:
    needs = job.get("needs")
    return needs if isinstance(needs, list) else []


def _needs_issues(jobs: dict[str, dict[str, Any]], index: _NodeIndex) -> Iterator[SpecIssue]:
    names = [str(name) for name in jobs]
    for name, job in jobs.items():
        for position, need in enumerate(_needs_of(job)):
            path = ("jobs", name, "needs", position)
            if not isinstance(need, str):
                continue
            if need == name:
                yield index.issue(path, f"job '{name}' cannot depend on itself")
            elif need not in jobs:
                hint = _did_you_mean(need, names)
                yield index.issue(path, f"unknown job '{need}'" + (f" ({hint})" if hint else ""))


def _cycle_issues(jobs: dict[str, dict[str, Any]], index: _NodeIndex) -> Iterator[SpecIssue]:
    graph = {
        name: [n for n in _needs_of(job) if isinstance(n, str) and n in jobs and n != name]
        for name, job in jobs.items()
    }
    reported: set[frozenset[str]] = set()
    for cycle in _find_cycles(graph):
        members = frozenset(cycle)
        if members in reported:
            continue
        reported.add(members)
        first, second = cycle[0], cycle[1]
        position = _needs_of(jobs[first]).index(second)
        shown = cycle if len(cycle) <= 12 else [*cycle[:5], "...", *cycle[-5:]]
        arrow = " -> ".join(shown)
        yield index.issue(("jobs", first, "needs", position), f"dependency cycle: {arrow}")


def _find_cycles(graph: dict[str, list[str]]) -> Iterator[list[str]]:
    """Yield cycles found by an iterative DFS, each rotated to start at its earliest job."""
    order = {name: i for i, name in enumerate(graph)}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for root in graph:
        if root in state:
            continue
        state[root] = 1
        trail = [root]
        stack = [iter(graph[root])]
        while stack:
            need = next(stack[-1], None)
            if need is None:
                stack.pop()
                state[trail.pop()] = 2
            elif state.get(need) == 1:
                loop = trail[trail.index(need) :]
                start = min(range(len(loop)), key=lambda i: order[loop[i]])
                loop = loop[start:] + loop[:start]
                yield [*loop, loop[0]]
            elif need not in state:
                state[need] = 1
                trail.append(need)
                stack.append(iter(graph[need]))


def cron_problem(expression: str) -> str | None:
    """Why a schedule expression is unusable, or None if it is fine."""
    text = expression.strip()
    if text.startswith("@"):
        return (
            None
            if text in CRON_MACROS
            else (f"unknown cron macro {text!r} (allowed: {', '.join(CRON_MACROS)})")
        )
    if len(text.split()) != 5:
        return (
            f"invalid cron expression {expression!r}: expected 5 fields "
            "(minute hour day-of-month month day-of-week)"
        )
    if not croniter.is_valid(text):
        return f"invalid cron expression {expression!r}"
    return None


def _schedule_issues(schedules: Any, index: _NodeIndex) -> Iterator[SpecIssue]:
    if not isinstance(schedules, dict):
        return
    for name, expression in schedules.items():
        if isinstance(expression, str) and expression.strip():
            problem = cron_problem(expression)
            if problem:
                yield index.issue(("schedules", name), problem)


def _job_option_issues(
    jobs: dict[str, dict[str, Any]], environments: Any, index: _NodeIndex
) -> Iterator[SpecIssue]:
    for name, job in jobs.items():
        command = job.get("command")
        if job.get("kind") == "reproducibility" and isinstance(command, str):
            for placeholder in ("{input}", "{output}"):
                if placeholder not in command:
                    yield index.issue(
                        ("jobs", name, "command"), f"must contain the {placeholder} placeholder"
                    )
        built = job.get("in_image")
        if isinstance(built, str):
            needs = job.get("needs") or []
            if built not in needs or (jobs.get(built) or {}).get("kind") != "build":
                yield index.issue(
                    ("jobs", name, "in_image"),
                    f"must name a build job this job needs ('{built}' is not one)",
                )
        target = job.get("environment")
        if (
            isinstance(environments, dict)
            and isinstance(target, str)
            and (target not in environments)
        ):
            hint = _did_you_mean(target, [str(env) for env in environments])
            yield index.issue(
                ("jobs", name, "environment"),
                f"unknown environment '{target}'" + (f" ({hint})" if hint else ""),
            )


def _monitor_issues(
    monitor: Any, jobs: dict[str, dict[str, Any]], index: _NodeIndex
) -> Iterator[SpecIssue]:
    if not isinstance(monitor, dict) or monitor.get("on_drift") != "retrain":
        return
    if not any(job.get("kind") == "train" for job in jobs.values()):
        yield index.issue(("monitor", "on_drift"), "'retrain' needs a job of kind 'train'")


# --------------------------------------------------------------------------- building


def _str_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _variables(raw: dict[str, Any] | None) -> dict[str, str]:
    return {key: _str_value(value) for key, value in (raw or {}).items()}


def _build_job(name: str, raw: dict[str, Any]) -> JobSpec:
    kind = raw["kind"]
    script = raw.get("script", ())
    options = {key: raw.get(key, default) for key, default in KIND_DEFAULTS.get(kind, {}).items()}
    if options.get("gate"):
        options["gate"] = {**GATE_DEFAULTS, **options["gate"]}
    return JobSpec(
        name=name,
        kind=kind,
        needs=tuple(raw.get("needs", ())),
        runner=raw.get("runner", "local"),
        image=raw.get("image"),
        script=(script,) if isinstance(script, str) else tuple(script),
        timeout=raw.get("timeout", 3600),
        retries=raw.get("retries", 0),
        artifacts=tuple(raw.get("artifacts", ())),
        reports=dict(raw.get("reports", {})),
        cache=tuple(raw.get("cache", ())),
        variables=_variables(raw.get("variables")),
        when=raw.get("when", "on_success"),
        options=options,
    )


def _build_monitor(raw: dict[str, Any] | None) -> MonitorSpec | None:
    if raw is None:
        return None
    every = raw.get("every", "1h")
    return MonitorSpec(
        reference=raw["reference"],
        features=tuple(raw.get("features", ())),
        method=raw.get("method", "psi"),
        threshold=raw.get("threshold", 0.2),
        every=every,
        every_seconds=int(every[:-1]) * DURATION_UNITS[every[-1]],
        on_drift=raw.get("on_drift", "alert"),
    )


def _build_filter(raw: dict[str, Any] | None) -> RefFilter | None:
    return RefFilter.from_dict(raw) if raw is not None else None


def _build_spec(data: dict[str, Any]) -> PipelineSpec:
    serve = data.get("serve")
    return PipelineSpec(
        version=data["version"],
        jobs={name: _build_job(name, job) for name, job in data["jobs"].items()},
        serve=ServeSpec(**serve) if serve is not None else None,
        environments={
            name: EnvironmentSpec(name=name, **(env or {}))
            for name, env in data.get("environments", {}).items()
        },
        monitor=_build_monitor(data.get("monitor")),
        schedules={
            name: CRON_MACROS.get(expr.strip(), " ".join(expr.split()))
            for name, expr in data.get("schedules", {}).items()
        },
        variables=_variables(data.get("variables")),
        branches=_build_filter(data.get("branches")),
        tags=_build_filter(data.get("tags")),
        cancel_previous=data.get("cancel_previous", False),
        raw=copy.deepcopy(data),
    )


# --------------------------------------------------------------------------- entry point


def parse_spec(text: str | bytes) -> PipelineSpec:
    """Parse and validate a pipeline spec; raise `SpecError` listing every problem found."""
    source = _decode(text)
    root, loader = _compose(source)
    index = _NodeIndex.build(root)
    if index.fatal:
        raise SpecError(index.issues)
    data = _construct(root, loader)
    issues = index.issues + _schema_issues(data, index) + _semantic_issues(data, index)
    if issues:
        raise SpecError(issues)
    return _build_spec(data)
