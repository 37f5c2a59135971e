"""Reads of the training app: the champion a gate compares with, where a model's file is, the
datasets a user may see and the version a job consumes."""

import shutil
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db.models import Count, F, Max, OuterRef, Prefetch, QuerySet, Subquery, Window
from django.db.models.functions import Greatest, RowNumber

from apps.accounts.permissions import restrict_to_visible
from apps.core.digest import file_sha256
from apps.pipelines.artifacts import bundle_store_path
from apps.pipelines.choices import JobKind
from apps.pipelines.models import Artifact, Job
from apps.projects.models import Project

from .metricsfile import is_metric, lower_is_better
from .models import Dataset, DatasetVersion, GateVerdict, MetricPoint, ModelAlias, ModelVersion


class ModelFileError(Exception):
    """A registered model's file cannot be found or is not the file that was registered."""


def champion_for(*, project: Project, model_name: str, environment: str) -> ModelVersion | None:
    """The version of ``model_name`` serving in ``environment`` (its ModelAlias), if any."""
    alias = (
        ModelAlias.objects.select_related("model_version__job")
        .filter(project=project, model_name=model_name, environment__name=environment)
        .first()
    )
    return alias.model_version if alias else None


def _source_job(model_version: ModelVersion) -> Job | None:
    """The job that wrote the model: its own ``job``, or (registered from a push release's
    build) the build job of its run whose model has the registered digest."""
    if model_version.job_id:
        return model_version.job
    if not model_version.pipeline_run_id:
        return None
    for job in Job.objects.filter(run_id=model_version.pipeline_run_id, kind=JobKind.BUILD):
        if ((job.result or {}).get("model") or {}).get("digest") == model_version.artifact_digest:
            return job
    return None


def model_file_place(*, model_version: ModelVersion, dest: Path) -> Path:
    """Copy the registered model's file to ``dest`` and check it is the registered one (its
    digest): from the job's kept artifact, else out of the job's content-addressed bundle."""
    from apps.pipelines.reproducibility import ModelHandoffError, extract_model

    job = _source_job(model_version)
    model = ((job.result or {}).get("model") or {}) if job else {}
    path = model.get("path") or (job.options.get("model") if job else None)
    if job is None or not path:
        raise ModelFileError(f"{model_version} has no recorded model file")
    dest.parent.mkdir(parents=True, exist_ok=True)
    artifact = Artifact.objects.filter(job=job, path=path).first()
    if artifact is not None and artifact.file_path.is_file():
        shutil.copyfile(artifact.file_path, dest)
        got = "sha256:" + file_sha256(dest)
        if got != model_version.artifact_digest:
            dest.unlink(missing_ok=True)
            raise ModelFileError(
                f"the kept file of {model_version} is {got}, "
                f"registered as {model_version.artifact_digest}"
            )
        return dest
    bundle = (job.result or {}).get("bundle_digest")
    if not bundle:
        raise ModelFileError(f"the file of {model_version} was not kept")
    try:
        extract_model(bundle_store_path(bundle), path, dest, digest=model_version.artifact_digest)
    except (ModelHandoffError, ValueError) as exc:
        raise ModelFileError(f"{model_version}: {exc}") from None
    return dest


def dataset_list(*, user) -> QuerySet[Dataset]:
    """Datasets of the projects the user is a member of, each with its number of versions and
    the id of its newest version (``latest_id``; synthetic ones count too)."""
    newest = DatasetVersion.objects.filter(dataset=OuterRef("pk")).order_by("-version")
    return restrict_to_visible(
        Dataset.objects.select_related("project")
        .annotate(version_count=Count("versions"), latest_id=Subquery(newest.values("pk")[:1]))
        .order_by("project_id", "name"),
        user,
    )


def dataset_version_list(*, user) -> QuerySet[DatasetVersion]:
    return restrict_to_visible(
        DatasetVersion.objects.select_related(
            "dataset", "dataset__project", "run", "run__project", "job__run__project"
        ),
        user,
        project_field="dataset__project",
    )


