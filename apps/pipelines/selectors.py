from django.db.models import QuerySet

from apps.accounts.permissions import restrict_to_visible

from .models import Job, PipelineRun


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
