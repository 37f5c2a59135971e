"""Checks of one map of jobs the JSON Schema cannot express: job references and cycles, options
that depend on other jobs or on the spec's environments, datasets, the step cache and gates.

Each check runs on every map of jobs in the spec: the push pipeline's `jobs` and the `jobs` of
each named pipeline (`job_maps`); paths and messages name the map they are in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from apps.projects.spec.loader import NodeIndex
from apps.projects.spec.parsed import JsonPath, SpecIssue
from apps.projects.spec.schema import did_you_mean

DATASET_SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class JobMap:
    prefix: JsonPath  # ("jobs",) or ("pipelines", name, "jobs")
    pipeline: str  # "" for the push pipeline
    jobs: dict[str, dict[str, Any]]

    def path(self, *parts: str | int) -> JsonPath:
        return (*self.prefix, *parts)


def _mapping_jobs(jobs: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(jobs, dict):
        return {}
    return {name: job for name, job in jobs.items() if isinstance(job, dict)}


def job_maps(data: dict[str, Any]) -> list[JobMap]:
    """The push jobs, then each named pipeline's jobs (what of them is a mapping)."""
    maps = [JobMap(("jobs",), "", _mapping_jobs(data.get("jobs")))]
    pipelines = data.get("pipelines")
    if isinstance(pipelines, dict):
        for name, pipeline in pipelines.items():
            if isinstance(pipeline, dict):
                jobs = _mapping_jobs(pipeline.get("jobs"))
                maps.append(JobMap(("pipelines", name, "jobs"), name, jobs))
    return maps


def job_map_issues(data: dict[str, Any], index: NodeIndex) -> Iterator[SpecIssue]:
    maps = job_maps(data)
    push_jobs = maps[0].jobs
    for jobs in maps:
        yield from _needs_issues(jobs, push_jobs, index)
        yield from _cycle_issues(jobs, index)
        yield from _job_option_issues(jobs, data.get("environments"), index)
        yield from _dataset_issues(jobs, index)
        yield from _gate_issues(jobs, data.get("environments"), index)


# --------------------------------------------------------------------------- needs and cycles


def _needs_of(job: dict[str, Any]) -> list[Any]:
    needs = job.get("needs")
    return needs if isinstance(needs, list) else []


def _needs_issues(
    jobs: JobMap, push_jobs: dict[str, dict[str, Any]], index: NodeIndex
) -> Iterator[SpecIssue]:
    names = [str(name) for name in jobs.jobs]
    for name, job in jobs.jobs.items():
        for position, need in enumerate(_needs_of(job)):
            path = jobs.path(name, "needs", position)
            if not isinstance(need, str):
                continue
            if need == name:
                yield index.issue(path, f"job '{name}' cannot depend on itself")
            elif need not in jobs.jobs:
                hint = did_you_mean(need, names)
                if jobs.pipeline and not hint and need in push_jobs:
                    hint = "it is a job of the push pipeline `jobs`; needs stay in one pipeline"
                where = f" in pipeline '{jobs.pipeline}'" if jobs.pipeline else ""
                yield index.issue(
                    path, f"unknown job '{need}'{where}" + (f" ({hint})" if hint else "")
                )


def _cycle_issues(jobs: JobMap, index: NodeIndex) -> Iterator[SpecIssue]:
    graph = {
        name: [n for n in _needs_of(job) if isinstance(n, str) and n in jobs.jobs and n != name]
        for name, job in jobs.jobs.items()
    }
    reported: set[frozenset[str]] = set()
    for cycle in find_cycles(graph):
        members = frozenset(cycle)
        if members in reported:
            continue
        reported.add(members)
        first, second = cycle[0], cycle[1]
        position = _needs_of(jobs.jobs[first]).index(second)
        yield index.issue(jobs.path(first, "needs", position), f"dependency cycle: {arrows(cycle)}")


def arrows(cycle: list[str]) -> str:
    shown = cycle if len(cycle) <= 12 else [*cycle[:5], "...", *cycle[-5:]]
    return " -> ".join(shown)


def find_cycles(graph: dict[str, list[str]]) -> Iterator[list[str]]:
    """Yield cycles found by an iterative DFS, each rotated to start at its earliest node."""
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


