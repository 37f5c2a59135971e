from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.choices import Role
from apps.accounts.permissions import has_role
from apps.core.exceptions import PermissionDeniedError, ServiceError

from . import selectors, services
from .api.filters import RunFilter
from .logs import log_path, read_range
from .models import Job, PipelineRun

TAIL_BYTES = 64 * 1024


@login_required
def run_list(request: HttpRequest) -> HttpResponse:
    """Build history across every project the user can see."""
    filterset = RunFilter(request.GET, queryset=selectors.run_list(user=request.user))
    page = Paginator(filterset.qs, 50).get_page(request.GET.get("page"))
    return render(request, "pipelines/run_list.html", {"filter": filterset, "page": page})


def _run_or_404(request, slug: str, number: int) -> PipelineRun:
    return get_object_or_404(
        selectors.run_list(user=request.user), project__slug=slug, number=number
    )


@login_required
def run_detail(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    run = _run_or_404(request, slug, number)
    context = {
        "run": run,
        "jobs": run.jobs.all(),
        "can_write": has_role(request.user, run.project_id, Role.DEVELOPER),
    }
    if request.htmx:
        return render(request, "pipelines/run_detail.html#jobs", context)
    return render(request, "pipelines/run_detail.html", context)


@login_required
@require_POST
def run_cancel(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    from django.contrib import messages

    run = _run_or_404(request, slug, number)
    try:
        if not has_role(request.user, run.project_id, Role.DEVELOPER):
            raise PermissionDeniedError("Canceling needs the developer role.")
        services.run_cancel(run=run, actor=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect(run)


def _job_or_404(request, slug: str, number: int, job: str) -> Job:
    run = _run_or_404(request, slug, number)
    return get_object_or_404(run.jobs.select_related("run", "run__project"), name=job)


@login_required
def job_detail(request: HttpRequest, slug: str, number: int, job: str) -> HttpResponse:
    job = _job_or_404(request, slug, number, job)
    path = log_path(job.pk, job.run_id)
    size = path.stat().st_size if path.exists() else 0
    start = max(size - TAIL_BYTES, 0)
    data, offset = read_range(path, start, TAIL_BYTES)
    return render(
        request,
        "pipelines/job_detail.html",
        {
            "job": job,
            "run": job.run,
            "log": data.decode("utf-8", "replace"),
            "offset": offset,
            "truncated": start > 0,
        },
    )


@login_required
def job_log_tail(request: HttpRequest, slug: str, number: int, job: str) -> HttpResponse:
    """The log from ``offset`` on, for the live tail (htmx polls this while the job runs)."""
    job = _job_or_404(request, slug, number, job)
    try:
        offset = max(int(request.GET.get("offset", 0)), 0)
    except ValueError:
        offset = 0
    data, next_offset = read_range(log_path(job.pk, job.run_id), offset, TAIL_BYTES * 4)
    return render(
        request,
        "pipelines/job_detail.html#tail",
        {
            "job": job,
            "run": job.run,
            "chunk": data.decode("utf-8", "replace"),
            "offset": next_offset,
        },
    )


@login_required
def job_log_download(request: HttpRequest, slug: str, number: int, job: str) -> HttpResponse:
    job = _job_or_404(request, slug, number, job)
    path = log_path(job.pk, job.run_id)
    if not path.exists():
        return HttpResponse(b"", content_type="text/plain")
    return FileResponse(
        open(path, "rb"),
        as_attachment=True,  # noqa: SIM115
        filename=f"{job.run.project.slug}-{job.run.number}-{job.name}.log",
        content_type="text/plain",
    )
