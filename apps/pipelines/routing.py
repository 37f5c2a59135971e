"""Which Celery queue a job is sent to: by what it asks for (``options["resources"]``) and the
rules in ``settings.JOB_RESOURCE_QUEUES``, else by its kind (``JOB_KIND_QUEUE``). Only workers
started with ``-Q <queue>`` consume a queue, so a rule's queue is "the machines that can".

A rule is a mapping, tried in order; the first that applies wins::

    {"queue": "gpu", "gpu": 1, "max": {"gpu": 4, "memory": "128Gi"}, "kinds": ["train"]}

- ``cpu`` / ``memory`` / ``gpu``: the job must ask for at least this much (all that are named);
- ``max`` (optional): what the queue's workers can give; a job asking for more is not theirs;
- ``kinds`` (optional): only jobs of these kinds.

A job asking for nothing goes to its kind's queue, as before there were rules. A job whose
request no rule takes goes to its kind's queue too — predictable, and the job says so in the first
lines of its log (:func:`route` gives the sentence, the executor writes it); when it asked for a
GPU or matched a rule except for its ``max``, the sentence is a warning that nothing here is
known to satisfy it. See docs/workers.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from .choices import JOB_KIND_QUEUE, JobKind
from .resources import Resources, job_resources, parse_cpu, parse_gpu, parse_memory

_PARSERS = {"cpu": parse_cpu, "memory": parse_memory, "gpu": parse_gpu}
_RULE_KEYS = {"queue", "max", "kinds", *_PARSERS}


@dataclass(frozen=True)
class Rule:
    queue: str
    at_least: dict[str, float]  # dimension → minimum the job must ask
    at_most: dict[str, float]  # dimension → what the queue's workers can give
    kinds: frozenset[str]

    def describe(self) -> str:
        parts = [f"{key} ≥ {_show(key, value)}" for key, value in self.at_least.items()]
        parts += [f"{key} ≤ {_show(key, value)}" for key, value in self.at_most.items()]
        if self.kinds:
            parts.append(f"kind in {', '.join(sorted(self.kinds))}")
        return ", ".join(parts) or "any request"


@dataclass(frozen=True)
class Route:
    queue: str
    rule: int | None = None  # 1-based position of the rule that applied
    note: str = ""  # for the job log; empty when there was nothing to say
    unsatisfied: bool = False


def parse_rules(raw: Any) -> list[Rule]:
    """``JOB_RESOURCE_QUEUES`` checked; a wrong rule is ImproperlyConfigured naming it."""
    if raw in (None, ""):
        return []
    if not isinstance(raw, list | tuple):
        raise ImproperlyConfigured("JOB_RESOURCE_QUEUES must be a list of rules.")
    rules = []
    for position, item in enumerate(raw, start=1):
        where = f"JOB_RESOURCE_QUEUES rule {position}"
        if not isinstance(item, dict):
            raise ImproperlyConfigured(f"{where} must be a mapping.")
        unknown = set(item) - _RULE_KEYS
        if unknown:
            raise ImproperlyConfigured(f"{where} has unknown keys: {', '.join(sorted(unknown))}.")
        queue = item.get("queue")
        if not isinstance(queue, str) or not queue.strip():
            raise ImproperlyConfigured(f"{where} needs a queue name.")
        at_most_raw = item.get("max") or {}
        if not isinstance(at_most_raw, dict) or set(at_most_raw) - set(_PARSERS):
            raise ImproperlyConfigured(f"{where}: max must map cpu, memory or gpu to a limit.")
        kinds = item.get("kinds") or []
        if isinstance(kinds, str) or not all(k in JobKind.values for k in kinds):
            raise ImproperlyConfigured(
                f"{where}: kinds must be a list of job kinds ({', '.join(JobKind.values)})."
            )
        try:
            at_least = {k: _PARSERS[k](item[k]) for k in _PARSERS if k in item}
            at_most = {k: _PARSERS[k](v) for k, v in at_most_raw.items()}
        except ValueError as exc:
            raise ImproperlyConfigured(f"{where}: {exc}.") from None
        rules.append(Rule(queue.strip(), at_least, at_most, frozenset(kinds)))
    return rules


@checks.register(checks.Tags.compatibility)
def check_rules(**_kwargs: Any) -> list[checks.CheckMessage]:
    """``manage.py check`` names a wrong rule (a job cannot be sent while one is wrong)."""
    try:
        parse_rules(settings.JOB_RESOURCE_QUEUES)
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="pipelines.E001")]
    return []


def _asked(resources: Resources) -> dict[str, float]:
    return {
        "cpu": resources.cpu or 0.0,
        "memory": float(resources.memory or 0),
        "gpu": float(resources.gpu),
    }


def route(*, kind: str, options: Any) -> Route:
    """The queue for a job of this kind with these options, and what to tell its log."""
    default = JOB_KIND_QUEUE[kind].value
    resources = job_resources(options)
    ignored = f" (ignored: {'; '.join(resources.problems)})" if resources.problems else ""
    if not resources.asked:
        note = f"resources{ignored}; sent to the {default} queue" if ignored else ""
        return Route(default, note=note)
    asked = _asked(resources)
    held_back = False  # a rule wanted this job but its workers cannot give enough
    for position, rule in enumerate(parse_rules(settings.JOB_RESOURCE_QUEUES), start=1):
        if rule.kinds and kind not in rule.kinds:
            continue
        if not all(asked[key] >= value for key, value in rule.at_least.items()):
            continue
        if not all(asked[key] <= value for key, value in rule.at_most.items()):
            held_back = True
            continue
        note = (
            f"resources {resources.describe()}{ignored}: queue {rule.queue} "
            f"(JOB_RESOURCE_QUEUES rule {position}: {rule.describe()})"
        )
        return Route(rule.queue, rule=position, note=note)
    if held_back or resources.gpu:
        note = (
            f"warning: no JOB_RESOURCE_QUEUES rule takes resources {resources.describe()}"
            f"{ignored}; sent to the {default} queue, whose workers may not have them"
        )
        return Route(default, note=note, unsatisfied=True)
    note = f"resources {resources.describe()}{ignored}: no rule for them; the {default} queue"
    return Route(default, note=note)


def job_queue(job: Any) -> str:
    """The queue ``_send_job`` sends the job's message to."""
    return route(kind=job.kind, options=job.options).queue


def _show(key: str, value: float) -> str:
    if key == "memory":
        for unit, size in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
            if value >= size and value % size == 0:
                return f"{int(value // size)}{unit}"
        return f"{int(value)}"
    return f"{value:g}"
