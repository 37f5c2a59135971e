"""Parse and validate `.controlplane.yml`, the pipeline spec kept in a project's repository.

`parse_spec` runs the steps in order: `loader` (plain YAML, with the line of every key),
`schema` (the JSON Schema, in plain words), `checks` (what the schema cannot say), then builds
the normalised `PipelineSpec` (`parsed`) with the warnings for keys that do nothing yet.
"""

from __future__ import annotations

import copy
from typing import Any

from apps.projects.spec.checks import CRON_MACROS, semantic_issues, spec_warnings
from apps.projects.spec.loader import load
from apps.projects.spec.params import ParamSpec
from apps.projects.spec.parsed import (
    EnvironmentSpec,
    GateSpec,
    JobSpec,
    MonitorSpec,
    NamedPipelineSpec,
    PipelineSpec,
    RefFilter,
    ScheduleSpec,
    ServeSpec,
    SpecError,
)
from apps.projects.spec.schema import schema_issues

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
    "train": {"model": None, "metrics": None},
    "deploy": {"environment": None},
}
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int:
    """'30s' -> 30, '5m' -> 300, '1h' -> 3600, '2d' -> 172800 (the schema checked the shape)."""
    return int(text[:-1]) * DURATION_UNITS[text[-1]]


def _str_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _variables(raw: dict[str, Any] | None) -> dict[str, str]:
    return {key: _str_value(value) for key, value in (raw or {}).items()}


def _build_job(name: str, raw: dict[str, Any]) -> JobSpec:
    kind = raw["kind"]
    script = raw.get("script", ())
    cache = raw.get("cache", ())
    options = {key: raw.get(key, default) for key, default in KIND_DEFAULTS.get(kind, {}).items()}
    if raw.get("model_name"):  # the registered model's name (default: the model file's stem)
        options["model_name"] = raw["model_name"]
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
        cache=tuple(cache) if isinstance(cache, list) else (),
        variables=_variables(raw.get("variables")),
        when=raw.get("when", "on_success"),
        options=options,
        produces=dict(raw.get("produces", {})),
        consumes=dict(raw.get("consumes", {})),
        step_cache=cache is True,
        inputs=tuple(raw.get("inputs", ())),
        resources=dict(raw.get("resources", {})),
        gate=_build_gate(raw.get("gate")),
    )


def _build_gate(raw: dict[str, Any] | None) -> GateSpec | None:
    if raw is None:
        return None
    return GateSpec(**{**raw, "guards": dict(raw.get("guards", {}))})


def _build_jobs(raw: dict[str, Any]) -> dict[str, JobSpec]:
    return {name: _build_job(name, job) for name, job in raw.items()}


def _build_pipeline(name: str, raw: dict[str, Any]) -> NamedPipelineSpec:
    return NamedPipelineSpec(
        name=name,
        jobs=_build_jobs(raw["jobs"]),
        params={key: ParamSpec.from_raw(key, p) for key, p in raw.get("params", {}).items()},
        concurrency=raw.get("concurrency", "queue"),
        on_dataset=tuple(raw.get("on_dataset", ())),
        variables=_variables(raw.get("variables")),
    )


def _cron(expression: str) -> str:
    return CRON_MACROS.get(expression.strip(), " ".join(expression.split()))


def _build_schedule(name: str, raw: str | dict[str, Any]) -> ScheduleSpec:
    if isinstance(raw, str):
        return ScheduleSpec(name=name, cron=_cron(raw))
    every = raw.get("every")
    return ScheduleSpec(
        name=name,
        pipeline=raw.get("pipeline", ""),
        cron=_cron(raw["cron"]) if "cron" in raw else None,
        every_seconds=duration_seconds(every) if every else None,
        timezone=raw.get("timezone"),
        environments=tuple(raw.get("environments", ())),
        params=dict(raw.get("params", {})),
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
        every_seconds=duration_seconds(every),
        on_drift=raw.get("on_drift", "alert"),
    )


def _build_environment(name: str, raw: dict[str, Any]) -> EnvironmentSpec:
    values = dict(raw)
    values["rollback_on"] = tuple(values.get("rollback_on") or ())
    if values.get("watch"):
        values["watch_seconds"] = duration_seconds(values["watch"])
    return EnvironmentSpec(name=name, **values)


def _build_filter(raw: dict[str, Any] | None) -> RefFilter | None:
    return RefFilter.from_dict(raw) if raw is not None else None


def _build_spec(data: dict[str, Any], *, warnings: list[str]) -> PipelineSpec:
    serve = data.get("serve")
    return PipelineSpec(
        version=data["version"],
        jobs=_build_jobs(data["jobs"]),
        serve=ServeSpec(**serve) if serve is not None else None,
        environments={
            name: _build_environment(name, env or {})
            for name, env in data.get("environments", {}).items()
        },
        monitor=_build_monitor(data.get("monitor")),
        schedules={
            name: _build_schedule(name, entry) for name, entry in data.get("schedules", {}).items()
        },
        variables=_variables(data.get("variables")),
        branches=_build_filter(data.get("branches")),
        tags=_build_filter(data.get("tags")),
        cancel_previous=data.get("cancel_previous", False),
        raw=copy.deepcopy(data),
        warnings=tuple(warnings),
        pipelines={
            name: _build_pipeline(name, raw) for name, raw in data.get("pipelines", {}).items()
        },
    )


# --------------------------------------------------------------------------- entry point


def parse_spec(text: str | bytes) -> PipelineSpec:
    """Parse and validate a pipeline spec; raise `SpecError` listing every problem found."""
    data, index = load(text)
    issues = index.issues + schema_issues(data, index) + semantic_issues(data, index)
    if issues:
        raise SpecError(issues)
    return _build_spec(data, warnings=spec_warnings(data, index))
