"""Build jobs with image building on: a real Docker image from the content-addressed bundle,
labelled with project, commit and bundle digest, built by a real worker."""

import pytest

from apps.pipelines import services
from apps.pipelines.choices import JobStatus, RunStatus
from apps.pipelines.commits import Commit
from apps.pipelines.models import PipelineRun

from ..dockerengine import IMAGE, docker_client
from .gitrepo import Repo
from .test_worker import finished, log_of
from .worker import WorkerProcess

pytestmark = [pytest.mark.docker, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SPEC = "version: 1\njobs:\n  build: {kind: build, dockerfile: Dockerfile}\n"
DOCKERFILE = (
    "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\nWORKDIR /app\nCOPY . .\n"
    "RUN test -f model/predict.py && echo bundle contents are in the image\n"
)


@pytest.fixture
def engine():
    return docker_client()


def test_build_job_builds_a_labelled_image_from_the_bundle(project, tmp_path, engine):
    repo = Repo(tmp_path)
    repo.commit("image", {".controlplane.yml": SPEC, "Dockerfile": DOCKERFILE})
    project.repository_url = repo.url
    project.save()
    worker = WorkerProcess(
        extra_env={
            "CONTROLPLANE_BUILD_IMAGES": "1",
            "CONTROLPLANE_BUILD_BASE_IMAGE": IMAGE,
        }
    ).start()
    tags = []
    try:
        runs = []
        for _ in range(2):  # the same commit twice: the same bundle, the same image content
            run = services.run_request(
                project=project, actor="t", commit=Commit(sha=repo.head, ref="main")
            )
            runs.append(finished(run))
        results = []
        for run in runs:
            job = run.jobs.get()
            assert run.status == RunStatus.SUCCEEDED, (job.error_message, log_of(run, "build"))
            assert job.status == JobStatus.SUCCEEDED
            results.append(job.result)
            tags.append(job.result["image"]["ref"])
        first, second = results
        assert first["bundle_digest"] == second["bundle_digest"]
        assert first["image"]["id"] == second["image"]["id"]  # same bundle: the cached image
        image = engine.images.get(first["image"]["ref"])
        assert first["image"]["id"] == image.id and image.id.startswith("sha256:")
        labels = image.labels
        assert labels["controlplane.commit"] == repo.head
        assert labels["controlplane.project"] == project.slug
        assert labels["controlplane.bundle_digest"] == first["bundle_digest"]
        assert "bundle contents are in the image" in log_of(runs[0], "build")  # live build log
        # The image holds the bundled code, and not the .git folder.
        out = engine.containers.run(
            image.id, ["sh", "-c", "ls -a /app"], remove=True, network_mode="none"
        )
        assert b"Dockerfile" in out and b".git\n" not in out
    finally:
        worker.stop()
        for tag in set(tags):
            engine.images.remove(tag, force=True)


def test_a_broken_dockerfile_fails_the_build_with_its_error(project, tmp_path, engine):
    repo = Repo(tmp_path)
    repo.commit("broken", {".controlplane.yml": SPEC, "Dockerfile": f"FROM {IMAGE}\nRUN exit 7\n"})
    project.repository_url = repo.url
    project.save()
    worker = WorkerProcess(extra_env={"CONTROLPLANE_BUILD_IMAGES": "1"}).start()
    try:
        run = finished(
            services.run_request(
                project=project, actor="t", commit=Commit(sha=repo.head, ref="main")
            )
        )
    finally:
        worker.stop()
    job = run.jobs.get()
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.FAILED
    assert job.error_message.startswith("docker build failed")
