from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils.text import slugify

from apps.accounts.choices import Role
from apps.accounts.models import Membership
from apps.accounts.permissions import project_roles_forget
from apps.core.exceptions import PermissionDeniedError, ServiceError
from apps.core.services import audit_log

from .choices import DEFAULT_ENVIRONMENTS
from .models import Environment, FreezeWindow, Project, Variable
from .repositories import repository_url_check
from .spec.parser import duration_seconds


@transaction.atomic
def project_create(
    *, name: str, actor: Any, slug: str = "", with_default_environments: bool = True, **fields
) -> Project:
    """Create a project, make its creator admin and give it dev → staging → production."""
    slug = slug or slugify(name)
    if not slug:
        raise ServiceError("A project needs a name made of letters or digits.")
    if Project.objects.filter(slug=slug).exists():
        raise ServiceError(f"A project with the slug '{slug}' exists already.", code="duplicate")
    repository_url_check(fields.get("repository_url", ""))  # a ValidationError: a 400
    user = actor if getattr(actor, "is_authenticated", False) else None
    project = Project.objects.create(name=name, slug=slug, created_by=user, **fields)
    if user is not None:
        Membership.objects.create(user=user, project=project, role=Role.ADMIN)
        project_roles_forget(user)
    if with_default_environments:
        for order, (env_name, auto, approvals) in enumerate(DEFAULT_ENVIRONMENTS):
            Environment.objects.create(
                project=project,
                name=env_name,
                order=order,
                auto_deploy=auto,
                required_approvals=approvals,
            )
    audit_log(actor=actor, action="project.created", obj=project, project_id=project.pk)
    return project


def _update(
    instance: Any, fields: dict[str, Any], *, actor: Any, action: str, project_id: int
) -> None:
    """Validate and save the changed ``fields`` of a project or an environment, and audit which
    fields changed (the caller's transaction holds both)."""
    for name, value in fields.items():
        setattr(instance, name, value)
    instance.full_clean(exclude=[f.name for f in instance._meta.fields if f.name not in fields])
    instance.save()
    audit_log(
        actor=actor,
        action=action,
        obj=instance,
        project_id=project_id,
        data={"fields": sorted(fields)},
    )


@transaction.atomic
def project_update(*, project: Project, actor: Any, **fields: Any) -> Project:
    """Change a project's settings (validated input from the API or a form) and audit which."""
    _update(project, fields, actor=actor, action="project.updated", project_id=project.pk)
    return project


@transaction.atomic
def environment_create(*, project: Project, name: str, actor: Any, **fields: Any) -> Environment:
    environment = Environment(project=project, name=name, **fields)
    environment.full_clean()
    environment.save()
    audit_log(actor=actor, action="environment.created", obj=environment, project_id=project.pk)
    return environment


@transaction.atomic
def environment_update(*, environment: Environment, actor: Any, **fields: Any) -> Environment:
    """Change an environment's rules. It stays in its project."""
    project = fields.pop("project", environment.project)
    if project.pk != environment.project_id:
        raise PermissionDeniedError("An environment cannot move to another project.")
    _update(
        environment,
        fields,
        actor=actor,
        action="environment.updated",
        project_id=environment.project_id,
    )
    return environment


@transaction.atomic
def environment_serving_commit_set(
    *, environment: Environment, commit_sha: str, actor: Any
) -> Environment:
    """Record the commit of the release now serving ``environment`` (the deployment that
    switched to it calls this): the environment's scheduled pipelines run that commit's
    definitions. Only this column is written, so a settings change made meanwhile stays."""
    if environment.pipeline_commit_sha == commit_sha:
        return environment
    previous = environment.pipeline_commit_sha
    Environment.objects.filter(pk=environment.pk).update(pipeline_commit_sha=commit_sha)
    environment.pipeline_commit_sha = commit_sha
    audit_log(
        actor=actor,
        action="environment.pipeline_commit_set",
        obj=environment,
        project_id=environment.project_id,
        data={"from": previous, "to": commit_sha},
    )
    return environment


