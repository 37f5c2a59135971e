"""Schedule fire → first job command: the message beat sends at a schedule's fire time
(``pipelines.fire_schedule``) until the first command of the run's job starts (it writes
bash's $EPOCHREALTIME into a file), with a real worker. One fire at a time, each waited for to
the end of its run. The schedule is a named pipeline with a parameter, as in the CT loop.

    .venv/bin/python bench/schedule_latency.py [--fires 30] [--stack production|embedded]

The fire message is sent by this script at the moment beat would (so the figure does not
include beat's own wake-up, which django-celery-beat times to the due second). In the same
run, the floor: the bare Celery chain of ``bench/bare_chain.py`` (three tasks each running
``true``) on the same broker, and the ratio.
"""

import time
from datetime import timedelta
from pathlib import Path
from tempfile import mkdtemp

import _stack

TARGET_MEDIAN_MS = 1000

SPEC = """version: 1
jobs:
  build: {kind: script, script: ["true"]}
pipelines:
  nightly:
    params:
      rows: {type: number, default: 10}
    jobs:
      first:
        kind: script
        script:
          - printf "%s" "$EPOCHREALTIME" > "$MARKS/$CONTROLPLANE_RUN_NUMBER"
schedules:
  retrain:
    pipeline: nightly
    every: 1h
    params: {rows: 20}
"""


def _phases(phases: dict, sent: float, run_id: int, started: float) -> None:
    from apps.pipelines.models import Job, PipelineRun

    run = PipelineRun.objects.get(pk=run_id)
    job = Job.objects.get(run=run)
    marks = [
        ("fire sent -> run created (spec read, params checked)", sent, run.created.timestamp()),
        ("run created -> jobs created (prepare)", run.created.timestamp(), job.created.timestamp()),
        ("jobs created -> job queued", job.created.timestamp(), job.queued_at.timestamp()),
        ("job queued -> claimed", job.queued_at.timestamp(), job.started_at.timestamp()),
        ("claimed -> first command (checkout, bash)", job.started_at.timestamp(), started),
    ]
    for name, start, end in marks:
        phases.setdefault(name, []).append((end - start) * 1000)


def main() -> None:
    args = _stack.parse_args(__doc__, fires={"type": int, "default": 30})
    var = _stack.setup(args, "schedule")
    import pipeline_latency
    from django.utils import timezone

    from apps.pipelines import schedules
    from apps.pipelines.models import PipelineRun, Schedule
    from apps.pipelines.specs import spec_at
    from apps.pipelines.tasks import fire_schedule_task
    from apps.projects.services import project_create, variable_set

    bare = pipeline_latency.floor(args, var, rounds=args.fires)
    url, _ = pipeline_latency.make_repo()
    repo = Path(url.removeprefix("file://"))
    (repo / ".controlplane.yml").write_text(SPEC)
    pipeline_latency.commit_all(repo, "schedule")
    marks = Path(mkdtemp(prefix="cp-marks-", dir=var))
    project = project_create(
        name="bench", slug="bench", actor="bench", repository_url=url,
        with_default_environments=False,
    )  # fmt: skip
    variable_set(project=project, key="MARKS", value=str(marks), actor="bench")
    info, spec = spec_at(project)
    schedules.schedules_sync(project=project, spec=spec, commit_sha=info["sha"])
    schedule = Schedule.objects.get(project=project, name="retrain")
    worker = _stack.start_worker()
    spy = _stack.profile(worker)
    latencies, phases = [], {}
    try:
        for i in range(args.fires + 2):
            # The hour has passed since the last fire: this message is a due fire.
            Schedule.objects.filter(pk=schedule.pk).update(
                last_fire_at=timezone.now() - timedelta(hours=2)
            )
            before = PipelineRun.objects.count()
            sent = time.time()
            fire_schedule_task.delay(schedule.pk)
            deadline = time.monotonic() + 30
            while PipelineRun.objects.count() == before:
                if time.monotonic() > deadline:
                    raise SystemExit("the fire never started a run")
                time.sleep(0.002)
            run = PipelineRun.objects.order_by("-number").first()
            mark = marks / str(run.number)
            while not (mark.exists() and mark.read_text()):
                if time.monotonic() > deadline:
                    raise SystemExit(f"run {run.number} never started its command")
                time.sleep(0.002)
            if i >= 2:  # the first two warm up the mirror and the connections
                latencies.append((float(mark.read_text()) - sent) * 1000)
                _phases(phases, sent, run.pk, float(mark.read_text()))
            while not PipelineRun.objects.get(pk=run.pk).is_terminal:
                time.sleep(0.005)
    finally:
        _stack.stop_profile(spy)
        _stack.stop(worker)
    lat, base = _stack.summary(latencies), _stack.summary(bare)
    print(f"stack: {_stack.stack_name(args)}; {lat['n']} fires")
    print(
        f"floor, bare Celery chain of 3 subprocess tasks: median {base['median']:.1f} ms, "
        f"p95 {base['p95']:.1f} ms"
    )
    print(
        f"schedule fire -> first job command started: median {lat['median']:.0f} ms, "
        f"p95 {lat['p95']:.0f} ms (target: median <= {TARGET_MEDIAN_MS} ms)"
    )
    print(
        f"ratio fire / floor: median {lat['median'] / base['median']:.1f}x, "
        f"p95 {lat['p95'] / base['p95']:.1f}x"
    )
    print("where the time goes (medians from the rows' timestamps):")
    for name, values in phases.items():
        print(f"  {name:<54} {_stack.summary(values)['median']:7.1f} ms")
    _stack.cleanup(var)


if __name__ == "__main__":
    main()
