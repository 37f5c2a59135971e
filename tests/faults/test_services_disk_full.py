"""The log or artifact volume full (issue 11, "Disk full"): a 2 MB tmpfs mounted over the
worker's artifact folder, and one over a run's log folder. A job that writes past it fails with
"Disk full" naming the path, promptly (not left running or stuck); the same worker goes on
serving jobs; what was stored before is intact (artifact digests re-hashed from disk, earlier
log bytes compared)."""

import hashlib
import time

import pytest
from django.db import transaction

from apps.pipelines import services
from apps.pipelines.choices import RUN_TERMINAL, JobStatus, RunStatus
from apps.pipelines.models import Artifact, PipelineRun
from tests.pipelines.worker import WorkerProcess, wait_for

from .services import report, tmpfs, used_bytes

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _finished(run: PipelineRun, timeout: float = 60) -> PipelineRun:
    return wait_for(
        lambda: (r := PipelineRun.objects.get(pk=run.pk)).status in RUN_TERMINAL and r, timeout
    )


def _job(name: str, script: list[str], **extra) -> dict:
    return {"name": name, "kind": "test", "retries": 0, "script": script, **extra}


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def worker_tmp(tmp_path):
    """The worker's own folders (logs, artifacts, workspaces), apart from the test session's."""
    return tmp_path / "stack"


@pytest.fixture
def start_worker(worker_tmp):
    started = []

    def start():
        started.append(WorkerProcess(extra_env={"CONTROLPLANE_TEST_TMP": str(worker_tmp)}).start())
        return started[-1]

    yield start
    for worker in started:
        worker.stop()


def test_artifact_volume_full(project, admin_user, worker_tmp, start_worker, capsys):
    artifacts = worker_tmp / "artifacts"
    with tmpfs(artifacts, "2m"):
        worker = start_worker()
        # 1. Two small artifacts stored on the volume.
        early = _finished(
            services.run_create(
                project=project,
                actor=admin_user,
                jobs=[
                    _job(
                        "early",
                        [
                            "head -c 20000 /dev/urandom > a.bin",
                            "head -c 30000 /dev/urandom > b.bin",
                        ],
                        options={"artifacts": ["*.bin"]},
                    )
                ],
            )
        )
        assert early.status == RunStatus.SUCCEEDED, [j.error_message for j in early.jobs.all()]
        stored = {
            a.path: (artifacts / str(early.pk) / str(a.job_id) / a.path, a.sha256)
            for a in Artifact.objects.filter(job__run=early)
        }
        used_before = used_bytes(artifacts)
        # 2. An artifact bigger than the volume.
        started = time.monotonic()
        big = _finished(
            services.run_create(
                project=project,
                actor=admin_user,
                jobs=[
                    _job(
                        "big",
                        ["head -c 3000000 /dev/zero > big.bin"],
                        options={"artifacts": ["big.bin"]},
                    )
                ],
            )
        )
        big_seconds = time.monotonic() - started
        big_job = big.jobs.get()
        used_after_failure = used_bytes(artifacts)
        # 3. The same worker, the same volume: a small artifact fits again.
        after = _finished(
            services.run_create(
                project=project,
                actor=admin_user,
                jobs=[
                    _job("after", ["echo fits > after.txt"], options={"artifacts": ["after.txt"]})
                ],
            )
        )
        intact = sum(_sha256(path) == sha for path, sha in stored.values())
        report(
            capsys,
            "disk full (artifacts)",
            injected="2 MB tmpfs over the artifact folder, a 3 MB artifact",
            jobs_expected=3,
            completed=sum(r.status == RunStatus.SUCCEEDED for r in (early, after)),
            failed_disk_full=int("disk full" in big_job.error_message.lower()),
            error=repr(big_job.error_message),
            failed_in=f"{big_seconds:.1f}s",
            volume_used=f"{used_before}/{used_after_failure} bytes before/after the failure",
            earlier_artifacts_intact=f"{intact}/{len(stored)}",
            lost=0 if worker.proc.poll() is None else "worker died",
            stuck=PipelineRun.objects.exclude(status__in=RUN_TERMINAL).count(),
        )
        assert big_job.status == JobStatus.FAILED
        assert big_job.error_message.startswith("Disk full: cannot write artifact big.bin to ")
        assert str(artifacts / str(big.pk) / str(big_job.pk) / "big.bin") in big_job.error_message
        assert not Artifact.objects.filter(job=big_job).exists()
        assert used_after_failure <= used_before + 8192, "the partial file was removed"
        assert after.status == RunStatus.SUCCEEDED, [j.error_message for j in after.jobs.all()]
        assert intact == len(stored) == 2
        assert worker.proc.poll() is None
        worker.stop()


def test_log_volume_full(project, admin_user, worker_tmp, start_worker, capsys):
    logs = worker_tmp / "logs"
    lines = [f"line {i} of the early job" for i in range(200)]
    # The run is created, and its log folder made a 2 MB volume, before anything is sent to
    # the worker (inside the transaction: its jobs are sent on commit).
    with transaction.atomic():
        run = services.run_create(
            project=project,
            actor=admin_user,
            jobs=[
                _job("early", [f"printf '%s\\n' {' '.join(repr(x) for x in lines)}"]),
                # 3 MB of output, then it would go on for a minute: it must be stopped.
                _job(
                    "flood", ["head -c 3000000 /dev/zero | tr '\\0' x", "sleep 60"], needs=["early"]
                ),
            ],
        )
        volume = tmpfs(logs / str(run.pk), "2m")
        volume.__enter__()
    try:
        worker = start_worker()
        started = time.monotonic()
        run = _finished(run, 90)
        seconds = time.monotonic() - started
        early, flood = run.jobs.get(name="early"), run.jobs.get(name="flood")
        early_log = logs / str(run.pk) / f"{early.pk}.log"
        early_bytes = early_log.read_bytes()
        # The same worker, a log folder that is not full: it succeeds.
        after = _finished(
            services.run_create(
                project=project, actor=admin_user, jobs=[_job("after", ["echo still serving"])]
            )
        )
        after_log = (logs / str(after.pk) / f"{after.jobs.get().pk}.log").read_text()
        intact = early_log.read_bytes() == early_bytes and all(
            line.encode() in early_bytes for line in lines
        )
        report(
            capsys,
            "disk full (logs)",
            injected="2 MB tmpfs over a run's log folder, 3 MB of output",
            jobs_expected=3,
            completed=int(early.status == JobStatus.SUCCEEDED)
            + int(after.status == RunStatus.SUCCEEDED),
            failed_disk_full=int("disk full" in flood.error_message.lower()),
            error=repr(flood.error_message),
            run_ended_in=f"{seconds:.1f}s (the flood job would have run 60 s more)",
            flood_log_kept=f"{flood.log_size} bytes",
            earlier_log_intact=intact,
            lost=0 if worker.proc.poll() is None else "worker died",
            stuck=PipelineRun.objects.exclude(status__in=RUN_TERMINAL).count(),
        )
        assert early.status == JobStatus.SUCCEEDED
        assert flood.status == JobStatus.FAILED
        flood_log = logs / str(run.pk) / f"{flood.pk}.log"
        assert flood.error_message == (
            f"Disk full: cannot write the job log {flood_log} (No space left on device)."
        )
        assert seconds < 45, "the job was stopped, not left to run its minute"
        assert intact
        assert after.status == RunStatus.SUCCEEDED and "still serving" in after_log
        assert worker.proc.poll() is None
        worker.stop()
    finally:
        volume.__exit__(None, None, None)
