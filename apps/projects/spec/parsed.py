"""What the parser returns: the problems it found (`SpecIssue`, `SpecError`) and the frozen
dataclasses of a parsed spec (`PipelineSpec` and its parts), with their JSON round trip."""

from __future__ import annotations

import copy
import heapq
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

from apps.projects.spec.params import ParamSpec

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
class GateSpec:
    """A train job's gate: the candidate model against the champion serving in `environment`."""

    metric: str
    direction: str = "max"
    min_delta: float = 0.0  # absolute, or a fraction of the champion's value when relative
    relative: bool = False
    guards: dict[str, str] = field(default_factory=dict)  # metric -> "max" | "min"
    environment: str = "production"
    dataset: str | None = None  # a consumed dataset: the evaluation data
    evaluate: str | None = None  # command with {model}, {data} and {output} placeholders

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateSpec:
        return cls(**data)


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
    cache: tuple[str, ...] = ()  # directories kept between runs (`cache: [paths]`)
    variables: dict[str, str] = field(default_factory=dict)
    when: str = "on_success"
    options: dict[str, Any] = field(default_factory=dict)
    produces: dict[str, str] = field(default_factory=dict)  # dataset -> workspace path written
    consumes: dict[str, str] = field(default_factory=dict)  # dataset -> workspace path read
    step_cache: bool = False  # `cache: true`: reuse an earlier identical job's result
    inputs: tuple[str, ...] = ()  # commit paths keying the step cache; empty: the whole tree
    resources: dict[str, Any] = field(default_factory=dict)  # cpu, memory, gpu
    gate: GateSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    def ct_options(self) -> dict[str, Any]:
        """The CT keys as the executor reads them from `job.options` (JSON-ready)."""
        return {
            "produces": dict(self.produces),
            "consumes": dict(self.consumes),
            "step_cache": self.step_cache,
            "inputs": list(self.inputs),
            "resources": dict(self.resources),
            "gate": self.gate.to_dict() if self.gate else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        """Rebuild from `to_dict()`; a job stored before the CT keys gets their defaults (its
        gate, then kept in `options`, moves to `gate`)."""
        tuples = ("needs", "script", "artifacts", "cache", "inputs")
        values = {k: tuple(v) if k in tuples else v for k, v in data.items()}
        options = dict(values.get("options", {}))
        old_gate = options.pop("gate", None)
        gate = values.get("gate", old_gate)
        values["options"] = options
        values["gate"] = GateSpec.from_dict(gate) if gate else None
        return cls(**values)


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
    # Automatic rollback (docs/monitoring-rollback.md): alert rules, and how long after a
    # deployment they roll it back ("15m"; None: the environment's default, 15 minutes).
    rollback_on: tuple[str, ...] = ()
    watch: str | None = None
    watch_seconds: int | None = None


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
class ScheduleSpec:
    """A `schedules:` entry; a plain cron string is `ScheduleSpec(name, cron=...)`."""

    name: str
    pipeline: str = ""  # a name under `pipelines:`; "" = the push pipeline `jobs`
    cron: str | None = None  # five fields, macros expanded
    every_seconds: int | None = None
    timezone: str | None = None  # None: the project's timezone
    environments: tuple[str, ...] = ()  # empty: one run at project level
    params: dict[str, Any] = field(default_factory=dict)  # as written; validated by the parser

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any] | str) -> ScheduleSpec:
        if isinstance(data, str):  # stored before schedules were mappings
            return cls(name=name, cron=data)
        values = {**data, "name": name}
        values["environments"] = tuple(values.get("environments", ()))
        return cls(**values)


def topological_order(jobs: dict[str, JobSpec]) -> list[str]:
    """Dependencies first; among ready jobs the earliest declared goes first."""
    position = {name: index for index, name in enumerate(jobs)}
    pending = {name: len(job.needs) for name, job in jobs.items()}
    dependents: dict[str, list[str]] = {name: [] for name in jobs}
    for name, job in jobs.items():
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


