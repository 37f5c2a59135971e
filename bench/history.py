"""The build history at 100,000 runs: its first, a middle and its last page (and a filtered
page) through the Django test client as a logged-in member of every project, queries per
request and p50/p95 ms, next to the floor measured in the same run (a bare Django view
rendering the same 50 rows from a plain ``values()`` query through the same middleware), and
the ratio.

    .venv/bin/python bench/history.py [--runs 100000] [--requests 200] [--stack embedded]

The runs are bulk-created (20 projects, a job each). Goal: ≤ 10 queries per page whatever the
page, p95 < 100 ms.
"""

import re
import time
from datetime import timedelta

from _stack import cleanup, parse_args, setup, time_pages


def load(runs: int, projects) -> None:
    """``runs`` finished runs (newest last) with a job each, spread over ``projects``."""
    from django.utils import timezone

    from apps.pipelines.models import Job, PipelineRun

    now = timezone.now()
    statuses = ("succeeded", "failed", "canceled")
    n = len(projects)
    for start in range(0, runs, 10_000):
        batch = PipelineRun.objects.bulk_create(
            (
                PipelineRun(
                    project=projects[i % n],
                    number=i // n + 1,
                    status=statuses[i % 3],
                    ref="main" if i % 4 else "feature/x",
                    commit_sha=f"{i:040x}",
                    commit_message=f"Change number {i}",
                    commit_author="Ada Lovelace",
                    trigger="push",
                    created=now - timedelta(seconds=runs - i),
                    started_at=now - timedelta(seconds=runs - i),
                    finished_at=now - timedelta(seconds=runs - i - 30),
                )
                for i in range(start, min(start + 10_000, runs))
            ),
            batch_size=5000,
        )
        Job.objects.bulk_create(
            (Job(run=r, name="test", kind="test", status=r.status) for r in batch),
            batch_size=5000,
        )


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        runs={"type": int, "default": 100_000},
        requests={"type": int, "default": 200},
    )
    var = setup(args, "history")
    from django.db import connection
    from django.http import HttpResponse
    from django.template import engines
    from django.test import Client
    from django.test.utils import override_settings
    from django.urls import path

    from apps.core.paging import cursor_of
    from apps.pipelines.models import PipelineRun
    from apps.projects.services import membership_set, project_create
    from tests.factories import UserFactory

    admin = UserFactory(username="bench-admin", is_superuser=True, is_staff=True)
    developer = UserFactory(username="bench-dev")
    projects = []
    for i in range(20):
        project = project_create(name=f"Bench {i}", actor=admin)
        membership_set(project=project, user=developer, role="developer", actor=admin)
        projects.append(project)
    started = time.perf_counter()
    load(args.runs, projects)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # what autovacuum does soon after a bulk load
            cursor.execute("ANALYZE")
    print(f"loaded {args.runs} runs and jobs in {time.perf_counter() - started:.0f} s")

    template = engines["django"].from_string(
        "<table>{% for r in rows %}<tr><td>{{ r.project__slug }} #{{ r.number }}</td>"
        "<td>{{ r.status }}</td><td>{{ r.ref }}</td><td>{{ r.commit_sha|slice:':10' }}</td>"
        "<td>{{ r.commit_message }}</td><td>{{ r.created }}</td></tr>{% endfor %}</table>"
    )

    def floor(request):
        rows = list(
            PipelineRun.objects.order_by("-created", "-id").values(
                "project__slug",
                "number",
                "status",
                "ref",
                "commit_sha",
                "commit_message",
                "created",
            )[:50]
        )
        return HttpResponse(template.render({"rows": rows}))

    import controlplane.urls as real_urls

    class Urls:
        urlpatterns = [path("floor/", floor), *real_urls.urlpatterns]

    client = Client()
    client.force_login(developer)
    with override_settings(ROOT_URLCONF=Urls, DEBUG=False, ALLOWED_HOSTS=["testserver"]):
        # The pages the build history links to: follow "older" to the middle and to the end
        # as a user would (the links are whatever the page offers: numbers or cursors).
        first = client.get("/runs/").content.decode()
        links = dict(re.findall(r'<a href="(\?[^"]*)"[^>]*>([^<]+)</a>', first))
        cases = {"floor (values(), same rows)": "/floor/", "history, first page": "/runs/"}
        by_label = {label.strip(): href.replace("&amp;", "&") for href, label in links.items()}
        if "oldest »" in by_label:  # keyset pagination: first, oldest, a cursor in the middle
            cases["history, last page"] = "/runs/" + by_label["oldest »"]
            middle = PipelineRun.objects.order_by("-created", "-id")[args.runs // 2]
            cases["history, middle page"] = f"/runs/?before={cursor_of(middle)}"
        else:  # offset pagination
            pages = -(-args.runs // 50)
            cases["history, middle page"] = f"/runs/?page={pages // 2}"
            cases["history, last page"] = f"/runs/?page={pages}"
        cases["history, filtered (project, failed)"] = (
            f"/runs/?project={projects[3].slug}&status=failed"
        )
        for name, url in cases.items():
            body = client.get(url).content.decode()
            rows = body.count("<tr>") - ("<th>" in body)
            print(f"  {name}: {url} ({rows} rows)")
        results = time_pages(client, cases, args.requests)
    base = results["floor (values(), same rows)"][1]
    print(f"{args.runs} runs, {args.requests} requests each, stack {args.stack}")
    print(f"{'':38} {'queries':>7} {'p50 ms':>8} {'p95 ms':>8} {'p50 / floor':>11}")
    for name, (queries, p50, p95) in results.items():
        print(f"{name:38} {queries:>7} {p50:>8.1f} {p95:>8.1f} {p50 / base:>10.1f}×")
    worst = max(r[2] for n, r in results.items() if not n.startswith("floor"))
    most = max(r[0] for n, r in results.items() if not n.startswith("floor"))
    print(f"goal ≤ 10 queries, p95 < 100 ms: {'met' if most <= 10 and worst < 100 else 'NOT met'}")
    cleanup(var)


if __name__ == "__main__":
    main()
