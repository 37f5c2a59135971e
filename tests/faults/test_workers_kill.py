"""kill -9 of workers mid-job, again and again, across test, build and train jobs: no run is
lost, no lost job stays "running" longer than the reaper's window, each is retried (or failed
"worker lost" when out of attempts), and no job ever runs twice at once."""

import time

import pytest

from apps.pipelines import services
from apps.pipelines.choices import JobStatus
from apps.pipelines.models import Job, PipelineRun

from .workers import (
    CLEAN,
    FAIL,
    FAIL2,
    PLANS,
    REAPER_WINDOW,
    RETRY,
    TWICE,
    Figures,
    Kill,
    beat,
    group_alive,
    is_long,
    ledger_figures,
    reap_latencies,
    report,
    started_attempt,
    wait_until,
    worker,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

KINDS = ("test", "build", "train")
# 18 jobs in 6 runs; 16 of their attempts sleep long, and each is killed mid-job.
PLAN_ORDER = [RETRY] * 8 + [TWICE] * 2 + [FAIL] * 2 + [FAIL2] + [CLEAN] * 5
VICTIMS = 2  # victim workers alive at once, one job each


def make_runs(project, actor, ledgers, plans, *, runner="local", kinds=KINDS):
    runs, i = [], 0
    while i < len(plans):
        jobs = []
        for kind in kinds:
            if i < len(plans):
                jobs.append(job_spec_for(kind, plans[i], ledgers, runner))
                i += 1
        runs.append(services.run_create(project=project, actor=actor, jobs=jobs))
    return runs


def job_spec_for(kind, plan, ledgers, runner):
    from .workers import job_spec

    return job_spec(f"{kind}-{plan.name}", kind, plan, ledgers, runner=runner)


def kill_mid_job(procs, kills: list[Kill], wanted: int, queues: str, timeout: float) -> None:
    """Keep VICTIMS workers alive; each time one runs a long attempt that has started, kill -9
    it and start another, until ``wanted`` kills."""
    victims = []
    deadline = time.monotonic() + timeout
    while len(kills) < wanted:
        assert time.monotonic() < deadline, f"only {len(kills)} kills in {timeout}s"
        victims = [v for v in victims if v.alive]
        while len(victims) < VICTIMS:
            victims.append(procs(worker(queues), wait=False))
        by_name = {v.worker_name: v for v in victims}
        hit = None
        for job in Job.objects.filter(status=JobStatus.RUNNING, worker__in=list(by_name)):
            if is_long(job) and started_attempt(job):
                hit = job
                break
        if hit is None:
            time.sleep(0.05)
            continue
        hit.refresh_from_db()
        if hit.status != JobStatus.RUNNING or not hit.processes:
            continue
        by_name[hit.worker].kill()
        kills.append(Kill(hit.pk, hit.attempt, time.time(), hit.processes))


def outcome_figures(figures, runs, kills, ledgers, started):
    jobs = list(Job.objects.filter(run__in=runs).select_related("run"))
    terminal_runs = PipelineRun.objects.filter(pk__in=[r.pk for r in runs])
    completed_runs = sum(r.is_terminal for r in terminal_runs)
    figures.expected |= {"runs": len(runs), "jobs": len(jobs)}
    figures.recorded |= {"runs": terminal_runs.count(), "jobs": len(jobs)}
    figures.completed |= {"runs": completed_runs, "jobs": sum(j.is_terminal for j in jobs)}
    figures.lost = len(runs) - completed_runs
    latencies = reap_latencies(kills)
    stuck = [x for x in latencies if x is None or x > REAPER_WINDOW]
    figures.stuck = len(stuck) + sum(not j.is_terminal for j in jobs)
    found = [x for x in latencies if x is not None]
    figures.notes |= {
        "reaped_max_s": round(max(found), 1) if found else None,
        "reaper_window_s": REAPER_WINDOW,
        "retried": sum(j.attempt > 1 for j in jobs),
        "succeeded": sum(j.status == JobStatus.SUCCEEDED for j in jobs),
        "failed_worker_lost": sum(j.error_message == "worker lost" for j in jobs),
        "orphans_left": sum(
            group_alive(g["pgid"]) for k in kills for g in k.processes.get("groups", [])
        ),
    }
    if ledgers is not None:
        ledger_figures(jobs, ledgers, figures)
    figures.seconds = time.monotonic() - started
    report(figures)
    return jobs


def check(figures, jobs):
    assert figures.lost == 0 and figures.stuck == 0, figures.line()
    assert figures.duplicated == 0 and figures.notes.get("overlapping_attempts", 0) == 0
    assert figures.notes["orphans_left"] == 0, figures.line()
    for job in jobs:
        plan = PLANS[job.options["variables"]["PLAN"]]
        if plan.succeeds:
            assert job.status == JobStatus.SUCCEEDED, (job.name, job.status, job.error_message)
            assert job.attempt == plan.long_attempts + 1
        else:
            assert (job.status, job.error_message) == (JobStatus.FAILED, "worker lost")
        assert job.processes == {}


def test_kill_9_workers_mid_job_16_times(project, admin_user, procs, tmp_path):
    started = time.monotonic()
    project.max_concurrent_runs = 20
    project.save()
    ledgers = tmp_path / "ledgers"
    ledgers.mkdir()
    # The housekeeping: beat sends the reaper and the sweepers every second, a worker of the
    # default queue (never killed) runs them. The victims run only jobs.
    procs(beat())
    procs(worker("default", concurrency=2))
    runs = make_runs(project, admin_user, ledgers, PLAN_ORDER)
    wanted = sum(p.long_attempts for p in PLAN_ORDER)
    kills: list[Kill] = []
    kill_mid_job(procs, kills, wanted, "test,build,train", timeout=75)
    # One last worker that nobody kills finishes what is left.
    procs(worker("test,build,train", concurrency=3))
    wait_until(lambda: all(r.is_terminal for r in PipelineRun.objects.filter(project=project)), 45)
    figures = Figures("kill -9 worker mid-job (local: test, build, train)")
    figures.faults = {"kill_9_worker": len(kills)}
    jobs = outcome_figures(figures, runs, kills, ledgers, started)
    check(figures, jobs)
    assert len(kills) == wanted == 16
    assert {k.job_id for k in kills} <= {j.pk for j in jobs}
