from django.db.models import QuerySet

from apps.accounts.permissions import restrict_to_visible

from .models import Job, PipelineRun


def run_list(*, user) -> QuerySet[PipelineRun]:
    return restrict_to_visible(PipelineRun.objects.select_related("project", "created_by"), user)


def job_list(*, user) -> QuerySet[Job]:
    return restrict_to_visible(
        Job.objects.select_related("run", "run__project"), user, project_field="run__project"
    )
