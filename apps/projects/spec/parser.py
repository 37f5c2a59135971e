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
from apps.projects.spec.parsed import (
    EnvironmentSpec,
    JobSpec,
    MonitorSpec,
    PipelineSpec,
    RefFilter,
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
    "train": {"model": None, "metrics": None, "gate": None},
    "deploy": {"environment": None},
}
GATE_DEFAULTS: dict[str, Any] = {"direction": "max", "min_delta": 0.0}
DURATION_UNITS = {"m": 60, "h": 3600, "d": 86400}


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


def _build_spec(data: dict[str, Any], *, warnings: list[str]) -> PipelineSpec:
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
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------- entry point


def parse_spec(text: str | bytes) -> PipelineSpec:
    """Parse and validate a pipeline spec; raise `SpecError` listing every problem found."""
    data, index = load(text)
    issues = index.issues + schema_issues(data, index) + semantic_issues(data, index)
    if issues:
        raise SpecError(issues)
    return _build_spec(data, warnings=spec_warnings(data, index))
