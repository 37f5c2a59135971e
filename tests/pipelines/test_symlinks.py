"""Artifacts and bundles never follow a symlink out of the job's workspace: a job (or a
commit) cannot make the control plane copy the worker's files — another project's mirror,
the control plane's data, /etc — into an artifact or a bundle, nor write a bundle through a
link. A symlink to a file inside the workspace is kept as that file's content."""

import tarfile

import pytest
from django.conf import settings

from apps.pipelines import services
from apps.pipelines.choices import JobStatus, RunStatus
from apps.pipelines.executor import execute_job
from apps.pipelines.logs import LogWriter
from apps.pipelines.models import Artifact, Job, PipelineRun
from apps.pipelines.outputs import bundle_build
from apps.pipelines.workspace import OUTPUT_DIR, JobSetupError

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def outside(tmp_path):
    """A file of the worker's outside any workspace (as another project's mirror would be)."""
    path = tmp_path / "elsewhere" / "credentials"
    path.parent.mkdir()
    path.write_text("worker-only secret\n")
    return path


def execute(run: PipelineRun) -> PipelineRun:
    while job := run.jobs.filter(status=JobStatus.QUEUED).order_by("id").first():
        execute_job(services.job_claim(job_id=job.pk, worker="test-worker"))
    return PipelineRun.objects.get(pk=run.pk)


def run_with(project, script: list[str]) -> PipelineRun:
    job = {
        "name": "collect",
        "retries": 0,
        "script": ["mkdir -p out", "echo ok > out/fine.txt", *script],
        "options": {"artifacts": ["out/*.txt"]},
    }
    return execute(services.run_create(project=project, jobs=[job], actor="test"))


def test_an_artifact_symlinked_out_of_the_workspace_fails_the_job_and_keeps_nothing(
    project, outside
):
    run = run_with(project, [f"ln -s {outside} out/leak.txt"])
    job = run.jobs.get()
    assert (run.status, job.status) == (RunStatus.FAILED, JobStatus.FAILED)
    assert "'out/leak.txt' is a symlink to a file outside the workspace" in job.error_message
    assert Artifact.objects.filter(job=job).count() == 0
    stored = settings.ARTIFACT_DIR / str(run.pk) / str(job.pk)
    assert not stored.exists() or not any(p.is_file() for p in stored.rglob("*"))


def test_a_symlinked_folder_out_of_the_workspace_is_refused_too(project, outside):
    job = {
        "name": "collect",
        "retries": 0,
        "script": [f"mkdir -p out && ln -s {outside.parent} out/sub"],
        "options": {"artifacts": ["out/sub/*"]},
    }
    run = execute(services.run_create(project=project, jobs=[job], actor="test"))
    assert run.status == RunStatus.FAILED
    assert "outside the workspace" in run.jobs.get().error_message
    assert Artifact.objects.filter(job__run=run).count() == 0


def test_a_symlink_inside_the_workspace_is_kept_as_the_file(project):
    run = run_with(project, ["ln -s fine.txt out/alias.txt"])
    assert run.status == RunStatus.SUCCEEDED, run.jobs.get().error_message
    kept = {a.path: a.file_path.read_text() for a in Artifact.objects.filter(job__run=run)}
    assert kept == {"out/alias.txt": "ok\n", "out/fine.txt": "ok\n"}
    assert not any(a.file_path.is_symlink() for a in Artifact.objects.filter(job__run=run))


def _workspace(tmp_path):
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "app.py").write_text("print('hi')\n")
    return ws


def test_a_bundle_refuses_a_file_symlinked_out_of_the_workspace(tmp_path, outside):
    ws = _workspace(tmp_path)
    (ws / "src" / "config.py").symlink_to(outside)
    log = LogWriter(tmp_path / "job.log")
    with pytest.raises(JobSetupError, match="'src/config.py' is a symlink to a file outside"):
        bundle_build(Job(kind="build", options={}), ws, log)


def test_a_bundle_is_not_written_through_a_planted_link(tmp_path, outside):
    ws = _workspace(tmp_path)
    (ws / "src" / "alias.py").symlink_to(ws / "src" / "app.py")
    (ws / OUTPUT_DIR).mkdir()
    (ws / OUTPUT_DIR / "bundle.tar.gz").symlink_to(outside)
    log = LogWriter(tmp_path / "job.log")
    result = bundle_build(Job(kind="build", options={}), ws, log)
    assert outside.read_text() == "worker-only secret\n"  # not overwritten
    out = ws / OUTPUT_DIR / "bundle.tar.gz"
    assert not out.is_symlink()
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == ["src/alias.py", "src/app.py"]
        assert all(m.isfile() for m in members.values())
        assert tar.extractfile("src/alias.py").read() == b"print('hi')\n"
    assert result["bundle_files"] == 2


def test_a_bundle_refuses_an_output_folder_swapped_for_a_link(tmp_path, outside):
    ws = _workspace(tmp_path)
    (ws / OUTPUT_DIR).symlink_to(outside.parent)
    with pytest.raises(JobSetupError, match="is a symlink"):
        bundle_build(Job(kind="build", options={}), ws, LogWriter(tmp_path / "job.log"))
    assert sorted(p.name for p in outside.parent.iterdir()) == ["credentials"]
