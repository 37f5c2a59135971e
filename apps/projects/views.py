from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from apps.accounts.choices import Role
from apps.accounts.permissions import has_role, project_role

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
        },
    )
