"""Push → first job command: a signed GitHub push POSTed to the control plane under gunicorn,
with a real worker, until the first command of the run's only job starts (it writes bash's
$EPOCHREALTIME into a file). One push at a time, each waited for to the end of its run.

    .venv/bin/python bench/push_latency.py [--pushes 30] [--same-commit]
        [--stack production|embedded]

Each push is of a new commit (the worker fetches it into its mirror first, as for a
developer's push) unless ``--same-commit``.

In the same run, the floor: the bare Celery chain of ``bench/bare_chain.py`` (three tasks
each running ``true``) on the same broker.
"""

import json
import time
import urllib.request
from pathlib import Path
from tempfile import mkdtemp

import _stack

SECRET = "bench-push-secret"
TARGET_MEDIAN, TARGET_P95 = 100, 250


def _phases(phases: dict, sent: float, delivery_id: int, run_id: int, started: float) -> None:
    from apps.pipelines.models import Job, PipelineRun
    from apps.webhooks.models import WebhookDelivery

    received = WebhookDelivery.objects.get(pk=delivery_id).received_at.timestamp()
    run = PipelineRun.objects.get(pk=run_id)
    job = Job.objects.get(run=run)
    marks = [
        ("POST sent -> delivery row", sent, received),
        ("delivery row -> run created (start_runs task)", received, run.created.timestamp()),
        (
            "run created -> jobs created (prepare task)",
            run.created.timestamp(),
            job.created.timestamp(),
        ),
        ("jobs created -> job queued", job.created.timestamp(), job.queued_at.timestamp()),
        (
            "job queued -> claimed (run_job task)",
            job.queued_at.timestamp(),
            job.started_at.timestamp(),
        ),
        ("claimed -> first command (checkout, bash)", job.started_at.timestamp(), started),
    ]
    for name, start, end in marks:
        phases.setdefault(name, []).append((end - start) * 1000)


def main() -> None:
    args = _stack.parse_args(
        __doc__,
        pushes={"type": int, "default": 30},
        same_commit={"action": "store_true", "help": "push one commit again and again"},
    )
    var = _stack.setup(args, "push")
    import pipeline_latency
    import webhook
    from webhook import kill, push_body

    # One push at a time: one sync worker serves them all, connected after the warm-up.
    webhook.WORKERS = 1

    from apps.pipelines.models import PipelineRun
    from apps.projects.services import project_create, variable_set
    from apps.webhooks.models import WebhookDelivery
    from apps.webhooks.testing import sign

    bare = pipeline_latency.floor(args, var, rounds=args.pushes)
    url, _ = pipeline_latency.make_repo()
    repo = Path(url.removeprefix("file://"))
    (repo / ".controlplane.yml").write_text(
        "version: 1\njobs:\n  first:\n    kind: test\n    script:\n"
        '      - printf "%s" "$EPOCHREALTIME" > "$MARKS/$CONTROLPLANE_RUN_NUMBER"\n'
    )
    sha = pipeline_latency.commit_all(repo, "mark")
    marks = Path(mkdtemp(prefix="cp-marks-", dir=var))
    project = project_create(
        name="bench",
        slug="bench",
        actor="bench",
        repository_url=url,
        webhook_secret=SECRET,
        with_default_environments=False,
    )
    variable_set(project=project, key="MARKS", value=str(marks), actor="bench")
    worker = _stack.start_worker()
    spy = _stack.profile(worker)
    port = _stack.free_port()
    web = _stack.gunicorn(
        "controlplane.wsgi:application", port, cwd=_stack.ROOT, workers=webhook.WORKERS
    )
    hook = f"http://127.0.0.1:{port}/hooks/github/bench/"
    latencies, answers, phases = [], [], {}
    try:
        for i in range(args.pushes + 2):
            # A new commit each time, as a developer pushes: the worker fetches it into the
            # mirror on the way to its first command (made before the clock starts).
            if not args.same_commit:
                (repo / "pushed.txt").write_text(f"push {i}\n")
                sha = pipeline_latency.commit_all(repo, f"push {i}")
            body = push_body(sha, url)
            headers = sign("github", SECRET, body, event="push", delivery_id=f"lat-{i}")
            request = urllib.request.Request(hook, data=body, headers=headers, method="POST")
            sent = time.time()
            response = urllib.request.urlopen(request)  # noqa: S310
            answered = time.time()
            delivery = json.loads(response.read())["delivery"]
            deadline = time.monotonic() + 30
            # Each push is the project's next run: its command writes the mark named by the
            # run's number. Waited for as the floor waits for its marker, a file's stat every
            # 2 ms (a query every 2 ms would load the cores the worker and PostgreSQL use).
            mark = marks / str(i + 1)
            while not (mark.exists() and mark.read_text()):
                if time.monotonic() > deadline:
                    raise SystemExit(f"push {i} never started its command ({mark})")
                time.sleep(0.002)
            run_id = WebhookDelivery.objects.get(pk=delivery).run_id
            assert PipelineRun.objects.get(pk=run_id).number == i + 1, "another run started"
            if i >= 2:  # the first two warm up the mirror and the connections
                latencies.append((float(mark.read_text()) - sent) * 1000)
                answers.append((answered - sent) * 1000)
                _phases(phases, sent, delivery, run_id, float(mark.read_text()))
            while not PipelineRun.objects.get(pk=run_id).is_terminal:
                time.sleep(0.005)
    finally:
        kill(web)
        _stack.stop_profile(spy)
        _stack.stop(worker)
    lat, ans, base = _stack.summary(latencies), _stack.summary(answers), _stack.summary(bare)
    what = "the same commit each time" if args.same_commit else "a new commit each"
    print(
        f"stack: {_stack.stack_name(args)}; gunicorn, {webhook.WORKERS} sync worker; "
        f"{lat['n']} pushes, {what}"
    )
    print(
        f"floor, bare Celery chain of 3 subprocess tasks: median {base['median']:.1f} ms, "
        f"p95 {base['p95']:.1f} ms"
    )
    print(f"push answered (202): median {ans['median']:.1f} ms, p95 {ans['p95']:.1f} ms")
    print(
        f"push -> first job command started: median {lat['median']:.0f} ms, "
        f"p95 {lat['p95']:.0f} ms (target: median <= {TARGET_MEDIAN} ms, p95 <= {TARGET_P95} ms)"
    )
    print(
        f"ratio push / floor: median {lat['median'] / base['median']:.1f}x, "
        f"p95 {lat['p95'] / base['p95']:.1f}x"
    )
    print("where the time goes (medians from the rows' timestamps):")
    for name, values in phases.items():
        print(f"  {name:<44} {_stack.summary(values)['median']:7.1f} ms")
    _stack.cleanup(var)


if __name__ == "__main__":
    main()
