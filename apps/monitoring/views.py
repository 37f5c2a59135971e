"""The monitoring pages: one environment's drift, performance, service health and alerts."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import NoReverseMatch, reverse

from apps.accounts.choices import Role
from apps.accounts.permissions import has_role
from apps.projects.selectors import project_list

from . import selectors
from .alert_selectors import with_current_silences
from .choices import AlertStatus


def _reverse_or_blank(name: str, **kwargs) -> str:
    try:
        return reverse(name, kwargs=kwargs)
    except NoReverseMatch:
        return ""


def alerts_url(*, project, environment=None) -> str:
    """The project's alerts page (docs/alerts.md), every status, filtered to the environment;
    "" if it is not installed, so the page shows plain text instead of a link."""
    url = _reverse_or_blank("alerts:list", slug=project.slug)
    if url and environment is not None:
        url += f"?environment={environment.pk}&status="
    return url


def with_alert_links(alerts: list, *, project, may_act: bool) -> None:
    """Each alert's page, the silence holding it back now (docs/alerts.md) and, for a firing
    unsilenced one and a developer, the silence form prefilled from it."""
    with_current_silences(alerts)  # one query: the active silences
    silence = _reverse_or_blank("alerts:silence-new", slug=project.slug) if may_act else ""
    for alert in alerts:
        alert.detail_url = _reverse_or_blank("alerts:detail", slug=project.slug, pk=alert.pk)
        may_silence = alert.status == AlertStatus.FIRING and alert.current_silence is None
        alert.silence_url = f"{silence}?alert={alert.pk}" if silence and may_silence else ""


def _shown_check(request: HttpRequest, latest) -> int:
    """The check the page was opened on: ``?shown=`` of the page's own poll, else the latest."""
    try:
        return int(request.GET["shown"])
    except (KeyError, ValueError):
        return latest.pk if latest is not None else 0


@login_required
def environment_monitoring(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    project = get_object_or_404(project_list(user=request.user), slug=slug)
    environment = get_object_or_404(project.environments.select_related("project"), name=name)
    data = selectors.environment_monitoring(environment=environment)
    with_alert_links(
        data["alerts"],
        project=project,
        may_act=has_role(request.user, project.pk, Role.DEVELOPER),
    )
    return render(
        request,
        "monitoring/environment_monitoring.html",
        {
            "project": project,
            "environment": environment,
            **data,
            "recent_checks": list(reversed(data["checks"][-10:])),
            "alerts_url": alerts_url(project=project, environment=environment),
            # The page polls itself (``?shown=<the check it was opened on>``): a newer check
            # is announced, not swapped into charts drawn for the old one.
            "shown_check": (shown := _shown_check(request, data["latest"])),
            "newer_check": data["latest"] is not None and data["latest"].pk != shown,
            # What the charts draw (monitoring.js reads it from a json_script element).
            "chart_data": {**data["series"], "histograms": data["histograms"]},
        },
    )
