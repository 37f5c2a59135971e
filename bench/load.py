"""500 runs queued at once on two real Celery workers, and the pages people read meanwhile.

Each run is a 1-job pipeline (local runner, a checkout of the commit, ``true``). All 500 are
requested at once (``run_request``, as 500 pushes would); two worker processes (threads pool)
take them. While any run is unfinished, one logged-in browser — an HTTP client with a session
cookie — asks gunicorn (2 sync workers, ``--port``) for the build history, the dashboard and
the approvals inbox in turn, and the floor: a bare Django page (``bench/bareapp.py``) served by
a gunicorn of its own in the same way, asked in the same loop. Prints p50/p95 per page before
and during the load, the floor, the ratios, how long the 500 runs took and that all succeeded.

    .venv/bin/python bench/load.py [--runs 500] [--history 5000] [--port 9510]

``--history`` finished runs are bulk-created first so the history is not empty. Goal: all runs
finish; p95 < 300 ms for each page during the load.
"""

import statistics
import threading
import time
import urllib.request
from pathlib import Path

import _stack
from pipeline_latency import commit_all, make_repo, request_run

PAGES = {"build history": "/runs/", "dashboard": "/", "approvals": "/approvals/"}
SPEC = 'version: 1\njobs:\n  test: {kind: test, script: ["true"]}\n'


def get(url: str, cookie: str) -> float:
    """One GET (ms); every answer must be a 200."""
    request = urllib.request.Request(url, headers={"Cookie": cookie})  # noqa: S310 - 127.0.0.1
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        response.read()
        assert response.status in (200, 202), (url, response.status)
    return (time.perf_counter() - started) * 1000


def browse(base: str, floor: str, cookie: str, until, pause: float) -> dict[str, list[float]]:
    """Each page and the floor in turn until ``until()`` says stop; times in ms."""
    times: dict[str, list[float]] = {name: [] for name in [*PAGES, "floor"]}
    while not until():
        for name, path in PAGES.items():
            times[name].append(get(base + path, cookie))
        times["floor"].append(get(floor + "/hook/", ""))
        time.sleep(pause)
    return times


def seed(args, project_count: int = 5):
    """Projects with their environments, a user who approves in all of them, pending
    promotions for the inbox and the dashboard, ``--history`` finished runs."""
    from history import load

    from apps.projects.services import membership_set, project_create
    from apps.releases.services import promotion_request, release_create
    from tests.factories import UserFactory

    url, _ = make_repo()
    Path(url.removeprefix("file://"), ".controlplane.yml").write_text(SPEC)
    sha = commit_all(Path(url.removeprefix("file://")), "one job")
    admin = UserFactory(username="bench-admin", is_superuser=True, is_staff=True)
    lead = UserFactory(username="bench-lead")
    projects = []
    for i in range(project_count):
        project = project_create(name=f"Load {i}", actor=admin, repository_url=url)
        membership_set(project=project, user=lead, role="approver", actor=admin)
        # No automatic deploys: the runs are the load, not the CD loop.
        project.environments.update(auto_deploy=False)
        production = project.environments.get(name="production")
        for v in range(4):
            release = release_create(project=project, version=f"v{v}", commit_sha=sha, actor=admin)
            if v == 3:
                promotion_request(release=release, environment=production, actor=admin)
        projects.append(project)
    if args.history:
        load(args.history, projects)
    return projects, sha, lead


def summary_line(name: str, values: list[float], floor_p50: float) -> str:
    s = _stack.summary(values)
    return (
        f"{name:16} {s['n']:>6} {s['median']:>8.1f} {s['p95']:>8.1f} {s['max']:>8.1f}"
        f" {s['median'] / floor_p50:>8.1f}×"
    )


