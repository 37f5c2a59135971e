from django.db.models import QuerySet

from apps.accounts.permissions import restrict_to_visible

from .models import Environment, Project, Variable


def project_list(*, user) -> QuerySet[Project]:
    return restrict_to_visible(Project.objects.all(), user, project_field="")


def environment_list(*, user) -> QuerySet[Environment]:
    return restrict_to_visible(Environment.objects.select_related("project"), user)


def variable_list(*, user) -> QuerySet[Variable]:
    return restrict_to_visible(Variable.objects.select_related("project", "environment"), user)


def job_variables(
    *, project: Project, environment: Environment | None = None, protected: bool = False
) -> tuple[dict[str, str], list[str]]:
    """Variables for a job (project-wide) or a deployment (plus the environment's own, which
    win). ``protected``: include protected variables (a run of a protected ref, or a
    deployment); otherwise they are left out, and a project-wide value of the same key does
    not stand in for a protected environment one. Returns the mapping and the secret values
    to mask in logs (every secret of the project, given or not: a job may print one it read
    elsewhere)."""
    every = list(Variable.objects.filter(project=project))  # one query: values and masks
    rows = [v for v in every if v.environment_id is None]
    if environment is not None:
        rows += [v for v in every if v.environment_id == environment.pk]
    values: dict[str, str] = {}
    for v in rows:  # project-wide first, then the environment's, which win
        if protected or not v.protected:
            values[v.key] = v.value
        else:
            values.pop(v.key, None)
    secrets = sorted({v.value for v in every if v.is_secret and v.value})
    return values, secrets