def with_latest(datasets: list[Dataset]) -> list[Dataset]:
    """Attach ``latest`` (a DatasetVersion or None) to datasets from :func:`dataset_list`, in
    one query whatever their number."""
    ids = [d.latest_id for d in datasets if d.latest_id]
    versions = DatasetVersion.objects.in_bulk(ids)
    for dataset in datasets:
        dataset.latest = versions.get(dataset.latest_id)
        if dataset.latest is not None:
            dataset.latest.dataset = dataset  # its project is loaded already
    return datasets


def dataset_newest_real(*, project: Project, name: str) -> DatasetVersion | None:
    """The version a job consuming ``name`` gets: the newest one that is real data (a
    synthetic version is never handed to a run as the real thing)."""
    return (
        DatasetVersion.objects.select_related("dataset")
        .filter(dataset__project=project, dataset__name=name, synthetic=False)
        .order_by("-version")
        .first()
    )


def gate_verdict_of(*, model_version: ModelVersion) -> GateVerdict | None:
    return (
        GateVerdict.objects.select_related("champion", "evaluated_on__dataset", "environment")
        .filter(model_version=model_version)
        .first()
    )


SERIES_POINTS_PER_KEY = 400  # what a chart draws per series (evenly thinned)
COMPARE_MAX = 10
ACROSS_VERSIONS_MAX = 200


def model_version_list(*, user) -> QuerySet[ModelVersion]:
    return restrict_to_visible(
        ModelVersion.objects.select_related("project", "job__run", "gate_verdict"), user
    )


def model_names(*, project) -> list[dict[str, Any]]:
    """One row per model name: how many versions, the newest, when, and its aliases."""
    names = list(
        ModelVersion.objects.filter(project=project)
        .values("name")
        .annotate(versions=Count("id"), latest=Max("version"), updated=Max("created"))
        .order_by("name")
    )
    aliases = defaultdict(list)
    for alias in model_aliases(project=project):
        aliases[alias.model_name].append(alias)
    for row in names:
        row["aliases"] = aliases.get(row["name"], [])
    return names


def model_aliases(*, project) -> list[ModelAlias]:
    return list(
        ModelAlias.objects.filter(project=project)
        .select_related("environment")
        .annotate(version=F("model_version__version"))
        .order_by("model_name", "environment__order")
    )


def model_versions(*, project, name: str = "") -> QuerySet[ModelVersion]:
    """Newest first; a page of it is one query (the list shows metrics and where it serves)."""
    qs = ModelVersion.objects.filter(project=project).select_related(
        "project", "job__run", "gate_verdict"
    )
    # Orders an index serves (the unique (project, name, version), the primary key), so a
    # page is read without sorting every version.
    # The page shows a job's name and its run's number: not their JSON (a run's whole spec,
    # a job's result), which would be read and decoded for every row.
    qs = qs.defer(*LIST_DEFERRED)
    if name:
        return qs.filter(name=name).order_by("-version")
    return qs.order_by("-pk")


LIST_DEFERRED = (
    "params",
    "tags",
    "job__result",
    "job__options",
    "job__script",
    "job__needs",
    "job__error_message",
    "job__run__spec",
    "job__run__params",
    "job__run__commit_message",
    "job__run__error_message",
    "project__description",
)


def aliases_by_version(versions: Iterable[ModelVersion]) -> dict[int, list[ModelAlias]]:
    ids = [v.pk for v in versions]
    out: dict[int, list[ModelAlias]] = defaultdict(list)
    for alias in ModelAlias.objects.filter(model_version_id__in=ids).select_related("environment"):
        out[alias.model_version_id].append(alias)
    return out


def model_version_detail(qs: QuerySet[ModelVersion]) -> QuerySet[ModelVersion]:
    """What the version page and the API's detail show, joined and prefetched."""
    datasets = DatasetVersion.objects.select_related("dataset", "run", "job")
    return qs.select_related(
        "project",
        "job__run",
        "pipeline_run",
        "gate_verdict__champion__project",
        "gate_verdict__environment",
        "gate_verdict__evaluated_on__dataset",
    ).prefetch_related(
        Prefetch("trained_on", queryset=datasets),
        Prefetch("evaluated_on", queryset=datasets),
        Prefetch("aliases", queryset=ModelAlias.objects.select_related("environment")),
    )


