"""Push webhooks: ingest rate under load, and push → first job command started.

    .venv/bin/python bench/webhook.py [--seconds 10] [--connections 16] [--pushes 30]

1. Ingest: wrk (Debian package) sends GitHub-signed push deliveries, each with its own
   X-GitHub-Delivery, to the control plane under gunicorn; then the same load against a bare
   Django JSON endpoint served the same way. No worker runs during this part: the accepted
   deliveries wait in the ledger (the outbox). Afterwards ``delivery_start_runs()`` (what the
   worker does) starts their runs, and every accepted delivery must have exactly one run
   (nothing lost, nothing duplicated).
2. Latency: with a worker up, one signed push at a time; the job's first command writes
   bash's $EPOCHREALTIME, compared with the moment the request was sent. The answer names the
   delivery; its run (started by the worker) is read from the delivery's row.
"""

import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import _stack

SECRET = "bench-webhook-secret"
WORKERS = 4


def kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


WRK_LUA = """
-- Every request gets its own delivery id: a per-thread random prefix and a counter.
-- (Globals: setup() sets `prefix` in each thread's own Lua state.)
function setup(thread) thread:set("prefix", tostring(math.random(1, 2147483647))) end
counter = 0
function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = "bench-" .. prefix .. "-" .. counter
  return wrk.format("POST", nil, nil, nil)
end
"""


def wrk(url: str, body: bytes, headers: dict, seconds: int, connections: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="cp-wrk-"))
    body_file = tmp / "body.json"
    body_file.write_bytes(body)
    lua = tmp / "push.lua"
    lua.write_text(
        f'wrk.method = "POST"\nwrk.body = io.open("{body_file}"):read("*a")\n'
        + "".join(
            f'wrk.headers["{k}"] = "{v}"\n'
            for k, v in headers.items()
            if k.lower() != "x-github-delivery"
        )
        + WRK_LUA
    )
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "2",
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "-s",
            str(lua),
            "--latency",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(out.split("Requests/sec:")[1].split()[0])
    total = int(out.split(" requests in ")[0].split()[-1])
    non2xx = int(out.split("Non-2xx or 3xx responses:")[1].split()[0]) if "Non-2xx" in out else 0
    errors = "Socket errors" in out
    return {"rate": rate, "total": total, "non2xx": non2xx, "socket_errors": errors, "raw": out}


def push_body(sha: str, url: str) -> bytes:
    return json.dumps(
        {
            "ref": "refs/heads/main",
            "before": "0" * 40,
            "after": sha,
            "repository": {"clone_url": url, "full_name": "bench/repo"},
            "head_commit": {
                "id": sha,
                "message": "bench",
                "url": "",
                "author": {"name": "Bench", "email": "bench@example.com"},
            },
            "pusher": {"name": "bench"},
        }
    ).encode()


