"""Building a model's whole chain for the registry tests: datasets produced by a run, a train
job, the model version (through the registry's service), a gate verdict, a release carrying
it; the deployment is the test's own."""

import hashlib

from apps.pipelines import services as pipeline_services
from apps.releases.services import release_create
from apps.training.models import Dataset, DatasetVersion, GateVerdict
from apps.training.services import model_version_register
from tests.releases.test_deploy_rules import make_bundle


def dataset_version(project, name: str, fingerprint: str, *, run=None, job=None, rows=100):
    dataset, _ = Dataset.objects.get_or_create(project=project, name=name)
    number = dataset.versions.count() + 1
    return DatasetVersion.objects.create(
        dataset=dataset,
        version=number,
        fingerprint=fingerprint,
        rows=rows,
        format="csv",
        path=f"var/datasets/{fingerprint}",
        run=run,
        job=job,
    )


def train_run(project, actor, name: str = "train"):
    run = pipeline_services.run_create(
        project=project, actor=actor, jobs=[{"name": name, "script": ["true"]}]
    )
    run.spec = {"serve": {"command": "python server.py", "health": "/healthz", "port": 8080}}
    run.save(update_fields=["spec"])
    return run, run.jobs.get(name=name)


def model_chain(project, admin_user, tmp_path, *, version="r1-model", metrics=None):
    """(model version, release, datasets dict) with every link of the lineage filled."""
    prep_run, prep_job = train_run(project, admin_user, "prepare")
    tag = hashlib.sha256(version.encode()).hexdigest()
    features = dataset_version(project, "features", "f" + tag[1:], run=prep_run, job=prep_job)
    evaluation = dataset_version(project, "eval", "e" + tag[1:], run=prep_run, job=prep_job)
    run, job = train_run(project, admin_user)
    mv = model_version_register(
        project=project,
        run=run,
        job=job,
        name="churn",
        artifact_digest=f"sha256:{version}",
        commit_sha="c0ffee" + "0" * 34,
        metrics=metrics or {"metrics": {"f1": 0.83, "loss": 0.31}, "params": {"seed": 7}},
        trained_on=[features],
        evaluated_on=[evaluation],
    )
    GateVerdict.objects.create(
        model_version=mv,
        job=job,
        metric="f1",
        passed=True,
        reason="f1 0.83 ≥ champion 0.80 + 0.01",
        candidate_metrics={"f1": 0.83},
        evaluated_on=evaluation,
    )
    release = release_create(
        project=project,
        version=version,
        commit_sha=mv.commit_sha,
        actor=admin_user,
        pipeline_run=run,
        bundle_digest=make_bundle(tmp_path, version),
        image_ref=f"registry.local/churn:{version}",
        model_version=mv,
    )
    return mv, release, {"features": features, "eval": evaluation}
