"""A succeeded pipeline on the release branch that built a bundle makes one immutable release
with its evidence; other branches and failed runs make none."""

import pytest

from apps.pipelines import services
from apps.pipelines.commits import Commit
from apps.releases.models import Deployment, Release

pytestmark = pytest.mark.django_db

JOBS = [
    {"name": "test", "kind": "test", "script": ["true"]},
    {"name": "build", "kind": "build", "needs": ["test"], "script": ["true"]},
    {"name": "reproduce", "kind": "reproducibility", "needs": ["build"], "script": ["true"]},
]
RESULTS = {
    "test": {"junit": {"tests": 22, "passed": 22, "failures": 0, "errors": 0, "skipped": 0}},
    "build": {
        "bundle_digest": "sha256:" + "b" * 64,
        "image": {"ref": "controlplane/p:abc", "id": "sha256:" + "c" * 64},
    },
    "reproduce": {
        "reproducibility": {
            "passed": True,
            "max_abs_diff": 0.0,
            "rows_outside": 0,
            "rows_compared": 50,
            "tolerance": 1e-6,
            "examples": [],
        }
    },
}


def _run_to_the_end(project, ref, *, fail: str = "", spec=None, results=RESULTS):
    run = services.run_create(
        project=project,
        actor="t",
        jobs=JOBS,
        commit=Commit(sha="0123456789abcdef0123456789abcdef01234567", ref=ref),
        spec=spec,
    )
    for name in ("test", "build", "reproduce"):
        job = run.jobs.get(name=name)
        if job.status != "queued":
            break
        services.job_claim(job_id=job.pk, worker="w")
        services.job_finish(
            job_id=job.pk, worker="w", succeeded=name != fail, exit_code=0, result=results[name]
        )
    run.refresh_from_db()
    return run


def test_release_branch_run_makes_a_release_with_evidence(
    project, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = _run_to_the_end(project, "main")
    assert run.status == "succeeded"
    release = Release.objects.get()
    assert release.version == f"r{run.number}-01234567"
    assert (release.pipeline_run, release.commit_sha, release.ref) == (run, run.commit_sha, "main")
    assert release.bundle_digest == RESULTS["build"]["bundle_digest"]
    assert release.image_digest == RESULTS["build"]["image"]["id"]
    assert release.evidence["tests"]["test"]["passed"] == 22
    assert release.evidence["reproducibility"]["reproduce"]["max_abs_diff"] == 0.0
    from apps.releases.services import release_create_from_run

    assert release_create_from_run(run=run) is None  # once per run
    assert Release.objects.count() == 1


def test_other_branches_and_failed_runs_make_no_release(
    project, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert _run_to_the_end(project, "feature/x").status == "succeeded"
        assert _run_to_the_end(project, "main", fail="reproduce").status == "failed"
    assert not Release.objects.exists()
    project.release_branch = "release"
    project.save()
    with django_capture_on_commit_callbacks(execute=True):
        _run_to_the_end(project, "release")
    assert Release.objects.get().ref == "release"


MODEL = {
    "name": "churn",
    "path": "model/model.pkl",
    "digest": "sha256:" + "d" * 64,
    "metrics": {"roc_auc": 0.91, "seed": 42},
}


def test_the_reaction_is_all_or_nothing_and_can_run_again(
    project, django_capture_on_commit_callbacks
):
    """The release, the environments the spec names and the first step are one transaction:
    an environment that cannot be created (a negative approval count: the database refuses it)
    leaves no release (nor its model version) that would never move on; once the spec is
    right, the same reaction makes the release and its first deployment."""
    from apps.pipelines.models import PipelineRun
    from apps.releases.services import release_from_run
    from apps.training.models import ModelVersion

    bad = {"environments": {"canary": {"auto_deploy": False, "required_approvals": -1}}}
    results = {**RESULTS, "build": {**RESULTS["build"], "model": MODEL}}
    with django_capture_on_commit_callbacks(execute=True):
        run = _run_to_the_end(project, "main", spec=bad, results=results)
    assert run.status == "succeeded"  # the run is not the release's business
    assert not Release.objects.exists()
    assert not ModelVersion.objects.exists()
    assert not project.environments.filter(name="canary").exists()
    assert not Deployment.objects.exists()

    PipelineRun.objects.filter(pk=run.pk).update(
        spec={"environments": {"canary": {"auto_deploy": False, "required_approvals": 2}}}
    )
    run.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=False):
        release = release_from_run(run=run)
    assert Release.objects.get() == release
    assert release.model_version == ModelVersion.objects.get(name="churn", version=1)
    canary = project.environments.get(name="canary")
    assert canary.required_approvals == 2
    # The first step: dev deploys automatically.
    deployment = Deployment.objects.get()
    assert (deployment.release, deployment.environment.name) == (release, "dev")
    assert release_from_run(run=run) is None  # once per run
    assert Release.objects.count() == 1 and Deployment.objects.count() == 1
