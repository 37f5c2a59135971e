from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.choices import Role
from apps.accounts.permissions import has_role
from apps.core.exceptions import PermissionDeniedError, ServiceError
from apps.core.paging import PARAMS as PAGE_PARAMS
from apps.core.paging import CursorError, keyset_page

from . import git, selectors, services
from .api.filters import RunFilter
from .attempts import job_attempts
from .choices import Trigger
from .commits import Commit
from .logs import OffsetError, log_html, log_offset, log_path, log_size, read_range
from .models import Job, PipelineRun
from .triggers import pipeline_start

TAIL_BYTES = 64 * 1024
HISTORY_PAGE_SIZE = 50


@login_required
def run_list(request: HttpRequest) -> HttpResponse:
    """Build history across every project the user can see, newest first, a keyset page at a
    time (the same few rows read on the first page as on the last, at any number of runs)."""
    filterset = RunFilter(request.GET, queryset=selectors.run_list(user=request.user))
    try:
        page = keyset_page(filterset.qs, request.GET, size=HISTORY_PAGE_SIZE)
    except CursorError as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain")
    query = request.GET.copy()
    for name in (*PAGE_PARAMS, "page"):
        query.pop(name, None)
    context = {"filter": filterset, "page": page, "query": query.urlencode()}
    return render(request, "pipelines/run_list.html", context)


def _run_or_404(request, slug: str, number: int) -> PipelineRun:
    return get_object_or_404(
        selectors.run_list(user=request.user), project__slug=slug, number=number
    )


