"""The lineage of one model version, from the commit it was trained at to the environments it
serves in: commit → dataset versions (trained on, evaluated on, each with the run and job
that produced it) → the run and job that trained it → the model → its gate verdict → the
releases carrying it → their images → where it serves (its aliases).

It lives in releases because releases and deployments are releases' own; training's pages
link to it by URL name. A fixed number of queries whatever the registry's size."""

from typing import Any

from django.db.models import Prefetch

from apps.training.models import ModelVersion

from .choices import DeploymentStatus
from .models import Deployment, Release


def _dataset(d) -> dict[str, Any]:
    return {
        "id": d.pk,
        "dataset": d.dataset.name,
        "version": d.version,
        "fingerprint": d.fingerprint,
        "rows": d.rows,
        "synthetic": d.synthetic,
        "run": d.run.number if d.run_id else None,
        "job": d.job.name if d.job_id else None,
    }


def model_lineage(*, model_version: ModelVersion) -> dict[str, Any]:
    """``model_version`` as loaded by ``training.selectors.model_version_detail`` (datasets,
    gate, aliases joined or prefetched)."""
    mv = model_version
    job, run = mv.job, (mv.job.run if mv.job_id else mv.pipeline_run)
    releases = list(
        Release.objects.filter(model_version=mv)
        .order_by("created", "pk")
        .prefetch_related(
            Prefetch(
                "deployments",
                queryset=Deployment.objects.filter(status=DeploymentStatus.SUCCEEDED)
                .select_related("environment")
                .order_by("finished_at", "pk"),
                to_attr="succeeded_deployments",
            )
        )
    )
    gate = getattr(mv, "gate_verdict", None)
    return {
        "commit": {"sha": mv.commit_sha},
        "datasets": {
            "trained_on": [_dataset(d) for d in mv.trained_on.all()],
            "evaluated_on": [_dataset(d) for d in mv.evaluated_on.all()],
        },
        "run": {"number": run.number, "pipeline": getattr(run, "pipeline", "")} if run else None,
        "job": {"name": job.name, "kind": job.kind, "status": job.status} if job else None,
        "model": {
            "id": mv.pk,
            "name": mv.name,
            "version": mv.version,
            "artifact_digest": mv.artifact_digest,
            "metrics": mv.metrics,
        },
        "gate": (
            {
                "passed": gate.passed,
                "metric": gate.metric,
                "reason": gate.reason,
                "champion": gate.champion.version if gate.champion_id else None,
            }
            if gate
            else None
        ),
        "releases": [
            {
                "version": r.version,
                "commit_sha": r.commit_sha,
                "image_ref": r.image_ref,
                "image_digest": r.image_digest,
                "bundle_digest": r.bundle_digest,
                "created": r.created,
                "deployed_to": [d.environment.name for d in r.succeeded_deployments],
            }
            for r in releases
        ],
        "serving": [
            {"environment": a.environment.name, "since": a.modified} for a in mv.aliases.all()
        ],
    }
