"""Dataset pages: a project's datasets, one dataset's versions, a version's file."""

import tempfile
from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from apps.projects.selectors import project_list

from . import selectors
from .charts import line_chart
from .models import ModelVersion


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


PAGE_SIZE = 50


def _project_or_404(request, slug: str):
    return get_object_or_404(project_list(user=request.user), slug=slug)


def _version_or_404(request, slug: str, name: str, version: int) -> ModelVersion:
    return get_object_or_404(
        selectors.model_version_detail(selectors.model_version_list(user=request.user)),
        project__slug=slug,
        name=name,
        version=version,
    )


@login_required
def model_list(request: HttpRequest, slug: str) -> HttpResponse:
    """Per model name: its versions (newest first, paginated) and where each serves."""
    project = _project_or_404(request, slug)
    name = request.GET.get("name", "")[:100]
    names = selectors.model_names(project=project)
    paginator = Paginator(selectors.model_versions(project=project, name=name), PAGE_SIZE)
    # The per-name counts are in hand: no COUNT(*) over every version for the page numbers.
    paginator.count = sum(n["versions"] for n in names if not name or n["name"] == name)
    page = paginator.get_page(request.GET.get("page"))
    aliases = selectors.aliases_by_version(page.object_list)
    rows = [{"version": v, "aliases": aliases.get(v.pk, [])} for v in page.object_list]
    return render(
        request,
        "training/model_list.html",
        {
            "project": project,
            "names": names,
            "name": name,
            "page": page,
            "rows": rows,
        },
    )


@login_required
def model_version_detail(request: HttpRequest, slug: str, name: str, version: int):
    mv = _version_or_404(request, slug, name, version)
    series = selectors.series(model_version=mv)
    return render(
        request,
        "training/model_version.html",
        {
            "project": mv.project,
            "mv": mv,
            "gate": getattr(mv, "gate_verdict", None),
            "chart": line_chart(series, title=f"{mv} series") if series else "",
            "series_keys": list(series),
            "artifact": selectors.model_artifact(mv)[0],
        },
    )


def _ids(raw: str) -> list[int]:
    out = []
    for part in raw.replace(" ", ",").split(","):
        if part.isdigit() and int(part) not in out:
            out.append(int(part))
    return out[: selectors.COMPARE_MAX]


@login_required
def model_compare(request: HttpRequest, slug: str) -> HttpResponse:
    """2+ versions (``?ids=1,2`` or repeated ``ids``): metrics side by side, the best
    highlighted, and one metric (``?metric=``) charted across the versions of the model."""
    project = _project_or_404(request, slug)
    ids = _ids(",".join(request.GET.getlist("ids")))
    by_id = {
        v.pk: v for v in selectors.model_versions(project=project).filter(pk__in=ids).defer(None)
    }
    versions = [by_id[i] for i in ids if i in by_id]
    comparison = selectors.compare(versions=versions)
    metrics = [r["name"] for r in comparison.rows]
    metric = request.GET.get("metric") or (metrics[0] if metrics else "")
    chart = ""
    if metric and versions:
        name = versions[0].name
        across = selectors.metric_across_versions(project=project, name=name, metric=metric)
        chosen = {v.version for v in versions if v.name == name}
        chart = line_chart(
            {f"{name} {metric}": [(float(v), x) for v, x in across]},
            title=f"{metric} across the versions of {name}",
            x_label="version",
            x_ticks={float(v): f"v{v}" for v, _x in across if v in chosen},
        )
    return render(
        request,
        "training/model_compare.html",
        {
            "project": project,
            "comparison": comparison,
            "metrics": metrics,
            "metric": metric,
            "chart": chart,
            "ids": ",".join(str(v.pk) for v in versions),
        },
    )


def artifact_response(mv: ModelVersion) -> FileResponse:
    """The model file of a version (permission checked by the caller): an artifact its job
    kept, or the member of the build's bundle (its digest checked as it is copied out)."""
    from apps.pipelines.reproducibility import ModelHandoffError, extract_model

    where, what = selectors.model_artifact(mv)
    if where == "file" and what.is_file():
        return FileResponse(open(what, "rb"), as_attachment=True, filename=what.name)  # noqa: SIM115
    if where == "bundle" and what[0].is_file():
        bundle, member, digest = what
        tmp = tempfile.TemporaryFile()  # noqa: SIM115 - FileResponse closes it
        with tempfile.TemporaryDirectory() as folder:
            dest = Path(folder) / "model"
            try:
                extract_model(bundle, member, dest, digest=digest)
            except ModelHandoffError as exc:
                raise Http404(str(exc)) from None
            with open(dest, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    tmp.write(chunk)
        tmp.seek(0)
        return FileResponse(tmp, as_attachment=True, filename=Path(member).name)
    raise Http404("This model version's file is not kept.")


@login_required
def model_artifact(request: HttpRequest, slug: str, name: str, version: int):
    return artifact_response(_version_or_404(request, slug, name, version))


@login_required
def job_series(request: HttpRequest, slug: str, number: int, job: str) -> HttpResponse:
    """The job page's series chart (htmx polls it while the job runs)."""
    from apps.pipelines.selectors import run_list

    run = get_object_or_404(run_list(user=request.user), project__slug=slug, number=number)
    job_obj = get_object_or_404(run.jobs.select_related("run__project"), name=job)
    return render(request, "training/_job_series.html", job_series_context(job_obj))


def job_series_context(job) -> dict:
    series = selectors.series(job_id=job.pk)
    return {
        # A train job always shows it (live while it runs); another job once it logged points.
        "shown": bool(series) or job.kind == "train",
        "job": job,
        "chart": line_chart(series, title=f"{job.name} series") if series else "",
        "live": not job.is_terminal,
    }