@login_required
def run_detail(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    run = _run_or_404(request, slug, number)
    jobs = list(run.jobs.prefetch_related("artifacts"))
    context = {
        "run": run,
        "jobs": jobs,
        "stages": selectors.job_stages(jobs),
        "can_write": has_role(request.user, run.project_id, Role.DEVELOPER),
    }
    if request.htmx:
        return render(request, "pipelines/run_detail.html#jobs", context)
    return render(request, "pipelines/run_detail.html", context)


def _as_developer(request, project_id: int, what: str) -> None:
    if not has_role(request.user, project_id, Role.DEVELOPER):
        raise PermissionDeniedError(f"{what} needs the developer role in this project.")


@login_required
@require_POST
def run_cancel(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    run = _run_or_404(request, slug, number)
    try:
        _as_developer(request, run.project_id, "Canceling a run")
        services.run_cancel(run=run, actor=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect(run)


@login_required
@require_POST
def run_rerun(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    run = _run_or_404(request, slug, number)
    try:
        _as_developer(request, run.project_id, "Re-running a pipeline")
        new = services.run_rerun(run=run, actor=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect(run)
    return redirect(new)


@login_required
@require_POST
def run_trigger(request: HttpRequest, slug: str) -> HttpResponse:
    """Run the pipeline of a branch, tag or commit by hand."""
    from apps.projects.selectors import project_list

    project = get_object_or_404(project_list(user=request.user), slug=slug)
    ref = request.POST.get("ref", "").strip()[:255]
    sha = request.POST.get("commit_sha", "").strip().lower()[:64]
    try:
        _as_developer(request, project.pk, "Starting a pipeline")
        if sha and not git.SHA_RE.match(sha):
            raise ServiceError("A commit is 7 to 64 hexadecimal characters.")
        run = services.run_request(
            project=project,
            actor=request.user,
            trigger=Trigger.MANUAL,
            commit=Commit(sha=sha, ref=ref or ("" if sha else project.default_branch)),
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect(project)
    return redirect(run)


@login_required
@require_POST
def job_retry(request: HttpRequest, slug: str, number: int, job: str) -> HttpResponse:
    job = _job_or_404(request, slug, number, job)
    try:
        _as_developer(request, job.run.project_id, "Retrying a job")
        services.job_retry(job=job, actor=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect(job.run)


@login_required
def artifact_download(
    request: HttpRequest, slug: str, number: int, job: str, path: str
) -> HttpResponse:
    job = _job_or_404(request, slug, number, job)
    artifact = get_object_or_404(job.artifacts, path=path)
    if not artifact.file_path.is_file():
        raise Http404("The artifact's file is gone.")
    return FileResponse(
        open(artifact.file_path, "rb"),
        as_attachment=True,  # noqa: SIM115
        filename=Path(artifact.path).name,
    )


def _job_or_404(request, slug: str, number: int, job: str) -> Job:
    run = _run_or_404(request, slug, number)
    return get_object_or_404(run.jobs.select_related("run", "run__project"), name=job)


@login_required
def job_detail(request: HttpRequest, slug: str, number: int, job: str) -> HttpResponse:
    job = _job_or_404(request, slug, number, job)
    path = log_path(job.pk, job.run_id)
    start = _line_start(path, max(log_size(path) - TAIL_BYTES, 0))
    log = log_html(path, start, limit=TAIL_BYTES, final=job.is_terminal)
    return render(
        request,
        "pipelines/job_detail.html",
        {
            "job": job,
            "run": job.run,
            "log": log.html,
            "offset": log.offset,
            "sgr": log.sgr,
            "truncated": start > 0,
            "artifacts": job.artifacts.all(),
            "attempts": job_attempts(job),
        },
    )


def _line_start(path, offset: int) -> int:
    """The start of the first whole line at or after ``offset`` (the end of a long log is
    shown from a line, not from the middle of a character or an escape sequence)."""
    if offset == 0:
        return 0
    data, _ = read_range(path, offset - 1, 4096)
    nl = data.find(b"\n")
    return offset + nl if nl >= 0 else offset


@login_required
def job_log_tail(request: HttpRequest, slug: str, number: int, job: str) -> HttpResponse:
    """The log from ``offset`` on, for the live tail (htmx polls this while the job runs).

    Each answer carries the next offset and the style open there (``sgr``), so a colour or
    an escape sequence that spans two polls renders as it does in the whole log."""
    job = _job_or_404(request, slug, number, job)
    try:
        offset = log_offset(request.GET.get("offset"), log_size(log_path(job.pk, job.run_id)))
    except OffsetError as exc:
        return HttpResponse(str(exc), status=exc.status, content_type="text/plain")
    terminal = job.is_terminal  # read before the log: a finished job's log is complete
    log = log_html(
        log_path(job.pk, job.run_id),
        offset,
        sgr=request.GET.get("sgr", "")[:128],
        limit=TAIL_BYTES * 4,
        final=terminal,
    )
    context = {
        "job": job,
        "run": job.run,
        "chunk": log.html,
        "offset": log.offset,
        "sgr": log.sgr,
        # Keep polling while the job runs, and until a finished job's log is all shown.
        "more": not (terminal and log.eof),
        "oob": True,
    }
    tail = render(request, "pipelines/job_detail.html#tail", context)
    if not context["more"]:
        # The job is over: refresh its status card too (an out-of-band swap).
        context["attempts"] = job_attempts(job)
        summary = render(request, "pipelines/job_detail.html#summary", context)
        tail.content += summary.content
    return tail


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


def _project_or_404(request, slug: str):
    from apps.projects.selectors import project_list

    return get_object_or_404(project_list(user=request.user), slug=slug)


def _pipelines_page(request, project, *, errors=None, given=None, status=200) -> HttpResponse:
    context = {
        "project": project,
        "pipelines": selectors.pipelines_overview(project=project),
        "environments": list(project.environments.all()),
        "can_write": has_role(request.user, project.pk, Role.DEVELOPER),
        "errors": errors or {},
        "given": given or {},
    }
    return render(request, "pipelines/pipelines.html", context, status=status)


@login_required
def pipeline_list(request: HttpRequest, slug: str) -> HttpResponse:
    """The project's named pipelines: a form of each one's parameters, its schedules and
    their next fire times, its last runs and success rate."""
    return _pipelines_page(request, _project_or_404(request, slug))


@login_required
@require_POST
def pipeline_run(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    """Start a named pipeline from its form (parameters typed as the spec declares them)."""
    from apps.projects.spec import ParamError

    project = _project_or_404(request, slug)
    params = {
        key[len("param-") :]: request.POST.getlist(key)[-1]  # a checkbox after its hidden "false"
        for key in request.POST
        if key.startswith("param-")
    }
    env_name = request.POST.get("environment", "")
    try:
        _as_developer(request, project.pk, "Starting a pipeline")
        environment = project.environments.filter(name=env_name).first() if env_name else None
        run = pipeline_start(
            project=project,
            pipeline=name,
            actor=request.user,
            trigger=Trigger.MANUAL,
            params=params,
            reason=f"by {request.user.get_username()} from the pipelines page",
            environment=environment,
        )
    except ParamError as exc:
        errors = {name: {exc.name: exc.message}}
        return _pipelines_page(request, project, errors=errors, given={name: params}, status=400)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("pipelines:pipelines", slug=project.slug)
    if run is None:
        why = f"Not started: a run of '{name}' is still active (concurrency: skip)."
        messages.info(request, why)
        return redirect("pipelines:pipelines", slug=project.slug)
    return redirect(run)


@login_required
@require_POST
def schedule_pause(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """Pause (``paused=1``) or resume (``paused=0``) a schedule; htmx swaps its row."""
    from .models import Schedule
    from .schedules import next_fires
    from .schedules import schedule_pause as pause

    project = _project_or_404(request, slug)
    rows = Schedule.objects.select_related("environment")
    schedule = get_object_or_404(rows, project=project, pk=pk)
    try:
        _as_developer(request, project.pk, "Pausing a schedule")
        paused = request.POST.get("paused") == "1"
        schedule = pause(schedule=schedule, actor=request.user, paused=paused)
    except ServiceError as exc:
        messages.error(request, exc.message)
    if request.htmx:
        context = {
            "project": project,
            "item": {"schedule": schedule, "next": next_fires(schedule)},
            "can_write": has_role(request.user, project.pk, Role.DEVELOPER),
        }
        return render(request, "pipelines/pipelines.html#schedule_row", context)
    return redirect("pipelines:pipelines", slug=project.slug)
