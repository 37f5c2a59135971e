from django.db.models import QuerySet

from apps.accounts.permissions import restrict_to_visible

from .models import Environment, Project, Variable


def project_list(*, user) -> QuerySet[Project]:
    return restrict_to_visible(Project.objects.all(), user, project_field="")


def environment_list(*, user) -> QuerySet[Environment]:
    return restrict_to_visible(Environment.objects.select_related("project"), user)


def job_variables(
    *, project: Project, environment: Environment | None = None
) -> tuple[dict[str, str], list[str]]:
    """Variables for a job (project-wide) or a deployment (plus the environment's own, which
    win). Returns the mapping and the secret values to mask in logs."""
    rows = list(Variable.objects.filter(project=project, environment__isnull=True))
    if environment is not None:
        rows += list(Variable.objects.filter(project=project, environment=environment))
    values = {v.key: v.value for v in rows}
    secrets = [v.value for v in rows if v.is_secret and v.value]
    return values, secrets
