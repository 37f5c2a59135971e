"""Checks the JSON Schema cannot express: job references and cycles, cron expressions, options
that depend on other parts of the spec; and the warnings for keys that do nothing yet."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from croniter import croniter

from apps.projects.spec.loader import NodeIndex, format_path
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


def _non_finite_issues(value: Any, path: JsonPath, index: NodeIndex) -> Iterator[SpecIssue]:
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


def _needs_issues(jobs: dict[str, dict[str, Any]], index: NodeIndex) -> Iterator[SpecIssue]:
    names = [str(name) for name in jobs]
    for name, job in jobs.items():
        for position, need in enumerate(_needs_of(job)):
            path = ("jobs", name, "needs", position)
            if not isinstance(need, str):
                continue
            if need == name:
                yield index.issue(path, f"job '{name}' cannot depend on itself")
            elif need not in jobs:
                hint = did_you_mean(need, names)
                yield index.issue(path, f"unknown job '{need}'" + (f" ({hint})" if hint else ""))


def _cycle_issues(jobs: dict[str, dict[str, Any]], index: NodeIndex) -> Iterator[SpecIssue]:
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


def _schedule_issues(schedules: Any, index: NodeIndex) -> Iterator[SpecIssue]:
    if not isinstance(schedules, dict):
        return
    for name, expression in schedules.items():
        if isinstance(expression, str) and expression.strip():
            problem = cron_problem(expression)
            if problem:
                yield index.issue(("schedules", name), problem)


def _job_option_issues(
    jobs: dict[str, dict[str, Any]], environments: Any, index: NodeIndex
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
            hint = did_you_mean(target, [str(env) for env in environments])
            yield index.issue(
                ("jobs", name, "environment"),
                f"unknown environment '{target}'" + (f" ({hint})" if hint else ""),
            )


def _monitor_issues(
    monitor: Any, jobs: dict[str, dict[str, Any]], index: NodeIndex
) -> Iterator[SpecIssue]:
    if not isinstance(monitor, dict) or monitor.get("on_drift") != "retrain":
        return
    if not any(job.get("kind") == "train" for job in jobs.values()):
        yield index.issue(("monitor", "on_drift"), "'retrain' needs a job of kind 'train'")


# --------------------------------------------------------------------------- warnings

# Keys the schema accepts that nothing acts on yet (the CT / CM issues make them real). A spec
# that uses one is valid, but the run says so instead of staying silent.
NOT_ACTED_ON = "is accepted but not acted on yet"


def spec_warnings(data: dict[str, Any], index: NodeIndex) -> list[str]:
    """One line per key that does nothing yet, naming the key and its line, sorted by line."""
    found: list[tuple[int, str]] = []

    def warn(path: JsonPath, reason: str, subject: str = "") -> None:
        line = (index.locate(path) or (None, None))[0]
        where = f" (line {line})" if line else ""
        subject = subject or f"`{format_path(path)}`"
        found.append((line or 0, f"{subject}{where} {NOT_ACTED_ON}: {reason}"))

    if data.get("schedules"):
        warn(("schedules",), "no run is scheduled")
    if data.get("monitor") is not None:
        warn(("monitor",), "no drift check runs and no run is started on drift")
    jobs = data.get("jobs") if isinstance(data.get("jobs"), dict) else {}
    for name, job in jobs.items():
        if not isinstance(job, dict) or job.get("kind") != "train":
            continue
        warn(
            ("jobs", name, "kind"),
            "the job runs its script like a `script` job; its `model` and `metrics` are not "
            "registered (a build job's are)",
            subject=f"`kind: train` of `{format_path(('jobs', name))}`",
        )
        if job.get("gate") is not None:
            warn(("jobs", name, "gate"), "no model is held back by the gate")
    return [text for _, text in sorted(found, key=lambda item: item[0])]