def series(*, model_version=None, job_id: int | None = None) -> dict[str, list[tuple]]:
    """The per-step series of a model version (or of a running job), ``{key: [(step, value)]}``,
    each thinned to about ``SERIES_POINTS_PER_KEY`` evenly spaced points in one query (a
    window numbers each key's points; every n-th is kept, and the last)."""
    qs = MetricPoint.objects.all()
    qs = qs.filter(model_version=model_version) if model_version else qs.filter(job_id=job_id)
    qs = (
        qs.annotate(
            rn=Window(RowNumber(), partition_by=[F("key")], order_by=[F("step"), F("id")]),
            total=Window(Count("id"), partition_by=[F("key")]),
        )
        .annotate(every=Greatest((F("total") - 1) / SERIES_POINTS_PER_KEY, 0) + 1)
        .values_list("key", "step", "value", "rn", "total", "every")
    )
    out: dict[str, list[tuple]] = defaultdict(list)
    for key, step, value, rn, total, every in qs:
        if (rn - 1) % every == 0 or rn == total:
            out[key].append((step, value))
    return dict(sorted(out.items()))


@dataclass
class Comparison:
    versions: list[ModelVersion]
    rows: list[dict[str, Any]] = field(default_factory=list)  # name, values, best, lower


def compare(*, versions: Sequence[ModelVersion]) -> Comparison:
    """Metrics side by side: one row per metric any version has, each version's value, and
    which is best (highest, or lowest for a loss, an error, a latency or a size)."""
    names = sorted({k for v in versions for k, x in v.metrics.items() if is_metric(k, x)})
    rows = []
    for name in names:
        values = [v.metrics.get(name) for v in versions]
        numbers = [x for x in values if isinstance(x, int | float) and not isinstance(x, bool)]
        lower = lower_is_better(name)
        best = (min(numbers) if lower else max(numbers)) if len(numbers) > 1 else None
        rows.append(
            {
                "name": name,
                "lower_is_better": lower,
                "cells": [{"value": x, "best": best is not None and x == best} for x in values],
            }
        )
    return Comparison(versions=list(versions), rows=rows)


def metric_across_versions(*, project, name: str, metric: str) -> list[tuple[int, float]]:
    """(version, value) of ``metric`` for the newest ``ACROSS_VERSIONS_MAX`` versions of a
    model, oldest first: one query, only the one metric read out of the JSON."""
    from django.db.models import FloatField
    from django.db.models.fields.json import KeyTextTransform
    from django.db.models.functions import Cast

    rows = (
        ModelVersion.objects.filter(project=project, name=name, metrics__has_key=metric)
        .annotate(value=Cast(KeyTextTransform(metric, "metrics"), FloatField()))
        .order_by("-version")
        .values_list("version", "value")[:ACROSS_VERSIONS_MAX]
    )
    return sorted((v, x) for v, x in rows if x is not None)


def model_artifact(model_version: ModelVersion) -> tuple[str, Any]:
    """Where a version's model file is: ``("file", Path)`` (an artifact its job kept) or
    ``("bundle", (bundle Path, member, digest))`` (inside the build's bundle), or
    ``("", None)``. ``artifact_uri`` is ``bundle:<path>`` or ``[artifact:]<path>``."""
    from apps.pipelines.artifacts import bundle_store_path

    uri = model_version.artifact_uri
    job = model_version.job
    if uri.startswith("bundle:"):
        member = uri.removeprefix("bundle:")
        digest = (job.result or {}).get("bundle_digest") if job else None
        if digest:
            try:
                return "bundle", (bundle_store_path(digest), member, model_version.artifact_digest)
            except ValueError:
                return "", None
        return "", None
    if job is None or not uri:
        return "", None
    artifact = (
        Artifact.objects.select_related("job")
        .filter(job=job, path=uri.removeprefix("artifact:"))
        .first()
    )
    return ("file", artifact.file_path) if artifact else ("", None)
