"""Trigger → succeeded for a pipeline of 3 jobs in sequence (``needs``), each running `true`
(local runner, a checkout of the commit per job), through a real worker; in the same run, the
floor: a bare Celery chain of three tasks each running ``subprocess.run(["true"])`` on the same
broker through a real worker (``bench/bare_chain.py``), one floor round before each of ours so
that a change of load weighs on both. Prints both and ours as a multiple of the floor.

    .venv/bin/python bench/pipeline_latency.py [--runs 30] [--stack production|embedded]
"""

import subprocess
import tempfile
import time
from pathlib import Path

import _stack

SPEC = """version: 1
jobs:
  test: {kind: test, script: ["true"]}
  build: {kind: build, needs: [test], script: ["true"]}
  deploy: {kind: script, needs: [build], script: ["true"]}
"""
TARGET_RATIO = 15
#: How often the benchmark looks whether a run ended; the end is the run's ``finished_at``.
POLL = 0.01


GIT_ENV = {
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@x",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@x",
    "PATH": "/usr/bin:/bin",
}


def commit_all(work: Path, message: str) -> str:
    """Commit everything in the repository at ``work``; return the new sha."""
    for cmd in (["add", "-A"], ["commit", "-qm", message]):
        subprocess.run(["git", *cmd], cwd=work, env=GIT_ENV, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True, check=True
    ).stdout.strip()


def make_repo() -> tuple[str, str]:
    work = Path(tempfile.mkdtemp(prefix="cp-bench-repo-"))
    (work / ".controlplane.yml").write_text(SPEC)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=work, env=GIT_ENV, check=True)
    return f"file://{work}", commit_all(work, "bench")


def request_run(project, sha: str):
    """``services.run_request`` for a push of ``sha`` to main."""
    from apps.pipelines import services
    from apps.pipelines.choices import Trigger
    from apps.pipelines.commits import Commit

    return services.run_request(
        project=project, actor="bench", trigger=Trigger.PUSH, commit=Commit(sha=sha, ref="main")
    )


def floor(args, var: Path, rounds: int | None = None) -> list[float]:
    """The bare Celery chain on the broker the control plane's worker uses, in a row."""
    import bare_chain

    return bare_chain.measure(rounds=rounds or args.runs, var=var, **_floor_options())


def _floor_options() -> dict:
    from django.conf import settings

    interval = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("polling_interval", 0.02)
    return {"broker_url": settings.CELERY_BROKER_URL, "polling_interval": interval}


def start_floor(var: Path):
    """A :class:`bare_chain.Floor` to alternate with our own rounds."""
    import bare_chain

    return bare_chain.Floor(var=var, **_floor_options())


def breakdown(run_ids: list[int]) -> dict[str, list[float]]:
    """Where a run's time goes, from the rows' own timestamps (ms): preparing it (the spec read
    and the jobs created), each job waiting in the queue (queued → claimed), running (claimed →
    finished: checkout, command, log, finish), and the end of the run after its last job."""
    from apps.pipelines.models import Job, PipelineRun

    phases: dict[str, list[float]] = {}

    def add(name, start, end):
        phases.setdefault(name, []).append((end - start).total_seconds() * 1000)

    for run in PipelineRun.objects.filter(pk__in=run_ids):
        jobs = list(Job.objects.filter(run=run).order_by("queued_at"))
        add("run created -> jobs created", run.created, jobs[0].created)
        add("jobs created -> first queued", jobs[0].created, jobs[0].queued_at)
        for i, job in enumerate(jobs, 1):
            add(f"job {i}: queued -> claimed", job.queued_at, job.started_at)
            add(f"job {i}: claimed -> finished", job.started_at, job.finished_at)
            if i < len(jobs):
                add(f"job {i}: finished -> job {i + 1} queued", job.finished_at, jobs[i].queued_at)
        add("last job finished -> run finished", jobs[-1].finished_at, run.finished_at)
    return phases


def main() -> None:
    args = _stack.parse_args(__doc__, runs={"type": int, "default": 30})
    var = _stack.setup(args, "pipeline")
    from apps.pipelines.choices import RunStatus
    from apps.pipelines.models import PipelineRun
    from apps.projects.services import project_create

    in_a_row = floor(args, var)  # the floor's rounds back to back, as it was measured before
    url, sha = make_repo()
    # No environments: a succeeded build would make a release and deploy it to dev after each
    # round (the CD loop, measured by bench/cd_loop.py), competing with the next round.
    project = project_create(
        name="bench", actor="bench", repository_url=url, with_default_environments=False
    )
    worker = _stack.start_worker()
    bare_floor = start_floor(var)
    spy = _stack.profile(worker)
    try:
        durations, run_ids, bare = [], [], []
        for i in range(args.runs + 2):
            if i >= 2:  # one floor round before each of ours: the same load weighs on both
                bare.append(bare_floor.once())
            started = time.time()
            run = request_run(project, sha)
            while True:
                # Looked at every 10 ms, the end read from the row: a query every 2 ms loaded
                # the two cores the worker runs on (the floor waits on a file's stat).
                status, finished = PipelineRun.objects.filter(pk=run.pk).values_list(
                    "status", "finished_at"
                )[0]
                if status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED):
                    break
                time.sleep(POLL)
            elapsed = (finished.timestamp() - started) * 1000
            assert status == RunStatus.SUCCEEDED, status
            if i >= 2:  # the first two warm up the mirror and the worker's connections
                durations.append(elapsed)
                run_ids.append(run.pk)
    finally:
        _stack.stop_profile(spy)
        bare_floor.stop()
        _stack.stop(worker)
    ours, base = _stack.summary(durations), _stack.summary(bare)
    print(f"stack: {_stack.stack_name(args)}; {args.runs} runs of each, alternating")
    print(
        f"floor, bare Celery chain of 3 subprocess tasks: median {base['median']:.1f} ms, "
        f"p95 {base['p95']:.1f} ms"
    )
    print(
        f"pipeline of 3 jobs (needs) trigger -> succeeded: median {ours['median']:.0f} ms, "
        f"p95 {ours['p95']:.0f} ms"
    )
    print(
        f"ratio pipeline / floor: median {ours['median'] / base['median']:.1f}x, "
        f"p95 {ours['p95'] / base['p95']:.1f}x (target <= {TARGET_RATIO}x)"
    )
    row = _stack.summary(in_a_row)
    print(
        f"the floor's rounds back to back instead (a worker kept busy): median "
        f"{row['median']:.1f} ms, p95 {row['p95']:.1f} ms; ratio median "
        f"{ours['median'] / row['median']:.1f}x, p95 {ours['p95'] / row['p95']:.1f}x"
    )
    print("where the time goes (medians from the rows' timestamps):")
    for name, values in breakdown(run_ids).items():
        print(f"  {name:<40} {_stack.summary(values)['median']:7.1f} ms")
    _stack.cleanup(var)


if __name__ == "__main__":
    main()
