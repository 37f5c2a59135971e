"""Dataset pages: a project's datasets, one dataset's versions, a version's file."""

from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from apps.projects.selectors import project_list

from . import selectors


@login_required
def dataset_list(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_object_or_404(project_list(user=request.user), slug=slug)
    page = Paginator(
        selectors.dataset_list(user=request.user).filter(project=project).order_by("name"), 50
    ).get_page(request.GET.get("page"))
    datasets = selectors.with_latest(list(page.object_list))
    return render(
        request,
        "training/dataset_list.html",
        {"project": project, "datasets": datasets, "page": page},
    )


@login_required
def dataset_detail(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    dataset = get_object_or_404(
        selectors.dataset_list(user=request.user), project__slug=slug, name=name
    )
    versions = selectors.dataset_version_list(user=request.user).filter(dataset=dataset)
    page = Paginator(versions.order_by("-version"), 25).get_page(request.GET.get("page"))
    return render(
        request,
        "training/dataset_detail.html",
        {"project": dataset.project, "dataset": dataset, "page": page},
    )


@login_required
def dataset_download(request: HttpRequest, slug: str, name: str, version: int) -> HttpResponse:
    found = get_object_or_404(
        selectors.dataset_version_list(user=request.user),
        dataset__project__slug=slug,
        dataset__name=name,
        version=version,
    )
    path = Path(found.path)
    if not path.is_file():
        raise Http404("The stored file of this version is gone.")
    return FileResponse(
        open(path, "rb"),  # noqa: SIM115
        as_attachment=True,
        filename=f"{name}-v{version}{path.suffix}",
    )