@dataclass(frozen=True)
class NamedPipelineSpec:
    """A pipeline under `pipelines:`: never started by a push; by a schedule, a new dataset
    version, the API or the UI."""

    name: str
    jobs: dict[str, JobSpec]
    params: dict[str, ParamSpec] = field(default_factory=dict)
    concurrency: str = "queue"  # skip | queue | cancel_previous
    on_dataset: tuple[str, ...] = ()
    variables: dict[str, str] = field(default_factory=dict)

    def topological_order(self) -> list[str]:
        return topological_order(self.jobs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "jobs": {name: job.to_dict() for name, job in self.jobs.items()},
            "params": {name: param.to_dict() for name, param in self.params.items()},
            "concurrency": self.concurrency,
            "on_dataset": list(self.on_dataset),
            "variables": dict(self.variables),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NamedPipelineSpec:
        return cls(
            name=data["name"],
            jobs={name: JobSpec.from_dict(job) for name, job in data["jobs"].items()},
            params={name: ParamSpec.from_dict(p) for name, p in data.get("params", {}).items()},
            concurrency=data.get("concurrency", "queue"),
            on_dataset=tuple(data.get("on_dataset", ())),
            variables=dict(data.get("variables", {})),
        )


@dataclass(frozen=True)
class PipelineSpec:
    version: int
    jobs: dict[str, JobSpec]
    serve: ServeSpec | None = None
    environments: dict[str, EnvironmentSpec] = field(default_factory=dict)
    monitor: MonitorSpec | None = None
    schedules: dict[str, ScheduleSpec] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    branches: RefFilter | None = None
    tags: RefFilter | None = None
    cancel_previous: bool = False
    raw: dict[str, Any] = field(default_factory=dict)
    # Keys the spec uses that are accepted but not acted on yet, each naming its line.
    warnings: tuple[str, ...] = ()
    pipelines: dict[str, NamedPipelineSpec] = field(default_factory=dict)

    def topological_order(self, pipeline: str = "") -> list[str]:
        """The jobs of `pipeline` ("" = the push jobs), dependencies first; among ready jobs
        the earliest declared goes first."""
        return topological_order(self.pipeline_jobs(pipeline)[0])

    def pipeline_jobs(self, name: str) -> tuple[dict[str, JobSpec], dict[str, str]]:
        """The jobs of pipeline `name` ("" = the push pipeline `jobs`) and the variables they
        all get (global ones overlaid with the pipeline's). KeyError for an unknown name."""
        if not name:
            return self.jobs, dict(self.variables)
        if name not in self.pipelines:
            raise KeyError(f"unknown pipeline {name!r}")
        pipeline = self.pipelines[name]
        return pipeline.jobs, {**self.variables, **pipeline.variables}

    def job_variables(self, name: str, pipeline: str = "") -> dict[str, str]:
        """Global (and the pipeline's) variables overlaid with the job's own."""
        jobs, variables = self.pipeline_jobs(pipeline)
        return {**variables, **jobs[name].variables}

    def pipelines_on_dataset(self, dataset: str) -> list[str]:
        """Named pipelines a new version of `dataset` starts, in declaration order."""
        return [name for name, p in self.pipelines.items() if dataset in p.on_dataset]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "jobs": {name: job.to_dict() for name, job in self.jobs.items()},
            "serve": asdict(self.serve) if self.serve else None,
            "environments": {
                name: _jsonable(asdict(env)) for name, env in self.environments.items()
            },
            "monitor": _jsonable(asdict(self.monitor)) if self.monitor else None,
            "schedules": {name: entry.to_dict() for name, entry in self.schedules.items()},
            "variables": dict(self.variables),
            "branches": self.branches.to_dict() if self.branches else None,
            "tags": self.tags.to_dict() if self.tags else None,
            "cancel_previous": self.cancel_previous,
            "raw": copy.deepcopy(self.raw),
            "warnings": list(self.warnings),
            "pipelines": {name: p.to_dict() for name, p in self.pipelines.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineSpec:
        """Rebuild from `to_dict()` output (e.g. as stored on a PipelineRun); no validation.
        A spec stored before a key existed gets its default."""
        monitor = data.get("monitor")
        return cls(
            version=data["version"],
            jobs={name: JobSpec.from_dict(job) for name, job in data["jobs"].items()},
            serve=ServeSpec(**data["serve"]) if data.get("serve") else None,
            environments={
                name: EnvironmentSpec(**{**env, "rollback_on": tuple(env.get("rollback_on", ()))})
                for name, env in data.get("environments", {}).items()
            },
            monitor=(
                MonitorSpec(**{**monitor, "features": tuple(monitor["features"])})
                if monitor
                else None
            ),
            schedules={
                name: ScheduleSpec.from_dict(name, entry)
                for name, entry in data.get("schedules", {}).items()
            },
            variables=dict(data.get("variables", {})),
            branches=RefFilter.from_dict(data["branches"]) if data.get("branches") else None,
            tags=RefFilter.from_dict(data["tags"]) if data.get("tags") else None,
            cancel_previous=bool(data.get("cancel_previous", False)),
            raw=data.get("raw", {}),
            warnings=tuple(data.get("warnings", ())),
            pipelines={
                name: NamedPipelineSpec.from_dict(p)
                for name, p in data.get("pipelines", {}).items()
            },
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
