"""``/metrics`` at 100,000 runs: the scrape through the Django test client (middleware, the
token check, the database gauges, the exposition of every counter), queries per scrape and
p50/p95 ms, next to the floor measured in the same run (a bare Django view answering a few
bytes through the same middleware), and the ratio.

    .venv/bin/python bench/metrics.py [--runs 100000] [--requests 200] [--stack embedded]

The tables hold ``--runs`` finished runs with a job each (bulk-created), 1,000 deployments and
a handful of active rows; the counters carry the label sets 20 projects would produce.
Goal: p95 < 100 ms whatever the number of runs.
"""

import statistics
import time
from datetime import timedelta

from _stack import parse_args, setup, time_pages


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        runs={"type": int, "default": 100_000},
        requests={"type": int, "default": 200},
    )
    setup(args, "metrics")
    from django.db import connection
    from django.http import HttpResponse
    from django.test import Client
    from django.test.utils import override_settings
    from django.urls import path
    from django.utils import timezone

    from apps.monitoring import metrics
    from apps.pipelines.models import Job, PipelineRun
    from apps.projects.models import Environment, Project
    from apps.releases.models import Deployment, Promotion, Release

    token = "bench-token"  # noqa: S105
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")

    def p50_of(url: str, n: int) -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            assert client.get(url).status_code == 200
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    with override_settings(DEBUG=False, ALLOWED_HOSTS=["testserver"], METRICS_TOKEN=token):
        empty = p50_of("/metrics", 50)

    now = timezone.now()
    projects = Project.objects.bulk_create(
        Project(name=f"Bench {i}", slug=f"bench-{i}") for i in range(20)
    )
    envs = Environment.objects.bulk_create(
        Environment(project=p, name=name, order=o)
        for p in projects
        for o, name in enumerate(("staging", "production"))
    )
    statuses = ("succeeded", "failed", "canceled")
    started = time.perf_counter()
    for start in range(0, args.runs, 10_000):
        runs = PipelineRun.objects.bulk_create(
            (
                PipelineRun(
                    project=projects[i % 20],
                    number=i // 20 + 1,
                    status=statuses[i % 3],
                    started_at=now - timedelta(minutes=5),
                    finished_at=now,
                )
                for i in range(start, min(start + 10_000, args.runs))
            ),
            batch_size=5000,
        )
        Job.objects.bulk_create(
            (
                Job(run=r, name="test", kind=("test", "build", "train")[r.pk % 3], status=r.status)
                for r in runs
            ),
            batch_size=5000,
        )
    # What is active now: a few runs running, jobs queued and running.
    active = PipelineRun.objects.bulk_create(
        PipelineRun(project=projects[i], number=10**6 + i, status="running") for i in range(5)
    )
    Job.objects.bulk_create(
        Job(run=active[i % 5], name=f"q{i}", kind="test", status="queued", queued_at=now)
        for i in range(10)
    )
    releases = Release.objects.bulk_create(
        Release(project=p, version=f"v{i}", commit_sha="0" * 40)
        for p in projects
        for i in range(25)
    )
    Deployment.objects.bulk_create(
        Deployment(
            release=r,
            environment=envs[(i % 2) + 2 * projects.index(r.project)],
            status="succeeded",
            url="http://127.0.0.1:18080",
        )
        for i, r in enumerate(releases)
        for _ in range(2)
    )
    Promotion.objects.create(release=releases[0], environment=envs[1])
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # what autovacuum does soon after a bulk load
            cursor.execute("ANALYZE")
    print(f"loaded {args.runs} runs and jobs in {time.perf_counter() - started:.0f} s")
    for p in projects:
        for s in statuses:
            metrics.RUNS_FINISHED.labels(p.slug, s).inc()
            metrics.PIPELINE_DURATION.labels(s).observe(300)
        for env in ("staging", "production"):
            metrics.DEPLOYMENTS.labels(p.slug, env, "succeeded").inc()
            metrics.DEPLOYMENT_DURATION.labels(env, "succeeded").observe(30)
    for kind in ("test", "build", "train"):
        for s in statuses:
            metrics.JOBS_FINISHED.labels(kind, s).inc()
            metrics.JOB_DURATION.labels(kind, s).observe(60)

    def floor(request):
        return HttpResponse(b"ok\n", content_type="text/plain")

    import controlplane.urls as real_urls

    class Urls:
        urlpatterns = [path("floor/", floor), *real_urls.urlpatterns]

    cases = {"floor (bare view)": "/floor/", "/metrics": "/metrics"}
    with override_settings(
        ROOT_URLCONF=Urls, DEBUG=False, ALLOWED_HOSTS=["testserver"], METRICS_TOKEN=token
    ):
        size = len(client.get("/metrics").content)
        results = time_pages(client, cases, args.requests)
    base = results["floor (bare view)"][1]
    print(
        f"{PipelineRun.objects.count()} runs, {Job.objects.count()} jobs, "
        f"{args.requests} requests each, stack {args.stack}, /metrics {size} bytes"
    )
    print(f"{'':20} {'queries':>7} {'p50 ms':>8} {'p95 ms':>8} {'p50 / floor':>11}")
    for name, (queries, p50, p95) in results.items():
        print(f"{name:20} {queries:>7} {p50:>8.2f} {p95:>8.2f} {p50 / base:>10.1f}×")
    print(f"/metrics p50 with an empty database (same process, before the load): {empty:.2f} ms")
    print(f"goal p95 < 100 ms: {'met' if results['/metrics'][2] < 100 else 'NOT met'}")


if __name__ == "__main__":
    main()
