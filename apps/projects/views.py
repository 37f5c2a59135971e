from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.choices import Role
from apps.accounts.permissions import has_role, project_role

from . import services
from .selectors import project_list


@login_required
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_object_or_404(project_list(user=request.user), slug=slug)
    return render(
        request,
        "projects/project_detail.html",
        {
            "project": project,
            "runs": project.runs.all()[:15],
            "members": project.memberships.select_related("user").order_by("user__username"),
            "role": project_role(request.user, project.pk),
            "can_trigger": has_role(request.user, project.pk, Role.DEVELOPER),
            "variables": project.variables.select_related("environment"),
            "can_admin": has_role(request.user, project.pk, Role.ADMIN),
            "environments": project.environments.all(),
        },
    )


@login_required
@require_POST
def variable_save(request: HttpRequest, slug: str) -> HttpResponse:
    """Set (or, with ``delete``, remove) a variable from the project page: admins only."""
    project = get_object_or_404(project_list(user=request.user), slug=slug)
    if not has_role(request.user, project.pk, Role.ADMIN):
        raise PermissionDenied("Variables need the admin role in this project.")
    env_name = request.POST.get("environment", "")
    environment = project.environments.filter(name=env_name).first() if env_name else None
    if env_name and environment is None:
        messages.error(request, f"The project has no environment '{env_name}'.")
        return redirect(project)
    key = request.POST.get("key", "").strip()
    if request.POST.get("delete"):
        variable = project.variables.filter(environment=environment, key=key).first()
        if variable is not None:
            services.variable_delete(variable=variable, actor=request.user)
            messages.success(request, f"Variable {key} removed.")
        return redirect(project)
    try:
        services.variable_set(
            project=project,
            environment=environment,
            key=key,
            value=request.POST.get("value", ""),
            is_secret=bool(request.POST.get("is_secret")),
            protected=bool(request.POST.get("protected")),
            actor=request.user,
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(project)
    messages.success(request, f"Variable {key} saved.")
    return redirect(project)
