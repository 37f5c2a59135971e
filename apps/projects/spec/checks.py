"""Checks the JSON Schema cannot express, over the whole spec: schedules (cron, time zones,
the pipeline they start and its params), named pipelines (param definitions, dataset triggers),
the monitor; and the warnings for keys that do nothing yet. Checks of a map of jobs (needs,
cycles, datasets, gates) are in `checks_jobs`.
"""

from __future__ import annotations

import functools
import math
import zoneinfo
from collections.abc import Iterator
from typing import Any

from croniter import croniter

from apps.projects.spec.checks_jobs import (
    arrows,
    find_cycles,
    job_map_issues,
    job_maps,
    unknown_environment,
)
from apps.projects.spec.loader import NodeIndex, format_path
from apps.projects.spec.params import PARAM_TYPES, ParamError, ParamSpec, coerce_value
from apps.projects.spec.parsed import JsonPath, SpecIssue
from apps.projects.spec.schema import did_you_mean

CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def semantic_issues(data: dict[str, Any], index: NodeIndex) -> list[SpecIssue]:
    issues = list(_non_finite_issues(data, (), index))
    issues += job_map_issues(data, index)
    issues += _schedule_issues(data, index)
    issues += _pipeline_issues(data, index)
    issues += _monitor_issues(data.get("monitor"), data, index)
    return issues


def _non_finite_issues(value: Any, path: JsonPath, index: NodeIndex) -> Iterator[SpecIssue]:
    if isinstance(value, float) and not math.isfinite(value):
        yield index.issue(path, f"must be a finite number (got {value})")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite_issues(item, (*path, key), index)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from _non_finite_issues(item, (*path, position), index)


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


def _schedule_issues(data: dict[str, Any], index: NodeIndex) -> Iterator[SpecIssue]:
    schedules = data.get("schedules")
    if not isinstance(schedules, dict):
        return
    for name, entry in schedules.items():
        if isinstance(entry, str) and entry.strip():
            problem = cron_problem(entry)
            if problem:
                yield index.issue(("schedules", name), problem)
        elif isinstance(entry, dict):
            yield from _schedule_entry_issues(name, entry, data, index)


def _schedule_entry_issues(
    name: str, entry: dict[str, Any], data: dict[str, Any], index: NodeIndex
) -> Iterator[SpecIssue]:
    path: JsonPath = ("schedules", name)
    cron, every = entry.get("cron"), entry.get("every")
    if cron is None and every is None:
        yield index.issue(path, "needs one of 'cron' or 'every'")
    elif cron is not None and every is not None:
        yield index.issue((*path, "every"), "'cron' and 'every' cannot both be set (pick one)")
    if isinstance(cron, str) and cron.strip() and (problem := cron_problem(cron)):
        yield index.issue((*path, "cron"), problem)
    timezone = entry.get("timezone")
    if isinstance(timezone, str) and (problem := timezone_problem(timezone)):
        yield index.issue((*path, "timezone"), problem)
    environments = entry.get("environments")
    for position, env in enumerate(environments if isinstance(environments, list) else []):
        problem = (
            unknown_environment(env, data.get("environments")) if isinstance(env, str) else None
        )
        if problem:
            yield index.issue((*path, "environments", position), problem)
    yield from _schedule_pipeline_issues(path, entry, data, index)