def main() -> None:
    args = _stack.parse_args(
        __doc__,
        seconds={"type": int, "default": 10},
        connections={"type": int, "default": 16},
        pushes={"type": int, "default": 30},
    )
    var = _stack.setup(args, "webhook")
    from pipeline_latency import make_repo

    from apps.pipelines.models import PipelineRun
    from apps.projects.services import project_create, variable_set
    from apps.webhooks.models import WebhookDelivery
    from apps.webhooks.outbox import delivery_start_runs
    from apps.webhooks.testing import sign
    from controlplane.celery import app as celery_app

    url, sha = make_repo()
    marks = Path(tempfile.mkdtemp(prefix="cp-marks-"))
    # One job whose first command records when it started.
    repo_dir = Path(url.removeprefix("file://"))
    (repo_dir / ".controlplane.yml").write_text(
        "version: 1\njobs:\n  first:\n    kind: test\n    script:\n"
        '      - printf "%s" "$EPOCHREALTIME" > "$MARKS/$CONTROLPLANE_RUN_NUMBER"\n'
    )
    env = {
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@x",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@x",
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run(["git", "commit", "-qam", "mark"], cwd=repo_dir, env=env, check=True)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True, check=True
    ).stdout.strip()
    project = project_create(
        name="bench", slug="bench", actor="bench", repository_url=url, webhook_secret=SECRET
    )
    variable_set(project=project, key="MARKS", value=str(marks), actor="bench")
    body = push_body(sha, url)
    headers = sign("github", SECRET, body, event="push", delivery_id="x")
    root = Path(__file__).resolve().parents[1]

    # 1. Ingest rate, control plane vs bare Django, same gunicorn.
    port = _stack.free_port()
    web = _stack.gunicorn("controlplane.wsgi:application", port, cwd=root, workers=WORKERS)
    try:
        hook = f"http://127.0.0.1:{port}/hooks/github/bench/"
        probe = urllib.request.Request(
            hook, data=body, headers={**headers, "X-GitHub-Delivery": "probe"}, method="POST"
        )
        assert urllib.request.urlopen(probe).status == 202  # noqa: S310
        ours = wrk(hook, body, headers, args.seconds, args.connections)
    finally:
        kill(web)
    port = _stack.free_port()
    bare = _stack.gunicorn("bareapp:application", port, cwd=root / "bench", workers=WORKERS)
    try:
        base = wrk(f"http://127.0.0.1:{port}/hook/", body, headers, args.seconds, args.connections)
    finally:
        kill(bare)
    accepted_rows = WebhookDelivery.objects.filter(project=project, status="accepted")
    accepted = accepted_rows.count()
    distinct = accepted_rows.values("delivery_id").distinct().count()
    # What the worker does (none ran during the load): start the runs of the accepted pushes.
    drain_started = time.monotonic()
    while delivery_start_runs():
        pass
    drain_seconds = time.monotonic() - drain_started
    runs = PipelineRun.objects.filter(project=project).count()
    without_run = accepted_rows.filter(run__isnull=True).count()
    runs_of_deliveries = accepted_rows.values("run").distinct().count()
    answered_ok = ours["total"] - ours["non2xx"] + 1  # + the probe

    # 2. Latency, push → first job command started, with a worker.
    PipelineRun.objects.filter(project=project).delete()
    WebhookDelivery.objects.all().delete()
    celery_app.control.purge()  # the wake-up messages of part 1, sent while no worker ran
    worker = _stack.start_worker()
    port = _stack.free_port()
    web = _stack.gunicorn("controlplane.wsgi:application", port, cwd=root, workers=WORKERS)
    latencies = []
    try:
        hook = f"http://127.0.0.1:{port}/hooks/github/bench/"
        for i in range(args.pushes + 2):
            h = sign("github", SECRET, body, event="push", delivery_id=f"lat-{i}")
            sent = time.time()
            response = urllib.request.urlopen(  # noqa: S310
                urllib.request.Request(hook, data=body, headers=h, method="POST")
            )
            delivery = json.loads(response.read())["delivery"]
            while (run_id := WebhookDelivery.objects.get(pk=delivery).run_id) is None:
                if time.time() - sent > 30:
                    raise SystemExit(f"delivery {delivery} never got its run")
                time.sleep(0.002)
            number = PipelineRun.objects.get(pk=run_id).number
            mark = marks / str(number)
            deadline = time.monotonic() + 30
            while not (mark.exists() and mark.read_text()):
                if time.monotonic() > deadline:
                    raise SystemExit(f"run {number} never started its command")
                time.sleep(0.002)
            if i >= 2:
                latencies.append((float(mark.read_text()) - sent) * 1000)
            while not PipelineRun.objects.get(project=project, number=number).is_terminal:
                time.sleep(0.005)
    finally:
        kill(web)
        _stack.stop(worker)
    lat = _stack.summary(latencies)
    print(
        f"stack: {_stack.stack_name(args)}; gunicorn {WORKERS} sync workers; "
        f"wrk 2 threads, {args.connections} connections, {args.seconds} s"
    )
    print(
        f"ingest, signed GitHub pushes: {ours['rate']:.0f} req/s "
        f"({ours['total']} sent, {ours['non2xx']} non-2xx, socket errors: "
        f"{ours['socket_errors']})"
    )
    print(f"bare Django JSON endpoint:     {base['rate']:.0f} req/s")
    print(f"ratio: {ours['rate'] / base['rate'] * 100:.0f} % of bare Django (target >= 50 %)")
    print(
        f"answered 202: {answered_ok} (wrk does not count requests in flight when it stops); "
        f"accepted deliveries: {accepted} ({distinct} distinct); runs created afterwards: {runs} "
        f"in {drain_seconds:.1f} s ({runs / max(drain_seconds, 1e-9):.0f} runs/s); "
        f"lost: {without_run}; duplicated: {runs - runs_of_deliveries}"
    )
    print(
        f"push -> first job command started: median {lat['median']:.0f} ms, "
        f"p95 {lat['p95']:.0f} ms over {lat['n']} pushes"
    )
    _stack.cleanup(var)


if __name__ == "__main__":
    main()
