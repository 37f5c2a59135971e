"""What the parser returns: the problems it found (`SpecIssue`, `SpecError`) and the frozen
dataclasses of a parsed spec (`PipelineSpec` and its parts), with their JSON round trip."""

from __future__ import annotations

import copy
import heapq
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

SPEC_FILENAME = ".controlplane.yml"

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
    # Keys the spec uses that are accepted but not acted on yet, each naming its line.
    warnings: tuple[str, ...] = ()

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
            "warnings": list(self.warnings),
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
            warnings=tuple(data.get("warnings", ())),
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