def timezone_problem(name: str) -> str | None:
    """Why `name` is not an IANA time zone (e.g. Europe/Paris), or None if it is one."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        hint = did_you_mean(name, sorted(_timezones()))
        return f"unknown time zone '{name}'" + (f" ({hint})" if hint else " (e.g. Europe/Paris)")
    return None


@functools.cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _pipelines(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    pipelines = data.get("pipelines")
    if not isinstance(pipelines, dict):
        return {}
    return {name: p for name, p in pipelines.items() if isinstance(p, dict)}


def _schedule_pipeline_issues(
    path: JsonPath, entry: dict[str, Any], data: dict[str, Any], index: NodeIndex
) -> Iterator[SpecIssue]:
    pipelines = _pipelines(data)
    target = entry.get("pipeline")
    if isinstance(target, str) and target not in pipelines:
        hint = did_you_mean(target, list(pipelines))
        if not pipelines:
            hint = "the spec declares no `pipelines`"
        yield index.issue(
            (*path, "pipeline"),
            f"unknown pipeline '{target}' ({hint or 'declared: ' + ', '.join(pipelines)})",
        )
        return
    given = entry.get("params")
    if not isinstance(given, dict):
        given = {}
    if not isinstance(target, str):
        if given:
            yield index.issue(
                (*path, "params"), "only a named pipeline takes params (set 'pipeline')"
            )
        return
    params = declared_params(pipelines[target])
    for key in given:
        if key not in params:
            hint = did_you_mean(key, list(params))
            listing = f"declared: {', '.join(params)}" if params else "it declares none"
            yield index.issue(
                (*path, "params", key),
                f"unknown parameter of pipeline '{target}' ({hint + ' ' if hint else ''}{listing})",
            )
    for key, param in params.items():
        if key in given:
            if not isinstance(given[key], str | int | float):
                continue  # not a scalar: the schema says so
            try:
                coerce_value(param, given[key], strict=True)
            except ParamError as error:
                yield index.issue((*path, "params", key), error.message)
        elif param.required:
            where = (*path, "params") if "params" in entry else path
            yield index.issue(
                where, f"parameter '{key}' of pipeline '{target}' has no default, so it is required"
            )


# --------------------------------------------------------------------------- named pipelines


def declared_params(pipeline: dict[str, Any]) -> dict[str, ParamSpec]:
    """The pipeline's params that are well-formed enough to check values against."""
    raw = pipeline.get("params")
    found: dict[str, ParamSpec] = {}
    for name, param in raw.items() if isinstance(raw, dict) else []:
        if not isinstance(param, dict) or param.get("type") not in PARAM_TYPES:
            continue
        choices = param.get("choices")
        bounds = {key: param.get(key) for key in ("minimum", "maximum")}
        found[name] = ParamSpec(
            name=name,
            type=param["type"],
            default=param.get("default"),
            required="default" not in param,
            choices=tuple(choices) if isinstance(choices, list) else (),
            **{k: v for k, v in bounds.items() if isinstance(v, int | float)},
        )
    return found


def _pipeline_issues(data: dict[str, Any], index: NodeIndex) -> Iterator[SpecIssue]:
    pipelines = _pipelines(data)
    for name, pipeline in pipelines.items():
        yield from _param_definition_issues(name, pipeline, index)
    yield from _on_dataset_issues(data, pipelines, index)


def _param_definition_issues(
    pipeline_name: str, pipeline: dict[str, Any], index: NodeIndex
) -> Iterator[SpecIssue]:
    raw = pipeline.get("params")
    params = declared_params(pipeline)
    for name, param in params.items():
        path: JsonPath = ("pipelines", pipeline_name, "params", name)
        given = raw[name]
        numeric = param.type in ("number", "integer")
        if param.type == "choice" and "choices" not in given:
            yield index.issue(path, "type 'choice' needs 'choices'")
        elif param.type != "choice" and "choices" in given:
            yield index.issue((*path, "choices"), "'choices' is only for type 'choice'")
        for bound in ("minimum", "maximum"):
            if bound in given and not numeric:
                yield index.issue((*path, bound), f"'{bound}' is only for type number or integer")
        low, high = param.minimum, param.maximum
        if numeric and low is not None and high is not None and low > high:
            yield index.issue((*path, "maximum"), f"must be >= minimum ({low}) (got {high})")
        elif "default" in given and (param.type != "choice" or param.choices):
            try:
                coerce_value(param, given["default"], strict=True)
            except ParamError as error:
                yield index.issue((*path, "default"), error.message)


