"""The CD loop end to end on PostgreSQL, Redis, a real worker and a real Docker engine:
push → tests → image built from the bundle → dev and staging deployed automatically →
promotion pending for production → an approver approves through the API → the production
container answers its health check on its port. Then a release whose container fails its
health check is rolled back automatically while the previous container keeps answering."""

import json
import urllib.request

import pytest

from apps.pipelines.choices import RunStatus
from apps.releases.choices import DeploymentStatus, PromotionStatus
from apps.releases.deployers.health import free_port
from apps.releases.models import Deployment, Promotion, Release
from tests.dockerengine import IMAGE, docker_client
from tests.pipelines.gitrepo import Repo
from tests.pipelines.test_ci_loop import SECRET, push
from tests.pipelines.test_worker import finished, log_of
from tests.pipelines.worker import WorkerProcess, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def engine():
    client = docker_client()
    yield client
    for container in client.containers.list(all=True, filters={"label": "controlplane.project"}):
        container.remove(force=True)


def health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return json.loads(response.read()) if response.status == 200 else None
    except OSError:
        return None


def deployment_done(environment, release, timeout=300):
    def done():
        d = (
            Deployment.objects.filter(environment=environment, release=release)
            .order_by("-pk")
            .first()
        )
        active = (DeploymentStatus.PENDING, DeploymentStatus.RUNNING)
        return d if d and d.status not in active else None

    return wait_for(done, timeout, interval=0.5)


def test_push_to_production_through_an_approval_and_automatic_rollback(
    project, tmp_path, engine, member, api, admin_user
):
    repo = Repo(tmp_path)
    project.repository_url = repo.url
    project.webhook_secret = SECRET
    project.save()
    envs = {e.name: e for e in project.environments.all()}
    for env in envs.values():
        env.deployer = "docker"
        env.service_port = free_port()
        env.health_check_timeout = 60
        env.target = {"memory": "512m", "cpus": 1.0}
        env.save()
    lead = member("approver", "lead")
    worker = WorkerProcess(
        concurrency=2, extra_env={"CONTROLPLANE_BUILD_BASE_IMAGE": IMAGE}
    ).start()
    try:
        run = finished(push(project, repo, admin_user), timeout=600)
        assert run.status == RunStatus.SUCCEEDED, {
            j.name: (j.status, j.error_message, log_of(run, j.name)[-3000:]) for j in run.jobs.all()
        }
        release = wait_for(lambda: Release.objects.filter(pipeline_run=run).first(), 30)
        build = run.jobs.get(name="build").result
        # The image was built from the bundle and carries its digest; the model is recorded.
        assert release.image_digest == build["image"]["id"]
        image = engine.images.get(release.image_ref)
        assert image.labels["controlplane.bundle_digest"] == release.bundle_digest
        assert release.model_version is not None
        # The registry keeps the scores as metrics; sizes, hashes and versions apart.
        recorded = release.evidence["model"]["metrics"]
        mv = release.model_version
        assert {**mv.metrics, **mv.params, **mv.tags} == recorded
        assert "f1" in mv.metrics and "n_test" in mv.params and "dataset_sha256" in mv.tags
        assert release.evidence["tests"]["test"]["failures"] == 0
        # The predictions were reproduced inside the image itself (its code, model, deps).
        in_image = release.evidence["reproducibility"]["reproduce-image"]
        assert in_image["passed"] and in_image["image"] == release.image_digest
        assert in_image["rows_outside"] == 0

        for name in ("dev", "staging"):
            deployment = deployment_done(envs[name], release)
            assert deployment.status == DeploymentStatus.SUCCEEDED, deployment.log
            assert health(envs[name].service_port)["status"] == "ok"
        # Production waits for an approval; nothing runs there yet.
        promotion = wait_for(
            lambda: Promotion.objects.filter(
                release=release, environment=envs["production"], status=PromotionStatus.PENDING
            ).first(),
            30,
        )
        assert health(envs["production"].service_port) is None
        response = api(lead).post(
            f"/api/v1/promotions/{promotion.pk}/approve/", {"comment": "evidence looks good"}
        )
        assert response.status_code == 200, response.content
        deployment = deployment_done(envs["production"], release)
        assert deployment.status == DeploymentStatus.SUCCEEDED, deployment.log
        assert health(envs["production"].service_port)["status"] == "ok"
        promotion.refresh_from_db()
        assert promotion.status == PromotionStatus.DEPLOYED
        container = engine.containers.get(f"cp-{project.slug}-production")
        assert container.labels["controlplane.release"] == release.version
        assert container.attrs["HostConfig"]["NetworkMode"] == "host"
        # The same image went through every environment: nothing was rebuilt on promotion.
        assert container.image.id == release.image_digest

        # A release whose service cannot start: dev rolls back, the previous container serves.
        repo.commit(
            "Serve from a module that does not exist",
            {"Dockerfile": repo.read("Dockerfile").replace('"model.serve"', '"model.nope"')},
        )
        run2 = finished(push(project, repo, admin_user), timeout=600)
        assert run2.status == RunStatus.SUCCEEDED
        broken = wait_for(lambda: Release.objects.filter(pipeline_run=run2).first(), 30)
        failed = deployment_done(envs["dev"], broken)
        assert failed.status == DeploymentStatus.ROLLED_BACK, failed.log
        assert "model.nope" in failed.error_message or "health" in failed.error_message.lower()
        assert health(envs["dev"].service_port)["status"] == "ok"
        serving = engine.containers.get(f"cp-{project.slug}-dev")
        assert serving.labels["controlplane.release"] == release.version
        # A failed release goes no further.
        assert not Deployment.objects.filter(release=broken, environment=envs["staging"]).exists()
    finally:
        worker.stop()