# --------------------------------------------------------------------------- options


def unknown_environment(name: str, environments: Any) -> str | None:
    """The message for an environment the spec's `environments` map lacks (None: fine, or the
    spec declares none, so the project's own environments decide)."""
    if not isinstance(environments, dict) or name in environments:
        return None
    hint = did_you_mean(name, [str(env) for env in environments])
    return f"unknown environment '{name}'" + (f" ({hint})" if hint else "")


def _job_option_issues(jobs: JobMap, environments: Any, index: NodeIndex) -> Iterator[SpecIssue]:
    for name, job in jobs.jobs.items():
        command = job.get("command")
        if job.get("kind") == "reproducibility" and isinstance(command, str):
            for placeholder in ("{input}", "{output}"):
                if placeholder not in command:
                    yield index.issue(
                        jobs.path(name, "command"), f"must contain the {placeholder} placeholder"
                    )
        built = job.get("in_image")
        if isinstance(built, str):
            needs = job.get("needs") or []
            if built not in needs or (jobs.jobs.get(built) or {}).get("kind") != "build":
                yield index.issue(
                    jobs.path(name, "in_image"),
                    f"must name a build job this job needs ('{built}' is not one)",
                )
        target = job.get("environment")
        problem = unknown_environment(target, environments) if isinstance(target, str) else None
        if problem:
            yield index.issue(jobs.path(name, "environment"), problem)
        if isinstance(job.get("inputs"), list) and job.get("cache") is not True:
            yield index.issue(
                jobs.path(name, "inputs"),
                "keys the step cache, so it needs `cache: true` on the same job",
            )


# --------------------------------------------------------------------------- datasets and gates


def _datasets(job: dict[str, Any], key: str) -> dict[str, Any]:
    value = job.get(key)
    return value if isinstance(value, dict) else {}


def _dataset_issues(jobs: JobMap, index: NodeIndex) -> Iterator[SpecIssue]:
    producer: dict[str, str] = {}
    for name, job in jobs.jobs.items():
        for dataset, path in _datasets(job, "produces").items():
            where = jobs.path(name, "produces", dataset)
            if isinstance(path, str) and not path.lower().endswith(DATASET_SUFFIXES):
                yield index.issue(where, "must be a .csv or .parquet file")
            if dataset in producer:
                yield index.issue(
                    where,
                    f"dataset '{dataset}' is also produced by job '{producer[dataset]}' of "
                    "this pipeline (one job per pipeline may produce a dataset)",
                )
            producer.setdefault(dataset, name)


def _gate_issues(jobs: JobMap, environments: Any, index: NodeIndex) -> Iterator[SpecIssue]:
    for name, job in jobs.jobs.items():
        gate = job.get("gate")
        if not isinstance(gate, dict):
            continue
        dataset = gate.get("dataset")
        consumed = list(_datasets(job, "consumes"))
        if isinstance(dataset, str) and dataset not in consumed:
            listing = f"it consumes: {', '.join(consumed)}" if consumed else "it consumes none"
            yield index.issue(
                jobs.path(name, "gate", "dataset"),
                f"must be a dataset this job consumes ('{dataset}' is not one; {listing})",
            )
        evaluate = gate.get("evaluate")
        if isinstance(evaluate, str):
            for placeholder in ("{model}", "{output}"):
                if placeholder not in evaluate:
                    yield index.issue(
                        jobs.path(name, "gate", "evaluate"),
                        f"must contain the {placeholder} placeholder",
                    )
            if "{data}" in evaluate and dataset is None:
                yield index.issue(
                    jobs.path(name, "gate", "evaluate"),
                    "uses {data}, so the gate needs a 'dataset' (one the job consumes)",
                )
        guards = gate.get("guards")
        metric = gate.get("metric")
        if isinstance(guards, dict) and isinstance(metric, str) and metric in guards:
            yield index.issue(
                jobs.path(name, "gate", "guards", metric),
                f"'{metric}' is the gate's own metric; guards are the other metrics",
            )
        target = gate.get("environment")
        problem = unknown_environment(target, environments) if isinstance(target, str) else None
        if problem:
            yield index.issue(jobs.path(name, "gate", "environment"), problem)