def _produced(data: dict[str, Any]) -> dict[str, list[str]]:
    """dataset -> the pipelines ("" = push) with a job producing it."""
    found: dict[str, list[str]] = {}
    for jobs in job_maps(data):
        for job in jobs.jobs.values():
            produces = job.get("produces")
            for dataset in produces if isinstance(produces, dict) else {}:
                found.setdefault(dataset, [])
                if jobs.pipeline not in found[dataset]:
                    found[dataset].append(jobs.pipeline)
    return found


def _on_dataset_issues(
    data: dict[str, Any], pipelines: dict[str, dict[str, Any]], index: NodeIndex
) -> Iterator[SpecIssue]:
    produced = _produced(data)
    graph: dict[str, list[str]] = {name: [] for name in pipelines}
    for name, pipeline in pipelines.items():
        triggers = pipeline.get("on_dataset")
        for position, dataset in enumerate(triggers if isinstance(triggers, list) else []):
            if not isinstance(dataset, str):
                continue
            path = ("pipelines", name, "on_dataset", position)
            producers = produced.get(dataset, [])
            if not producers:
                hint = did_you_mean(dataset, list(produced))
                yield index.issue(
                    path,
                    f"no job of the spec produces dataset '{dataset}'"
                    + (f" ({hint})" if hint else ""),
                )
            elif name in producers:
                yield index.issue(
                    path,
                    f"pipeline '{name}' would start itself: one of its jobs produces '{dataset}'",
                )
            for producer in producers:
                if producer and producer != name and producer in graph:
                    graph[producer].append(name)
    reported: set[frozenset[str]] = set()
    for cycle in find_cycles(graph):
        if frozenset(cycle) not in reported:
            reported.add(frozenset(cycle))
            yield index.issue(
                ("pipelines", cycle[0], "on_dataset"),
                f"dataset trigger cycle: {arrows(cycle)} (each run would start the next)",
            )


# Tests that read only one kind of column (Evidently's); the others read both.
NUMERIC_TESTS = ("ks", "wasserstein")
CATEGORICAL_TESTS = ("chisquare", "z")
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION_METRICS = ("mae", "rmse")


def _monitor_issues(monitor: Any, data: dict[str, Any], index: NodeIndex) -> Iterator[SpecIssue]:
    if not isinstance(monitor, dict):
        return
    yield from _monitor_retrain_issues(monitor, data, index)
    yield from _monitor_column_issues(monitor, index)
    yield from _monitor_performance_issues(monitor, index)


def _has_train_job(jobs: Any) -> bool:
    return isinstance(jobs, dict) and any(
        isinstance(job, dict) and job.get("kind") == "train" for job in jobs.values()
    )


def _monitor_retrain_issues(
    monitor: dict[str, Any], data: dict[str, Any], index: NodeIndex
) -> Iterator[SpecIssue]:
    retrain = monitor.get("retrain")
    named = retrain.get("pipeline") if isinstance(retrain, dict) else None
    pipelines = _pipelines(data)
    if isinstance(named, str):
        path = ("monitor", "retrain", "pipeline")
        if named not in pipelines:
            hint = did_you_mean(named, list(pipelines))
            if not pipelines:
                hint = "the spec declares no `pipelines`"
            listing = hint or "declared: " + ", ".join(pipelines)
            yield index.issue(path, f"unknown pipeline '{named}' ({listing})")
            return
        if not _has_train_job(pipelines[named].get("jobs")):
            yield index.issue(path, f"pipeline '{named}' has no job of kind 'train'")
            return
        for key, param in declared_params(pipelines[named]).items():
            if param.required:
                yield index.issue(
                    path,
                    f"parameter '{key}' of pipeline '{named}' has no default, and a retrain "
                    "gives no parameters",
                )
        return
    if monitor.get("on_drift") != "retrain":
        return
    jobs = [job for jobs in job_maps(data) for job in jobs.jobs.values()]
    if not any(job.get("kind") == "train" for job in jobs):
        yield index.issue(("monitor", "on_drift"), "'retrain' needs a job of kind 'train'")


