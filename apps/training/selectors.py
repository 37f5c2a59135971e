"""Reads of the training app: the champion a gate compares with, where a model's file is, the
datasets a user may see and the version a job consumes."""

import hashlib
import shutil
from pathlib import Path

from django.db.models import Count, OuterRef, QuerySet, Subquery

from apps.accounts.permissions import restrict_to_visible
from apps.pipelines.artifacts import bundle_store_path
from apps.pipelines.choices import JobKind
from apps.pipelines.models import Artifact, Job
from apps.projects.models import Project

from .models import Dataset, DatasetVersion, GateVerdict, ModelAlias, ModelVersion


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


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


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
        got = _sha256(dest)
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
