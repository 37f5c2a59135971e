"""Orphans: a worker killed with SIGKILL leaves its job's process group (local runner) or
container (docker runner) running. The reaper ends it before the job is retried, so two
attempts never run at once: each attempt sends ticks to a listener of the test ten times a
second while it runs, and the last tick of a killed attempt comes before the first of the
next — while ticks after the kill prove the orphan did keep running until it was ended."""

import time

import pytest

from apps.core.models import AuditEvent
from apps.pipelines import services
from apps.pipelines.choices import JobStatus
from apps.pipelines.models import Job, PipelineRun
from tests.dockerengine import IMAGE, docker_client

from .workers import (
    REAPER_WINDOW,
    TICKER,
    Figures,
    Kill,
    TickListener,
    beat,
    free_port,
    group_alive,
    reap_latencies,
    report,
    wait_until,
    worker,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ticks():
    listener = TickListener(free_port())
    yield listener
    listener.close()


def ticking_job(name: str, kind: str, ticks: TickListener, *, runner: str = "local") -> dict:
    """Attempt 1 ticks for ever (until ended); attempt 2 ticks ten times and succeeds."""
    job = {
        "name": name,
        "kind": kind,
        "runner": runner,
        "retries": 1,
        "timeout": 300,
        "script": [
            'if [ "$CONTROLPLANE_JOB_ATTEMPT" = 1 ]; then n=-1; else n=10; fi',
            'python3 -c "$TICKER" $n',
        ],
        "options": {
            "variables": {"TICKER": TICKER, "TICK_PORT": str(ticks.port), "TICK_ID": ticks.id}
        },
    }
    if runner == "docker":
        job["image"] = IMAGE
    if kind == "train":
        job["script"] += ["mkdir -p out && echo w > out/model.bin"]
        job["options"]["model"] = "out/model.bin"
    return job


def housekeeping(procs) -> None:
    """beat (the reaper every second) and a worker of the default queue that runs it."""
    procs(beat())
    procs(worker("default", concurrency=2))


def kill_each_mid_job(procs, run, ticks, queues, alive) -> list[Kill]:
    """One victim worker per job: once a job of the run ticks on it, kill -9 the victim; a
    second later what the job started (``alive(processes)``) must still run."""
    kills: list[Kill] = []
    for _ in range(run.jobs.count()):
        victim = procs(worker(queues), wait=False)

        def ticking(victim=victim):
            for job in run.jobs.select_related("run").filter(
                status=JobStatus.RUNNING, worker=victim.worker_name, attempt=1
            ):
                if job.processes and ticks.of(job):
                    return job
            return None

        job = wait_until(ticking, 45)
        assert job, f"the victim ran no job:\n{victim.output()[-2000:]}"
        victim.kill()
        kills.append(Kill(job.pk, job.attempt, time.time(), job.processes))
        time.sleep(1)
        assert alive(job.processes), "the orphan should outlive its worker"
    kills.sort(key=lambda k: k.job_id)
    return kills


def attempts_figures(test, run, ticks, kills, started, faults) -> tuple[Figures, list[Job]]:
    jobs = list(run.jobs.select_related("run").order_by("pk"))
    figures = Figures(test, faults=faults)
    figures.expected = {"runs": 1, "jobs": len(jobs)}
    figures.recorded = {"runs": PipelineRun.objects.filter(pk=run.pk).count(), "jobs": len(jobs)}
    figures.completed = {
        "runs": int(PipelineRun.objects.get(pk=run.pk).is_terminal),
        "jobs": sum(j.is_terminal for j in jobs),
    }
    figures.lost = 1 - figures.completed["runs"]
    latencies = reap_latencies(kills)
    figures.stuck = sum(x is None or x > REAPER_WINDOW for x in latencies)
    overlapping = ran_on = 0
    gaps = []
    for job, kill in zip(jobs, kills, strict=True):
        first = [t for a, t in ticks.of(job) if a == 1]
        second = [t for a, t in ticks.of(job) if a == 2]
        ran_on += bool(first) and max(first) > kill.at + 1  # the orphan kept running
        if first and second:
            overlapping += min(second) < max(first)
            gaps.append(min(second) - max(first))
    figures.duplicated = overlapping
    figures.notes = {
        "orphans_ran_on_after_kill": ran_on,
        "overlapping_attempts": overlapping,
        "min_gap_s": round(min(gaps), 2) if gaps else None,
        "reaped_max_s": round(max(x for x in latencies if x is not None), 1)
        if any(x is not None for x in latencies)
        else None,
    }
    figures.seconds = time.monotonic() - started
    return figures, jobs


def check_attempts(figures, jobs, kills, what):
    assert figures.lost == 0 and figures.stuck == 0, figures.line()
    reasons = list(
        AuditEvent.objects.filter(object_id__in=[str(j.pk) for j in jobs])
        .order_by("created")
        .values_list("object_id", "created", "actor_label", "to_state", "reason")
    )
    assert figures.duplicated == 0, (figures.line(), reasons)
    assert figures.notes["orphans_ran_on_after_kill"] == len(kills), figures.line()
    for job in jobs:
        assert (job.status, job.attempt) == (JobStatus.SUCCEEDED, 2), (job.name, job.status)
        reaped = AuditEvent.objects.get(
            object_id=str(job.pk), actor_label="reaper", reason__contains="Worker lost"
        )
        # "ended <what> ...", or "already gone: <what>" when another reaper pass (beat sends
        # one a second) ended it a moment earlier.
        assert what in reaped.reason, reaped.reason


def test_killed_workers_local_process_groups_are_ended_before_the_retry(
    project, admin_user, procs, ticks
):
    started = time.monotonic()
    housekeeping(procs)
    run = services.run_create(
        project=project,
        actor=admin_user,
        jobs=[ticking_job(n, k, ticks) for n, k in (("unit", "test"), ("fit", "train"))],
    )
    kills = kill_each_mid_job(
        procs, run, ticks, "test,train", lambda p: all(group_alive(g["pgid"]) for g in p["groups"])
    )
    procs(worker("test,train", concurrency=2))
    assert wait_until(lambda: PipelineRun.objects.get(pk=run.pk).is_terminal, 45)
    figures, jobs = attempts_figures(
        "orphans: local process groups of killed workers",
        run,
        ticks,
        kills,
        started,
        {"kill_9_worker": len(kills)},
    )
    figures.notes["groups_left"] = sum(
        group_alive(g["pgid"]) for k in kills for g in k.processes["groups"]
    )
    report(figures)
    check_attempts(figures, jobs, kills, "process group")
    assert figures.notes["groups_left"] == 0


@pytest.mark.docker
def test_killed_workers_docker_containers_are_ended_before_the_retry(
    project, admin_user, procs, ticks
):
    """The docker runner: four kills across test, build and train jobs."""
    client = docker_client()
    started = time.monotonic()
    housekeeping(procs)
    kinds = (("unit", "test"), ("bundle", "build"), ("fit", "train"), ("lint", "test"))
    run = services.run_create(
        project=project,
        actor=admin_user,
        jobs=[ticking_job(n, k, ticks, runner="docker") for n, k in kinds],
    )

    def running(processes):
        return all(
            client.containers.get(c["id"]).status == "running" for c in processes["containers"]
        )

    kills = kill_each_mid_job(procs, run, ticks, "test,build,train", running)
    ids = [c["id"] for k in kills for c in k.processes["containers"]]
    procs(worker("test,build,train", concurrency=3))
    assert wait_until(lambda: PipelineRun.objects.get(pk=run.pk).is_terminal, 60)
    figures, jobs = attempts_figures(
        "orphans: docker-runner containers of killed workers",
        run,
        ticks,
        kills,
        started,
        {"kill_9_worker": len(kills)},
    )
    left = client.containers.list(all=True, filters={"label": "controlplane.runner=docker"})
    figures.notes["containers_left"] = sum(c.id in ids for c in left)
    report(figures)
    check_attempts(figures, jobs, kills, "container")
    assert figures.notes["containers_left"] == 0