def _monitor_column_issues(monitor: dict[str, Any], index: NodeIndex) -> Iterator[SpecIssue]:
    features = monitor.get("features")
    features = [f for f in features if isinstance(f, str)] if isinstance(features, list) else []
    target = monitor.get("target")
    if isinstance(target, str) and target in features:
        position = features.index(target)
        yield index.issue(
            ("monitor", "features", position), f"'{target}' is the target, not a feature"
        )
    prediction = monitor.get("prediction", "prediction")
    columns = monitor.get("columns")
    for name, column in columns.items() if isinstance(columns, dict) else []:
        path = ("monitor", "columns", name)
        if features and name not in features and name != prediction:
            hint = did_you_mean(name, features)
            yield index.issue(
                path, f"'{name}' is not in monitor.features" + (f" ({hint})" if hint else "")
            )
            continue
        if not isinstance(column, dict):
            continue
        kind, test = column.get("kind"), column.get("test") or monitor.get("method")
        if kind == "categorical" and test in NUMERIC_TESTS:
            where = (*path, "test") if column.get("test") else (*path, "kind")
            yield index.issue(where, f"test '{test}' is for numeric columns (kind: categorical)")
        elif kind == "numeric" and test in CATEGORICAL_TESTS:
            where = (*path, "test") if column.get("test") else (*path, "kind")
            yield index.issue(where, f"test '{test}' is for categorical columns (kind: numeric)")


def _monitor_performance_issues(monitor: dict[str, Any], index: NodeIndex) -> Iterator[SpecIssue]:
    alerts = monitor.get("alerts")
    performance = alerts.get("performance") if isinstance(alerts, dict) else None
    if not isinstance(performance, dict):
        return
    path = ("monitor", "alerts", "performance")
    if not isinstance(monitor.get("target"), str):
        yield index.issue(path, "needs monitor.target (the label column of the reference)")
    bounds = [key for key in ("below", "above") if key in performance]
    if not bounds:
        yield index.issue(path, "needs one of 'below' or 'above'")
    elif len(bounds) == 2:
        yield index.issue((*path, "above"), "'below' and 'above' cannot both be set (pick one)")
    metric = performance.get("metric")
    task = monitor.get("task", "classification")
    if task == "classification" and metric in REGRESSION_METRICS:
        yield index.issue((*path, "metric"), f"'{metric}' is a regression metric (task: {task})")
    elif task == "regression" and metric in CLASSIFICATION_METRICS:
        yield index.issue(
            (*path, "metric"), f"'{metric}' is a classification metric (task: {task})"
        )


# --------------------------------------------------------------------------- warnings

# Keys the schema accepts that nothing acts on (yet, or in this combination). A spec that uses
# one is valid, but the run says so instead of staying silent.
NOT_ACTED_ON = "is accepted but not acted on yet"


def spec_warnings(data: dict[str, Any], index: NodeIndex) -> list[str]:
    """One line per key that does nothing yet, naming the key and its line, sorted by line."""
    found: list[tuple[int, str]] = []

    def warn(path: JsonPath, reason: str, subject: str = "") -> None:
        line = (index.locate(path) or (None, None))[0]
        where = f" (line {line})" if line else ""
        subject = subject or f"`{format_path(path)}`"
        found.append((line or 0, f"{subject}{where} {NOT_ACTED_ON}: {reason}"))

    monitor = data.get("monitor")
    retrain = isinstance(monitor, dict) and monitor.get("retrain")
    if retrain and monitor.get("on_drift") != "retrain":
        warn(("monitor", "retrain"), "on_drift is not 'retrain', so a drift starts no run")
    return [text for _, text in sorted(found, key=lambda item: item[0])]