def main() -> None:
    args = _stack.parse_args(
        __doc__.splitlines()[0],
        runs={"type": int, "default": 500},
        history={"type": int, "default": 5000},
        port={"type": int, "default": 9510},
        web_workers={"type": int, "default": 2},
        worker_threads={"type": int, "default": 4},
    )
    if args.embedded:
        raise SystemExit("bench/load.py measures the production stack (PostgreSQL + Redis)")
    var = _stack.setup(args, "load")
    from django.db import connection
    from django.db.models import Count
    from django.test import Client

    from apps.pipelines.choices import RUN_TERMINAL, RunStatus
    from apps.pipelines.models import Job, PipelineRun

    projects, sha, lead = seed(args)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    client = Client()
    client.force_login(lead)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    web = _stack.gunicorn(
        "controlplane.wsgi:application", args.port, cwd=_stack.ROOT, workers=args.web_workers
    )
    bare = _stack.gunicorn(
        "bareapp:application", args.port + 1, cwd=_stack.ROOT / "bench", workers=args.web_workers
    )
    base, floor = f"http://127.0.0.1:{args.port}", f"http://127.0.0.1:{args.port + 1}"
    workers = []
    try:
        for _ in range(3):  # warm both servers
            for path in PAGES.values():
                get(base + path, cookie)
            get(floor + "/hook/", "")
        rounds = iter(range(60))
        idle = browse(base, floor, cookie, until=lambda: next(rounds, None) is None, pause=0)
        workers = [
            _stack.start_worker(concurrency=args.worker_threads, name=f"w{i}") for i in (1, 2)
        ]
        # Warm the mirror and both workers' connections with one run each.
        for _ in range(2):
            run = request_run(projects[0], sha)
            while PipelineRun.objects.get(pk=run.pk).status not in RUN_TERMINAL:
                time.sleep(0.05)
        first = PipelineRun.objects.order_by("-pk").values_list("pk", flat=True)[0]

        done = threading.Event()
        during: dict[str, list[float]] = {}

        def reader():
            during.update(browse(base, floor, cookie, until=done.is_set, pause=0.05))

        thread = threading.Thread(target=reader)
        thread.start()
        started = time.perf_counter()
        for i in range(args.runs):
            request_run(projects[i % len(projects)], sha)
        requested = time.perf_counter() - started
        mine = PipelineRun.objects.filter(pk__gt=first)
        deadline = time.monotonic() + 60 + args.runs  # generous: a second per run
        while time.monotonic() < deadline:
            unfinished = mine.exclude(status__in=RUN_TERMINAL).count()
            if not unfinished:
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        done.set()
        thread.join()
    finally:
        for w in workers:
            _stack.stop(w)
        for server in (web, bare):
            _stack.stop(server)
    statuses = dict(mine.values("status").annotate(n=Count("id")).values_list("status", "n"))
    jobs = Job.objects.filter(run__in=mine)
    # Who ran each job (a job's worker is cleared when it finishes? then it says so).
    runners = dict(jobs.values("worker").annotate(n=Count("id")).values_list("worker", "n"))
    print(
        f"stack: {_stack.stack_name(args)}; {len(projects)} projects, {args.history} earlier "
        f"runs; 2 workers x {args.worker_threads} threads; gunicorn {args.web_workers} sync "
        f"workers on :{args.port}"
    )
    print(
        f"{args.runs} runs requested in {requested:.1f} s; all finished after {elapsed:.1f} s "
        f"({args.runs / elapsed:.1f} runs/s); statuses {statuses}"
    )
    if len(runners) > 1:
        print(f"jobs per worker: {runners}")
    for label, times in (("before the load (idle)", idle), ("during the load", during)):
        floor_p50 = statistics.median(times["floor"])
        print(f"{label}:")
        print(f"{'':16} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'p50/floor':>9}")
        for name in [*PAGES, "floor"]:
            print(summary_line(name, times[name], floor_p50))
    worst = max(_stack.summary(during[n])["p95"] for n in PAGES)
    ok = statuses.get(RunStatus.SUCCEEDED) == args.runs and worst < 300
    print(
        f"goal: all {args.runs} succeeded, p95 < 300 ms on each page: {'met' if ok else 'NOT met'}"
    )
    _stack.cleanup(var)


if __name__ == "__main__":
    main()
