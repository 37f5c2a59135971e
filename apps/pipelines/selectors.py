from typing import TYPE_CHECKING

from django.db.models import QuerySet

from apps.accounts.permissions import restrict_to_visible

from .models import Job, PipelineRun

if TYPE_CHECKING:
    from apps.projects.spec import PipelineSpec


def run_list(*, user) -> QuerySet[PipelineRun]:
    return restrict_to_visible(PipelineRun.objects.select_related("project", "created_by"), user)


def job_list(*, user) -> QuerySet[Job]:
    return restrict_to_visible(
        Job.objects.select_related("run", "run__project"), user, project_field="run__project"
    )


def job_stages(jobs: list[Job]) -> list[list[Job]]:
    """Jobs grouped in columns for the run's graph: a job sits one column after the last of
    the jobs it needs."""
    by_name = {j.name: j for j in jobs}
    depth: dict[str, int] = {}

    def level(name: str, seen: frozenset = frozenset()) -> int:
        if name not in depth:
            needs = [n for n in by_name[name].needs if n in by_name and n not in seen]
            depth[name] = 1 + max((level(n, seen | {name}) for n in needs), default=-1)
        return depth[name]

    stages: list[list[Job]] = []
    for job in jobs:
        d = level(job.name)
        while len(stages) <= d:
            stages.append([])
        stages[d].append(job)
    return stages


def pipelines_spec(*, project) -> "PipelineSpec | None":
    """The spec of the latest prepared run of the default branch (what the schedules were
    synced from): the pipelines page reads it without asking Git."""
    from apps.projects.spec import PipelineSpec

    stored = (
        PipelineRun.objects.filter(project=project, ref=project.default_branch, environment=None)
        .exclude(spec={})
        .order_by("-number")
        .values_list("spec", flat=True)
        .first()
    )
    return PipelineSpec.from_dict(stored) if stored else None


def pipelines_overview(*, project, recent: int = 8, rate_over: int = 20) -> list[dict]:
    """Per pipeline of the spec ("" = the push pipeline): its parameters, its schedules with
    their next five fire times, its last runs and the success rate of its last finished ones."""
    from .choices import RUN_TERMINAL, RunStatus
    from .models import Schedule
    from .schedules import next_fires

    spec = pipelines_spec(project=project)
    names = [""] + list(spec.pipelines) if spec else []
    schedules = list(
        Schedule.objects.filter(project=project).select_related("environment", "last_run")
    )
    overview = []
    for name in names:
        named = spec.pipelines.get(name) if name else None
        runs = PipelineRun.objects.filter(project=project, pipeline=name).select_related(
            "project", "environment", "created_by"
        )
        ended = list(
            runs.filter(status__in=RUN_TERMINAL).values_list("status", flat=True)[:rate_over]
        )
        succeeded = sum(1 for s in ended if s == RunStatus.SUCCEEDED)
        overview.append(
            {
                "name": name,
                "spec": named,
                "params": list(named.params.values()) if named else [],
                "schedules": [
                    {"schedule": s, "next": next_fires(s)} for s in schedules if s.pipeline == name
                ],
                "runs": list(runs[:recent]),
                "success_rate": round(100 * succeeded / len(ended)) if ended else None,
                "ended": len(ended),
            }
        )
    return overview