@transaction.atomic
def membership_set(*, project: Project, user, role: str, actor: Any) -> Membership:
    membership, created = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    project_roles_forget(user)
    audit_log(
        actor=actor,
        action="membership.set",
        obj=membership,
        project_id=project.pk,
        data={"user": user.get_username(), "role": role, "created": created},
    )
    return membership


@transaction.atomic
def variable_set(
    *,
    project: Project,
    key: str,
    value: str,
    actor: Any,
    environment: Environment | None = None,
    is_secret: bool = False,
    protected: bool = False,
) -> Variable:
    if environment is not None and environment.project_id != project.pk:
        raise PermissionDeniedError("The environment belongs to another project.")
    Variable(project=project, environment=environment, key=key).clean_fields(
        exclude=["value", "project", "environment", "is_secret", "protected"]
    )
    variable, created = Variable.objects.update_or_create(
        project=project,
        environment=environment,
        key=key,
        defaults={"value": value, "is_secret": is_secret, "protected": protected},
    )
    # The value itself never goes into the audit log.
    audit_log(
        actor=actor,
        action="variable.set",
        obj=variable,
        project_id=project.pk,
        data={
            "key": key,
            "scope": environment.name if environment is not None else "*",
            "secret": is_secret,
            "protected": protected,
            "created": created,
        },
    )
    return variable


@transaction.atomic
def variable_delete(*, variable: Variable, actor: Any) -> None:
    audit_log(
        actor=actor,
        action="variable.deleted",
        obj=variable,
        project_id=variable.project_id,
        data={"key": variable.key, "scope": str(variable).split(":")[1]},
    )
    variable.delete()


@transaction.atomic
def freeze_window_add(
    *, environment: Environment, cron: str, duration: timedelta, actor: Any, reason: str = ""
) -> FreezeWindow:
    window = FreezeWindow(environment=environment, cron=cron, duration=duration, reason=reason)
    window.full_clean()
    window.save()
    audit_log(
        actor=actor,
        action="freeze_window.added",
        obj=window,
        project_id=environment.project_id,
        data={"cron": cron, "reason": reason},
    )
    return window


@transaction.atomic
def freeze_window_remove(*, window: FreezeWindow, actor: Any) -> None:
    audit_log(
        actor=actor,
        action="freeze_window.removed",
        obj=window,
        project_id=window.environment.project_id,
        data={"cron": window.cron, "reason": window.reason},
    )
    window.delete()


@transaction.atomic
def environments_from_spec(*, project: Project, spec: dict, actor: Any) -> list[Environment]:
    """Create the environments a pipeline spec names that the project does not have yet, in
    the spec's order after the existing ones, with the spec's rules.

    An existing environment is never changed: its rules belong to the project's admins, and a
    commit must not be able to lower its own approval bar.
    """
    wanted = (spec or {}).get("environments") or {}
    existing = set(project.environments.values_list("name", flat=True))
    last = project.environments.order_by("-order").values_list("order", flat=True).first()
    order = -1 if last is None else last
    created = []
    for name, rules in wanted.items():
        if name in existing:
            continue
        order += 1
        ttl = rules.get("approval_ttl_hours")
        watch = rules.get("watch")
        environment = Environment.objects.create(
            project=project,
            name=name,
            order=order,
            auto_deploy=bool(rules.get("auto_deploy")),
            required_approvals=int(rules.get("required_approvals") or 0),
            allow_self_approval=bool(rules.get("allow_self_approval")),
            **({"approval_ttl": timedelta(hours=ttl)} if ttl else {}),
            rollback_on=list(rules.get("rollback_on") or []),
            **({"rollback_watch": timedelta(seconds=duration_seconds(watch))} if watch else {}),
        )
        audit_log(
            actor=actor,
            action="environment.created",
            obj=environment,
            project_id=project.pk,
            reason="Named in .controlplane.yml",
        )
        created.append(environment)
    return created
