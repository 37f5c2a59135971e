"""The monitoring pages: one environment's drift, performance, service health and alerts."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import NoReverseMatch, reverse

from apps.projects.selectors import project_list

from . import selectors


def alerts_url(*, project, environment=None) -> str:
    """The alerts page (H4's ``monitoring:alerts``), filtered to the environment when it can
    be; "" while that page does not exist, so the link shows as plain text."""
    for kwargs in ({"slug": project.slug}, {}):
        try:
            url = reverse("monitoring:alerts", kwargs=kwargs)
        except NoReverseMatch:
            continue
        if environment is not None:
            url += f"?environment={environment.name}"
        return url
    return ""


@login_required
def environment_monitoring(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    project = get_object_or_404(project_list(user=request.user), slug=slug)
    environment = get_object_or_404(project.environments.select_related("project"), name=name)
    data = selectors.environment_monitoring(environment=environment)
    return render(
        request,
        "monitoring/environment_monitoring.html",
        {
            "project": project,
            "environment": environment,
            **data,
            "recent_checks": list(reversed(data["checks"][-10:])),
            "alerts_url": alerts_url(project=project, environment=environment),
            # What the charts draw (monitoring.js reads it from a json_script element).
            "chart_data": {**data["series"], "histograms": data["histograms"]},
        },
    )
